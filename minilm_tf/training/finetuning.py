"""A fine-tuning run: classification / regression here, extractive QA in
`minilm_tf.training.qa_finetuning`.

`run_finetune(FinetuneConfig)` loads the task and the encoder, builds and
fits the task model (resumable: checkpoints every epoch and on SIGTERM /
SIGINT, `minilm_tf.training.resume`), evaluates validation and test, measures
latency, saves the model (`minilm_tf.tasks.finetuned`) and writes
`<workdir>/report.json`. A task whose kind is "qa" (`squad`, `squad_v2`, or
`task_kind="qa"`) runs `qa_finetuning.finetune_qa` instead, and its report
gets the same common fields, so `tools/compare.py` reads both alike.

Defaults follow the BERT / MiniLM fine-tuning grids: batch 32, sequence
length 128, learning rate 5e-5 (top of the 2e-5..5e-5 grid; small students
prefer the larger rates), 3 epochs (the MiniLM paper used up to 10 on the
small GLUE tasks), warm-up 10%, weight decay 0.01, dropout 0.1.
"""

import dataclasses
import logging
import math
import os
import shutil
import time
from typing import Any, Callable, Dict, Optional

import keras

from minilm_tf.models.encoders import LoadedEncoder, load_encoder
from minilm_tf.models.students import count_params
from minilm_tf.tasks import finetuned
from minilm_tf.tasks.classification import data as classification_data
from minilm_tf.tasks.classification.datasets import (
    evaluate_split,
    make_dataset,
    make_eval_dataset,
)
from minilm_tf.tasks.classification.model import (
    build_preprocessor,
    build_task_model,
    compile_task_model,
    head_pooling,
)
from minilm_tf.tasks.classification.teacher import teacher_targets
from minilm_tf.tasks.classification.xnli import cross_lingual_summary
from minilm_tf.tasks.latency import measure_latency
from minilm_tf.training import qa_finetuning, resume
from minilm_tf.training.callbacks import ValidationMetricCallback
from minilm_tf.training.distribute import hold_for_worker, make_strategy, resolve_jit_compile
from minilm_tf.training.model_cards import write_card
from minilm_tf.training.finetune_common import (
    FinetuneConfig,
    clear_previous_run,
    config_dict,
    load_task_data,
    make_optimizer,
    task_kind,
    uses_fast_paths,
)
from minilm_tf.utils import fileio
from minilm_tf.utils.seeding import set_random_seed
from minilm_tf.utils.versions import library_versions

logger = logging.getLogger(__name__)


def run_finetune(config: FinetuneConfig, encoder: Optional[LoadedEncoder] = None,
                 data: Optional[classification_data.TaskData] = None,
                 log_fn: Callable[[str], None] = None) -> Dict[str, Any]:
    """Fine-tunes `config.model` on `config.task`, evaluates, saves, and writes
    `<workdir>/report.json`. Returns the report dict.

    `encoder` (a `LoadedEncoder`) and `data` (a `TaskData`) may be passed in to
    skip loading them; the encoder's backbone is fine-tuned in place.

    The returned dict is report.json's content plus `_model`, `_preprocessor`
    and `_data` (the trained task model, its preprocessor and the task data).
    `throughput.train_examples_per_sec` is over the whole of `fit` without the
    per-epoch validation (so it includes the first epoch's graph tracing).
    """
    log = log_fn or logger.info
    config.validate()
    if not config.workdir:
        raise ValueError("FinetuneConfig.workdir is required.")
    # Before any other TensorFlow op (MultiWorkerMirroredStrategy needs that).
    strategy = make_strategy(config.strategy, config.tpu_address)
    keras.mixed_precision.set_global_policy(config.precision)
    t_start = time.perf_counter()
    kind = task_kind(config.task, config.task_kind)
    if config.teacher_run and kind == classification_data.QA:
        raise ValueError("teacher_run (task-stage distillation) applies to classification "
                         "and regression tasks, not QA; drop it for this task.")
    with hold_for_worker(config.workdir, strategy) as (held, checkpoint_dir):
        clear_previous_run(held.root, config.overwrite)
        set_random_seed(config.seed, getattr(encoder, "tokenizer", None))
        resume.check_config(checkpoint_dir, config_dict(config))
        if kind != classification_data.QA and data is None:  # data errors before the model loads
            log(f"loading task {config.task}")
            data = load_task_data(config)
        if encoder is None:
            log(f"loading model {config.model}")
            with strategy.scope():
                encoder = load_encoder(config.model)
        if kind == classification_data.QA:
            result = qa_finetuning.finetune_qa(encoder=encoder, config=config,
                                               workdir=held.root)
            extras = {}
        else:
            result, extras = _classification_run(config, encoder, data, strategy, log,
                                                 held.root, checkpoint_dir)
        report = _write_report(config, kind, encoder, result, held.root, t_start)
        shutil.rmtree(checkpoint_dir, ignore_errors=True)  # the run is complete
    log(f"validation {report['main_metric']}={report.get('validation_metric')}, "
        f"test {report['main_metric']}={report.get('test_metric')}; report: "
        f"{os.path.join(config.workdir, finetuned.REPORT_FILE)}")
    # Handy for callers (tests, compare): not part of report.json.
    return dict(report, **extras, _model=result.get("_model"), _data=result.get("_data"))


def _write_report(config, kind, encoder, result, workdir, t_start) -> Dict[str, Any]:
    """report.json: the task's result plus what every run reports."""
    report = {"task": config.task, "task_kind": kind, "model": config.model,
              "model_source_dir": getattr(encoder, "source_dir", None),
              "backbone_class": type(encoder.backbone).__name__}
    report.update(result)
    report.setdefault("parameters", {"backbone": count_params(encoder.backbone)})
    report["wall_time_sec"] = time.perf_counter() - t_start
    report["hyperparameters"] = dict(config_dict(config), **result.get("_settings", {}))
    report["versions"] = library_versions()
    report = fileio.json_clean(report)
    write_card(os.path.join(workdir, finetuned.MODEL_DIR), report)
    fileio.atomic_write_json(os.path.join(workdir, finetuned.REPORT_FILE), report)
    return report


@dataclasses.dataclass
class _Task:
    """A classification run's model, preprocessor and cached evaluation data."""

    model: keras.Model
    preprocessor: Any
    data: classification_data.TaskData
    train: classification_data.Split  # with task-stage distillation: [label, teacher logits]
    validation: Any
    test: Any
    kind: str
    jit_compile: bool

    def evaluate(self, split: str, batch_size: int):
        return evaluate_split(self.model, getattr(self.data, split), self.preprocessor,
                              batch_size, self.data.kind, self.data.metrics,
                              getattr(self, split))


def _build(config, encoder, data, strategy, total_steps, train) -> _Task:
    jit_compile = resolve_jit_compile(config.jit_compile)
    distillation = ({"alpha": config.kd_alpha, "temperature": config.kd_temperature}
                    if config.teacher_run else None)
    with strategy.scope():
        model = build_task_model(encoder.backbone, data.num_classes, config.dropout,
                                 head_pooling(config.pooling, encoder))
        optimizer = make_optimizer(config.learning_rate, total_steps, config.warmup_ratio,
                                   config.weight_decay, config.clipnorm)
        compile_task_model(model, data.kind, optimizer, jit_compile, distillation)
        model.optimizer.build(model.trainable_variables)  # slots exist before a restore
    preprocessor = build_preprocessor(encoder.tokenizer, config.resolved_sequence_length(),
                                      task_model=model)
    return _Task(model, preprocessor, data, train,
                 make_eval_dataset(data.validation, preprocessor, config.eval_batch_size),
                 make_eval_dataset(data.test, preprocessor, config.eval_batch_size), data.kind,
                 jit_compile)


def _fit(config, task: _Task, steps_per_epoch, checkpoint_dir, log):
    callback = ValidationMetricCallback(
        lambda: task.evaluate("validation", config.eval_batch_size)[0],
        task.data.main_metric, config.early_stopping_patience, True, log)

    def epoch_dataset(epoch, first_batch):
        order = resume.epoch_order(len(task.data.train), config.seed, epoch)
        order = order[first_batch * config.batch_size:]
        return (make_dataset(task.train.take(order), task.preprocessor, config.batch_size),
                len(order))

    fit = resume.fit_resumable(task.model, epoch_dataset, epochs=config.epochs,
                               steps_per_epoch=steps_per_epoch, directory=checkpoint_dir,
                               validation=callback, log=log, log_every=config.log_every,
                               batch_size=config.batch_size,
                               fast_paths=uses_fast_paths(config, task.jit_compile))
    return fit, callback


def _latency(config, task: _Task):
    if config.latency_examples <= 0:
        return None
    batch_size = config.latency_batch_size or config.eval_batch_size
    source = task.validation if batch_size == config.eval_batch_size else task.data.validation
    return measure_latency(task.model, source, task.preprocessor, batch_size,
                           config.latency_examples)


def _evaluate_languages(config, task: _Task, test_metrics, log):
    """Metrics of each per-language test split (XNLI), or None; the training
    language's split is the run's test split, already evaluated."""
    splits = task.data.test_by_language
    if not splits:
        return None
    out = {}
    for language, split in splits.items():
        out[language] = (test_metrics if language == task.data.train_language else
                         evaluate_split(task.model, split, task.preprocessor,
                                        config.eval_batch_size, task.data.kind,
                                        task.data.metrics)[0])
        log(f"test ({language}): {task.data.main_metric}="
            f"{(out[language] or {}).get(task.data.main_metric)}")
    return out


def _classification_run(config, encoder, data, strategy, log, workdir, checkpoint_dir):
    """Build -> fit -> evaluate -> save; returns (result fields, in-memory extras)."""
    log(f"task {data.name} ({data.kind}): train={len(data.train)} "
        f"validation={len(data.validation)} test={len(data.test) if data.test else 0}")
    steps_per_epoch = math.ceil(len(data.train) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    backbone_params = count_params(encoder.backbone)
    train, distillation = data.train, None
    if config.teacher_run:
        train, distillation = teacher_targets(config.teacher_run, data, config.eval_batch_size)
        distillation.update(alpha=config.kd_alpha, temperature=config.kd_temperature)
        log(f"task-stage distillation from {config.teacher_run} (alpha {config.kd_alpha}, "
            f"temperature {config.kd_temperature}; teacher on the train split: "
            f"{distillation['teacher_on_train']})")
    task = _build(config, encoder, data, strategy, total_steps, train)
    fit, callback = _fit(config, task, steps_per_epoch, checkpoint_dir, log)
    train_seconds = max(fit.fit_seconds - callback.eval_seconds, 1e-9)
    val_metrics, val_eps = task.evaluate("validation", config.eval_batch_size)
    test_metrics, test_eps = task.evaluate("test", config.eval_batch_size)
    by_language = _evaluate_languages(config, task, test_metrics, log)
    latency = _latency(config, task)
    saved = (finetuned.save_finetuned(task.model, task.preprocessor, workdir, data, encoder)
             if config.save_model else None)
    total_params = count_params(task.model)
    result = {
        "task": data.name,
        "task_source": data.source,
        "notes": data.notes,
        "main_metric": data.main_metric,
        "metrics": {"validation": val_metrics or None, "test": test_metrics or None,
                    **({"test_by_language": by_language} if by_language else {})},
        **({"cross_lingual": cross_lingual_summary(by_language, data.train_language,
                                                   data.main_metric)} if by_language else {}),
        "validation_metric": _finite(val_metrics, data.main_metric),
        "test_metric": _finite(test_metrics, data.main_metric),
        "label_vocab": data.label_vocab,
        "num_examples": {k: (len(v) if v is not None else 0) for k, v in data.splits().items()},
        "test_labeled": bool(data.test is not None and data.test.is_labeled),
        "best_epoch": callback.best_epoch,
        "epochs_run": len(callback.history),
        "history": callback.history,
        "parameters": {"total": total_params, "backbone": backbone_params,
                       "head": total_params - backbone_params},
        "throughput": {
            # Over this process's training (a resumed run: since the resume).
            "train_examples_per_sec": (fit.examples_trained / train_seconds
                                       if fit.examples_trained else None),
            "eval_examples_per_sec": val_eps,
            "test_eval_examples_per_sec": test_eps,
        },
        "latency_ms_per_example": latency["ms_per_example"] if latency else None,
        "latency": latency,
        "saved_model": saved,
        **({"task_distillation": distillation} if distillation else {}),
        "_settings": {"sequence_length": config.resolved_sequence_length(),
                      "pooling": getattr(task.model, "pooling", "cls"),  # the head built
                      "total_steps": total_steps,
                      "warmup_steps": int(round(total_steps * config.warmup_ratio))},
        "_model": task.model,
        "_data": data,
    }
    return result, {"_preprocessor": task.preprocessor}


def _finite(metrics: Optional[Dict[str, float]], key: str):
    value = (metrics or {}).get(key)
    return None if value is None or (isinstance(value, float) and not math.isfinite(value)) \
        else value
