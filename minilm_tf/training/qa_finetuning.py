"""A QA fine-tuning run (SQuAD v1.1 / v2.0): `finetune_qa(encoder, config, workdir)`.

`minilm_tf.training.finetuning.run_finetune` runs it for tasks of kind "qa"
(`tools/finetune.py --task squad|squad_v2`, or `--task NAME --task_kind qa`
with SQuAD-format files) and writes report.json from what it returns. The
steps, each from `minilm_tf.tasks.question_answering`:

1. Data (`load_qa_data`): local SQuAD-format files or TFDS `squad/v1.1` /
   `squad/v2.0`; without a validation file ~10% of the train contexts are
   held out, seeded; misaligned training answers skipped (task option
   `on_mismatch`); `max_train_examples` / `max_eval_examples` subsample.
2. Features (`prepare_squad`): windows of `max_seq_length` tokens,
   `doc_stride` apart, tokenised by `OffsetWordPieceTokenizer`.
3. Model (`build_qa_model`): span head, loss (CE(start) + CE(end)) / 2,
   AdamW with BERT's schedule, seeded shuffling, resumable `fit`.
4. Evaluation (`evaluate_qa`): n-best decoding over all windows, v2.0 null
   answers against `null_threshold`, official EM / F1; with `epochs > 1`
   per-epoch validation F1, early stopping and best-epoch weights.
5. Outputs (`question_answering.finetuned`): `model.keras`,
   `qa_config.json`, the tokenizer (`qa_vocab.txt`, or XLM-R's
   `qa_sentencepiece.model`) and `predictions_<split>.json`.

MLQA (`--task mlqa`, `question_answering.mlqa`): trained on SQuAD v1.1,
validated on MLQA dev in `train_language`, tested in every language of
`languages` with MLQA's evaluation; report.json adds
`metrics.test_by_language` and `cross_lingual` (F1 per language, its mean,
and the mean over the languages not trained in).

Defaults (BERT `run_squad.py`): max_seq_length 384 (capped at the backbone's
position table), doc_stride 128, max_query_length 64, n_best 20,
max_answer_length 30, null_threshold 0.0; override with `--task_option
KEY=VALUE` (`config.extra`; unknown keys are an error, see `QAOptions`).
Throughput counts questions (`train_features_per_sec`: windows);
`latency_ms_per_example` is batched inference per window.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
import warnings
from typing import Any, Callable, Dict, Optional

import numpy as np

from minilm_tf.models.students import count_params
from minilm_tf.tasks.classification.xnli import cross_lingual_summary
from minilm_tf.tasks.latency import measure_latency
from minilm_tf.training import resume
from minilm_tf.training.callbacks import ValidationMetricCallback
from minilm_tf.training.finetune_common import make_optimizer, uses_fast_paths
from minilm_tf.utils import fileio
from minilm_tf.utils import workdir as workdirs
from minilm_tf.tasks.question_answering import model as qa_model
from minilm_tf.tasks.question_answering.data import (
    OPTION_ALIASES,
    QAData,
    QAOptions,
    load_qa_data,
    resolve_qa_options,
)
from minilm_tf.tasks.question_answering.evaluation import (
    SpanLogitsStack,
    evaluate_qa,
    inputs_dataset,
    numeric_metrics,
)
from minilm_tf.tasks.question_answering.features import prepare_squad
from minilm_tf.tasks.question_answering.finetuned import (
    MODEL_FILE,
    QA_CONFIG_FILE,
    check_encoder,
    qa_config,
    save_qa_model,
    save_tokenizer,
)
from minilm_tf.tasks.question_answering.tokenizer import get_offset_tokenizer
from minilm_tf.utils.seeding import set_random_seed

logger = logging.getLogger(__name__)


MAIN_METRIC = "f1"

_POOLER_NO_GRADIENT = r"Gradients do not exist for variables \['pooled_dense/kernel', " \
    r"'pooled_dense/bias'\]"



def finetune_qa(encoder, config, workdir: str,
                log_fn: Optional[Callable[[str], None]] = None,
                data: Optional[QAData] = None) -> Dict[str, Any]:
    """Fine-tunes `encoder` (its backbone, in place) on the QA task of
    `config` (a `finetune.FinetuneConfig`), evaluates EM / F1, saves the
    model under `workdir`; returns the QA part of report.json (see the module
    docstring). The trained model is under the key `_model` (not reported)."""
    with workdirs.hold(workdir, temporaries_in=("", resume.CHECKPOINT_DIR)) as held:
        return _finetune_qa(encoder, config, held.root, log_fn, data)

def _finetune_qa(encoder, config, workdir: str, log_fn, data) -> Dict[str, Any]:
    log = log_fn or logger.info
    check_encoder(encoder)
    options = resolve_qa_options(config, encoder.backbone)
    if data is None:
        data = load_qa_data(config, options)
    version_2 = data.version_2 if options.version_2 is None else options.version_2
    notes = list(data.notes)
    explicit_length = config.sequence_length is not None or any(
        OPTION_ALIASES.get(k, k) == "max_seq_length" for k in (config.extra or {}))
    if options.max_seq_length != QAOptions.max_seq_length and not explicit_length:
        notes.append(f"max_seq_length capped at the model's {options.max_seq_length} "
                     "positions.")
    log(f"QA data ({data.source}, {'v2.0' if version_2 else 'v1.1'} rules): "
        f"train={len(data.train)} validation={len(data.validation)} "
        f"test={len(data.test) if data.test else 0} questions")

    tok = get_offset_tokenizer(encoder.tokenizer)
    names = qa_model.input_names(encoder.backbone)
    windowing = dict(max_seq_length=options.max_seq_length, doc_stride=options.doc_stride,
                     max_query_length=options.max_query_length)
    t0 = time.perf_counter()
    train_features, _ = prepare_squad(data.train, tok, **windowing)
    # Split name -> (examples, features, meta, dataset, MLQA language or None).
    eval_splits = {"validation": (data.validation, data.train_language),
                   "test": (data.test, data.train_language)}
    for language, examples in (data.test_by_language or {}).items():
        if language != data.train_language:
            eval_splits[f"test/{language}"] = (examples, language)
    evals = {}
    for split, (examples, language) in eval_splits.items():
        if examples:
            features, meta = prepare_squad(examples, tok, **windowing)
            evals[split] = (examples, features, meta,
                            inputs_dataset(features, config.eval_batch_size, names).cache(),
                            language)
    preprocess_seconds = time.perf_counter() - t0
    n_train_features = len(train_features["token_ids"])
    log(f"features: train={n_train_features} "
        + " ".join(f"{k}={len(v[2])}" for k, v in evals.items())
        + f" (max_seq_length={options.max_seq_length}, doc_stride={options.doc_stride}; "
        f"{preprocess_seconds:.1f}s)")

    set_random_seed(config.seed, encoder.tokenizer)
    model = qa_model.build_qa_model(encoder.backbone, dropout=options.head_dropout)
    # Full batches only (as BERT's run_squad: one traced shape, reshuffled every
    # epoch); a train split smaller than one batch is one partial batch.
    drop_remainder = n_train_features >= config.batch_size
    steps_per_epoch = (n_train_features // config.batch_size) if drop_remainder else 1
    total_steps = steps_per_epoch * config.epochs
    warmup_steps = int(round(total_steps * config.warmup_ratio))
    optimizer = make_optimizer(config.learning_rate, total_steps, config.warmup_ratio,
                                  config.weight_decay, config.clipnorm)
    qa_model.compile_qa_model(model, optimizer)
    train_arrays = {k: np.asarray(v) for k, v in train_features.items()}
    del train_features

    def epoch_dataset(epoch, first_batch):
        order = resume.epoch_order(n_train_features, config.seed, epoch)
        if drop_remainder:
            order = order[:steps_per_epoch * config.batch_size]
        order = order[first_batch * config.batch_size:]
        features = {k: v[order] for k, v in train_arrays.items()}
        return (qa_model.make_qa_dataset(features, config.batch_size,
                                         drop_remainder=drop_remainder, names=names),
                len(order))

    def run_eval(split):
        examples, features, meta, ds, language = evals[split]
        return evaluate_qa(model, examples, features, meta, options, version_2,
                           config.eval_batch_size, ds, language=language)

    callback = None
    if config.epochs > 1:
        callback = ValidationMetricCallback(
            lambda: numeric_metrics(run_eval("validation")[0]), MAIN_METRIC,
            config.early_stopping_patience, True, log)
    with warnings.catch_warnings():
        # The backbone's pooler is not part of the QA model's loss.
        warnings.filterwarnings("ignore", message=_POOLER_NO_GRADIENT)
        fit = resume.fit_resumable(
            model, epoch_dataset, epochs=config.epochs, steps_per_epoch=steps_per_epoch,
            directory=os.path.join(workdir, resume.CHECKPOINT_DIR), validation=callback,
            log=log, batch_size=config.batch_size,
            fast_paths=uses_fast_paths(config, jit_compile=False))  # Keras' default here
    train_seconds = max(fit.fit_seconds - (callback.eval_seconds if callback else 0.0), 1e-9)
    epochs_run = len(callback.history) if callback else config.epochs
    features_seen = fit.examples_trained
    del train_arrays

    metrics: Dict[str, Any] = {"validation": None, "test": None}
    eval_eps: Dict[str, Optional[float]] = {"validation": None, "test": None}
    by_split = {}
    for split in evals:
        values, predictions, seconds = run_eval(split)
        by_split[split] = values
        eval_eps[split] = len(evals[split][0]) / max(seconds, 1e-9)
        log(f"{split}: exact_match={values['exact_match']:.2f} f1={values['f1']:.2f}")
        if options.save_predictions:
            name = split.replace("/", "_")
            fileio.atomic_write_json(os.path.join(workdir, f"predictions_{name}.json"),
                                     predictions, clean=True)
    metrics["validation"], metrics["test"] = by_split.get("validation"), by_split.get("test")
    cross_lingual = None
    if data.test_by_language:
        metrics["test_by_language"] = {
            language: by_split.get("test" if language == data.train_language
                                   else f"test/{language}")
            for language in data.test_by_language}
        cross_lingual = cross_lingual_summary(metrics["test_by_language"],
                                              data.train_language, MAIN_METRIC)

    latency = None
    if config.latency_examples > 0:
        latency_bs = config.latency_batch_size or config.eval_batch_size
        ds = evals["validation"][3]
        if latency_bs != config.eval_batch_size:
            ds = inputs_dataset(evals["validation"][1], latency_bs, names)
        latency = measure_latency(SpanLogitsStack(model), ds, batch_size=latency_bs,
                                  num_examples=config.latency_examples)
        if latency:
            latency["unit"] = "window of max_seq_length tokens"

    saved = None
    vocabulary_file = save_tokenizer(tok, workdir)
    if config.save_model:
        save_qa_model(model, workdir)
        saved = {"format": "keras", "path": MODEL_FILE, "config_file": QA_CONFIG_FILE,
                 "vocabulary_file": vocabulary_file, "safe_mode": True}
    fileio.atomic_write_json(os.path.join(workdir, QA_CONFIG_FILE),
                             qa_config(options, version_2, tok, encoder, saved is not None),
                             clean=True)

    total_params = count_params(model)
    backbone_params = count_params(encoder.backbone)
    val, test = metrics["validation"], metrics["test"]
    result = {
        "task_source": data.source,
        "notes": notes,
        "main_metric": MAIN_METRIC,
        "metrics": metrics,
        **({"cross_lingual": cross_lingual} if cross_lingual else {}),
        "validation_metric": val[MAIN_METRIC] if val else None,
        "test_metric": test[MAIN_METRIC] if test else None,
        "label_vocab": None,
        "num_examples": {k: (len(v) if v else 0) for k, v in data.splits().items()},
        "num_features": {"train": n_train_features,
                         **{k: (len(evals[k][2]) if k in evals else 0)
                            for k in ("validation", "test")}},
        "test_labeled": bool(data.test),
        "best_epoch": callback.best_epoch if callback else epochs_run,
        "epochs_run": epochs_run,
        "history": (callback.history if callback else
                    [{"epoch": epochs_run, **{f"train_{k}": v for k, v in logs.items()}}
                     for logs in fit.epoch_logs]),
        "parameters": {"total": total_params, "backbone": backbone_params,
                       "head": total_params - backbone_params},
        "throughput": {
            # Windows actually trained on (full batches), and the questions they stand for.
            "train_examples_per_sec": features_seen * len(data.train) / n_train_features
            / train_seconds,
            "train_features_per_sec": features_seen / train_seconds,
            "eval_examples_per_sec": eval_eps["validation"],
            "test_eval_examples_per_sec": eval_eps["test"],
            "preprocess_seconds": preprocess_seconds,
        },
        "latency_ms_per_example": latency["ms_per_example"] if latency else None,
        "latency": latency,
        "saved_model": saved,
        "qa": {**dataclasses.asdict(options), "version_2": version_2,
               "steps_per_epoch": steps_per_epoch, "total_steps": total_steps,
               "warmup_steps": warmup_steps},
        "_model": model,
        "_data": data,
    }
    return result
