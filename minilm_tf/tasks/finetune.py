"""Fine-tuning an encoder on a classification / regression task, and the
hook for extractive QA.

The pieces, usable one by one:

* `build_task_model(backbone, num_outputs)`: keras-hub `TextClassifier` for
  the backbone (e.g. `BertTextClassifier`: pooled [CLS] -> dropout -> dense),
  without a preprocessor, so tokenisation happens in `tf.data`.
  Regression uses one output trained with mean squared error.
* `build_preprocessor(tokenizer, sequence_length)`: the keras-hub
  `TextClassifierPreprocessor` (pairs: `(text, text_pair)` tuples).
* `make_dataset(split, preprocessor, batch_size)`: `tf.data` with
  `dataset.map(preprocessor)`.
* `WarmupLinearDecay` + `make_optimizer`: AdamW (weight decay 0.01, not on
  biases / LayerNorm), linear warm-up over the first 10% of steps, then linear
  decay to 0, global gradient-norm clipping 1.0 (as BERT).
* `ValidationMetricCallback`: evaluates the task metric on the validation
  split after every epoch, stops early after `patience` epochs without
  improvement and restores the best weights.
* `measure_latency`: ms per example of batched inference after warm-up.
* `run_finetune(FinetuneConfig)`: all of it; writes `<workdir>/report.json`,
  `<workdir>/labels.json` and the model (`<workdir>/model/`, a keras-hub task
  preset with its preprocessor, or `<workdir>/model.keras` when the backbone
  has no keras-hub task). `load_finetuned(workdir)` loads it back.

Defaults follow the BERT / MiniLM fine-tuning grids: batch 32, sequence
length 128, learning rate 5e-5 (top of the 2e-5..5e-5 grid; small students
prefer the larger rates), 3 epochs (the MiniLM paper used up to 10 on the
small GLUE tasks: pass `epochs=10` there), warm-up 10%, weight decay 0.01,
dropout 0.1.

QA hook: a task whose kind is "qa" (`--task squad`, `squad_v2`, or
`--task_kind qa`) is delegated to `finetune_qa(encoder, config, workdir)`
found in `minilm_tf.tasks.squad_finetune` or `minilm_tf.tasks.squad` (see
`QA_HOOK_MODULES`). It fine-tunes and evaluates, saves its model under
`workdir`, and returns a dict with at least `metrics` =
{"validation": {...}, "test": {...} | None} and `main_metric`; it may add
`num_examples`, `throughput`, `latency_ms_per_example`, `latency`,
`saved_model`, `history`, `notes`, `parameters`. `run_finetune` adds the
common fields (model spec, wall time, hyper-parameters, versions) and writes
`report.json` exactly as for classification, so tools/compare.py works for QA
too (it reads `metrics[split][main_metric]`, `parameters`,
`latency_ms_per_example`). The workdir is already checked/created. Useful
config fields: `task` (e.g. squad / squad_v2), `train_file` /
`validation_file` / `test_file`, `sequence_length` (None: the QA module's
default, e.g. 384), `epochs`, `batch_size`, `learning_rate`, `warmup_ratio`,
`weight_decay`, `seed`, `max_train_examples`, `max_eval_examples`,
`latency_examples`, `save_model`, and `extra` (from `--task_option KEY=VALUE`,
e.g. doc_stride=128). Shared helpers: `make_optimizer`, `measure_latency`,
`write_json_atomic`, `count_params`.
"""

import dataclasses
import importlib
import json
import logging
import math
import os
import shutil
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import keras
import numpy as np

from minilm_tf.utils import fileio
from minilm_tf.utils import workdir as workdirs
from minilm_tf.training.distribute import is_chief, make_strategy, resolve_jit_compile
from minilm_tf.layers.fast_paths import trace_steps_with_fast_paths
from minilm_tf.models.students import count_params
from minilm_tf.optimizers.adamw import WarmupLinearDecay, make_adamw  # noqa: F401 (re-exported)
from minilm_tf.tasks import classification_data
from minilm_tf.tasks import metrics as mt
from minilm_tf.tasks import resume

logger = logging.getLogger(__name__)

REPORT_FILE = "report.json"
LABELS_FILE = "labels.json"
MODEL_DIR = "model"
MODEL_KERAS_FILE = "model.keras"
# Everything a run writes; a workdir holding any of these is a previous run.
RUN_OUTPUTS = (REPORT_FILE, LABELS_FILE, MODEL_DIR, MODEL_KERAS_FILE)

QA_TASK_NAMES = ("squad", "squad_v1", "squad_v1.1", "squad1", "squad_v2", "squad_v2.0",
                 "squad2", "squad/v1.1", "squad/v2.0", "qa")
QA_HOOK_MODULES = ("minilm_tf.tasks.squad_finetune", "minilm_tf.tasks.squad")
QA_HOOK_FUNCTION = "finetune_qa"

DEFAULT_SEQUENCE_LENGTH = 128


@dataclasses.dataclass
class FinetuneConfig:
    """Everything a fine-tuning run needs (the CLI flags map 1:1 onto it)."""

    model: str
    task: str
    workdir: str
    task_kind: Optional[str] = None  # classification / regression / qa
    train_file: Optional[str] = None
    validation_file: Optional[str] = None
    test_file: Optional[str] = None
    file_format: Optional[str] = None
    text_key: Optional[str] = None
    text_pair_key: Optional[str] = None
    label_key: Optional[str] = None
    tfds_data_dir: Optional[str] = None
    tfds_download: bool = True
    epochs: int = 3
    batch_size: int = 32
    eval_batch_size: int = 64
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    clipnorm: Optional[float] = 1.0
    sequence_length: Optional[int] = None  # None: 128 (QA: the QA module's default)
    dropout: float = 0.1
    early_stopping_patience: Optional[int] = 2  # epochs without improvement; None: off
    seed: int = 0
    max_train_examples: Optional[int] = None
    max_eval_examples: Optional[int] = None
    log_every: int = 50  # training progress line every N steps (and at each epoch's end)
    latency_examples: int = 256  # 0 disables the latency measurement
    latency_batch_size: Optional[int] = None  # None: eval_batch_size
    save_model: bool = True
    overwrite: bool = False
    strategy: str = "default"  # minilm_tf.training.distribute.STRATEGIES
    tpu_address: str = ""
    precision: str = "float32"  # or mixed_bfloat16 / mixed_float16
    jit_compile: bool | str = "auto"  # XLA for the train and predict steps; see resolve_jit_compile
    extra: Dict[str, Any] = dataclasses.field(default_factory=dict)  # task-specific

    def resolved_sequence_length(self) -> int:
        return self.sequence_length or DEFAULT_SEQUENCE_LENGTH

    def validate(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}.")
        if self.batch_size < 1 or self.eval_batch_size < 1:
            raise ValueError("batch sizes must be >= 1.")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}.")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}.")
        if self.sequence_length is not None and self.sequence_length < 8:
            raise ValueError(f"sequence_length must be >= 8, got {self.sequence_length}.")
        if self.max_train_examples is not None and self.max_train_examples < 1:
            raise ValueError("max_train_examples must be >= 1.")
        if self.max_eval_examples is not None and self.max_eval_examples < 1:
            raise ValueError("max_eval_examples must be >= 1.")
        if self.log_every < 1:
            raise ValueError(f"log_every must be >= 1, got {self.log_every}.")


# --------------------------------------------------------------------------
# Task kind / model loading


def task_kind(task: str, kind: Optional[str] = None) -> str:
    """classification / regression / qa for a task name (+ optional override)."""
    name = classification_data.normalize_task_name(task)
    if name in QA_TASK_NAMES:
        if kind and kind != classification_data.QA:
            raise ValueError(f"Task {task!r} is a qa task, not {kind}.")
        return classification_data.QA
    if kind == classification_data.QA:
        return classification_data.QA
    return classification_data.get_task_spec(task, kind).kind


def load_encoder(spec: str):
    """`minilm_tf.load_teacher(spec)`: backbone + tokenizer for any model spec."""
    from minilm_tf.models.encoders import load_teacher

    return load_teacher(spec)


# --------------------------------------------------------------------------
# Model and preprocessing


def _keras_hub_task_class(backbone):
    """The keras-hub `TextClassifier` subclass made for this backbone class."""
    import keras_hub

    candidates = []
    for name in dir(keras_hub.models):
        obj = getattr(keras_hub.models, name)
        if (isinstance(obj, type) and issubclass(obj, keras_hub.models.TextClassifier)
                and getattr(obj, "backbone_cls", None) is type(backbone)):
            candidates.append((not name.endswith("TextClassifier"), name, obj))
    return sorted(candidates)[0][2] if candidates else None


class _PooledHead:
    """Fallback head for backbones without a keras-hub TextClassifier: first
    token of `sequence_output` -> dropout -> dense."""

    @staticmethod
    def build(backbone, num_outputs, dropout):
        inputs = backbone.input
        outputs = backbone(inputs)
        if isinstance(outputs, dict):
            pooled = outputs.get("pooled_output")
            if pooled is None:
                pooled = outputs["sequence_output"][:, 0, :]
        else:
            pooled = outputs[:, 0, :]
        x = keras.layers.Dropout(dropout, name="classifier_dropout")(pooled)
        logits = keras.layers.Dense(num_outputs, name="logits")(x)
        return keras.Model(inputs, logits, name="text_classifier")


def build_task_model(backbone, num_outputs: int, dropout: float = 0.1):
    """Backbone + classification head emitting `num_outputs` logits (1 for
    regression). Uses the backbone's keras-hub `TextClassifier` (e.g.
    `BertTextClassifier(backbone, num_classes, preprocessor=None)`) when there
    is one, else a plain Keras model with a first-token head."""
    cls = _keras_hub_task_class(backbone)
    if cls is not None:
        try:
            return cls(backbone=backbone, num_classes=num_outputs, preprocessor=None,
                       dropout=dropout)
        except TypeError as e:
            logger.warning("%s(...) failed (%s); using a generic head.", cls.__name__, e)
    return _PooledHead.build(backbone, num_outputs, dropout)


def build_preprocessor(tokenizer, sequence_length: int = DEFAULT_SEQUENCE_LENGTH,
                       task_model=None):
    """The keras-hub text-classifier preprocessor for `tokenizer`."""
    import keras_hub

    cls = None
    if task_model is not None:
        cls = getattr(type(task_model), "preprocessor_cls", None)
    if cls is None:
        for name in dir(keras_hub.models):
            obj = getattr(keras_hub.models, name)
            if (isinstance(obj, type)
                    and issubclass(obj, keras_hub.models.TextClassifierPreprocessor)
                    and getattr(obj, "tokenizer_cls", None) is type(tokenizer)):
                cls = obj
                break
    if cls is None:
        cls = keras_hub.models.TextClassifierPreprocessor
    return cls(tokenizer=tokenizer, sequence_length=sequence_length)


def make_dataset(split: classification_data.Split, preprocessor, batch_size: int, with_labels: bool = True):
    """Batched `tf.data` of preprocessed features (and labels), in the split's
    order (training shuffles with `resume.epoch_order`, which a resumed run
    can reproduce)."""
    import tensorflow as tf

    with_labels = with_labels and split.is_labeled
    x = split.texts if split.text_pairs is None else (split.texts, split.text_pairs)
    if with_labels:
        ds = tf.data.Dataset.from_tensor_slices((x, split.labels))
    else:
        ds = tf.data.Dataset.from_tensor_slices((x,))
    ds = ds.batch(batch_size)
    if with_labels:
        ds = ds.map(preprocessor, num_parallel_calls=tf.data.AUTOTUNE)
    else:
        # y=None explicitly: keras-hub would read a lone (text, text_pair)
        # tuple as (x, y).
        ds = ds.map(lambda features: preprocessor(features, y=None),
                    num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


# --------------------------------------------------------------------------
# Optimisation


def make_optimizer(learning_rate: float, total_steps: int, warmup_ratio: float = 0.1,
                   weight_decay: float = 0.01, clipnorm: Optional[float] = 1.0):
    """AdamW with BERT's schedule (`minilm_tf.optimizers.adamw.make_adamw`): linear
    warm-up over `warmup_ratio` of the steps, linear decay to 0; no weight
    decay on biases and LayerNorm; global gradient-norm clipping."""
    warmup_steps = int(round(total_steps * warmup_ratio))
    return make_adamw(learning_rate, total_steps, warmup_steps, weight_decay=weight_decay,
                      clipnorm=clipnorm)


def compile_task_model(model, kind: str, optimizer, jit_compile: bool = True,
                       fast_paths: Optional[bool] = None) -> None:
    """Loss and metric for the task kind. `jit_compile`: XLA-compile the
    train/predict steps (Keras's "auto" leaves XLA off on CPU-only machines).
    `fast_paths`: trace the steps with `minilm_tf.layers.fast_paths` (oneDNN's
    paths); None (default): only steps that are not XLA-compiled, because
    inside XLA they cost time (`tools/benchmark_finetune.py`; numbers in
    docs/performance.md)."""
    if fast_paths if fast_paths is not None else not jit_compile:
        trace_steps_with_fast_paths(model)
    if kind == classification_data.REGRESSION:
        model.compile(optimizer=optimizer, loss=keras.losses.MeanSquaredError(),
                      metrics=[keras.metrics.MeanAbsoluteError(name="mae")],
                      jit_compile=jit_compile)
    else:
        model.compile(
            optimizer=optimizer,
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
            jit_compile=jit_compile,
        )


# --------------------------------------------------------------------------
# Evaluation


def make_eval_dataset(split: Optional[classification_data.Split], preprocessor, batch_size: int):
    """Features-only batches, tokenised once and cached (reused every epoch)."""
    if split is None or len(split) == 0:
        return None
    return make_dataset(split, preprocessor, batch_size, with_labels=False).cache()


def predict_outputs(model, split_or_dataset, preprocessor=None,
                    batch_size: int = 64) -> np.ndarray:
    """Raw model outputs ([N, num_outputs] logits) for a `Split` or for a
    dataset from `make_eval_dataset`."""
    ds = split_or_dataset
    if isinstance(ds, classification_data.Split):
        ds = make_dataset(ds, preprocessor, batch_size, with_labels=False)
    outs = [np.asarray(model.predict_on_batch(x)) for x in ds]
    return np.concatenate(outs, axis=0)


def outputs_to_predictions(outputs: np.ndarray, kind: str) -> np.ndarray:
    if kind == classification_data.REGRESSION:
        return outputs.reshape(-1).astype(np.float64)
    return np.argmax(outputs, axis=-1)


def evaluate_split(model, split: Optional[classification_data.Split], preprocessor, batch_size: int,
                   kind: str, metric_names: Sequence[str], dataset=None):
    """(metrics dict, or None if the split is unlabeled/absent; examples per
    second). `dataset`: a cached `make_eval_dataset(split, ...)` to reuse."""
    if split is None or len(split) == 0:
        return None, None
    t0 = time.perf_counter()
    outputs = predict_outputs(model, dataset if dataset is not None else split,
                              preprocessor, batch_size)
    dt = time.perf_counter() - t0
    if not split.is_labeled:
        return None, len(split) / dt
    preds = outputs_to_predictions(outputs, kind)
    return mt.compute_metrics(metric_names, split.labels, preds), len(split) / dt


class ValidationMetricCallback(keras.callbacks.Callback):
    """After each epoch: evaluate `evaluate_fn()` (a metrics dict), keep the
    best weights by `main_metric`, stop after `patience` epochs without
    improvement (None: never), restore the best weights at the end of `fit`
    (`restore_best`).

    For runs that call `fit` once per epoch (`resume.fit_resumable` sets
    these): `restore_at_train_end = False` leaves the restore to
    `restore_best_weights()`, and `skip_fn()` returning True skips an epoch
    end (an epoch cut short by a signal). `get_state`/`set_state` carry the
    history, the best epoch and the early-stopping counter across a resume.
    """

    def __init__(self, evaluate_fn: Callable[[], Dict[str, float]], main_metric: str,
                 patience: Optional[int] = None, restore_best: bool = True,
                 log_fn: Callable[[str], None] = None):
        super().__init__()
        self.evaluate_fn = evaluate_fn
        self.main_metric = main_metric
        self.patience = patience
        self.restore_best = restore_best
        self.restore_at_train_end = True
        self.skip_fn: Optional[Callable[[], bool]] = None
        self.log_fn = log_fn or logger.info
        self.history: List[Dict[str, Any]] = []
        self.best_value = None
        self.best_epoch = None
        self.best_weights = None
        self.eval_seconds = 0.0
        self._wait = 0

    def get_state(self) -> Dict[str, Any]:
        return {"history": _json_clean(self.history), "best_value": _json_clean(self.best_value),
                "best_epoch": self.best_epoch, "wait": self._wait}

    def set_state(self, state: Dict[str, Any]) -> None:
        self.history = list(state["history"])
        self.best_value, self.best_epoch = state["best_value"], state["best_epoch"]
        self._wait = state["wait"]

    def on_epoch_end(self, epoch, logs=None):
        if self.skip_fn is not None and self.skip_fn():
            return
        t0 = time.perf_counter()
        values = self.evaluate_fn()
        self.eval_seconds += time.perf_counter() - t0
        value = values[self.main_metric]
        entry = {"epoch": epoch + 1}
        if logs:
            entry.update({f"train_{k}": float(v) for k, v in logs.items()
                          if np.ndim(v) == 0})
        entry.update({f"validation_{k}": v for k, v in values.items()})
        self.history.append(entry)
        if logs is not None:
            logs[f"val_{self.main_metric}"] = value
        improved = mt.is_better(value, self.best_value)
        self.log_fn(f"epoch {epoch + 1}: validation {self.main_metric}={value:.4f}"
                    + (" (best)" if improved else ""))
        if improved:
            self.best_value, self.best_epoch, self._wait = value, epoch + 1, 0
            if self.restore_best:
                self.best_weights = [np.array(w) for w in self.model.get_weights()]
        else:
            self._wait += 1
            if self.patience is not None and self._wait >= self.patience:
                self.log_fn(f"early stopping: no improvement for {self._wait} epochs")
                self.model.stop_training = True

    def restore_best_weights(self) -> None:
        if self.restore_best and self.best_weights is not None:
            self.model.set_weights(self.best_weights)

    def on_train_end(self, logs=None):
        if self.restore_at_train_end:
            self.restore_best_weights()


def measure_latency(model, split_or_dataset, preprocessor=None, batch_size: int = 64,
                    num_examples: int = 256, warmup_batches: int = 2,
                    repeats: int = 3) -> Optional[Dict[str, Any]]:
    """Milliseconds per example of batched inference (model forward only;
    tokenisation excluded), after `warmup_batches` untimed batches; the best
    of `repeats` timed passes over (up to) `num_examples` examples.

    `split_or_dataset`: a `Split` (tokenised here in batches of `batch_size`)
    or a batched features dataset (e.g. from `make_eval_dataset`).
    """
    import tensorflow as tf

    if split_or_dataset is None or num_examples <= 0:
        return None
    ds = split_or_dataset
    if isinstance(ds, classification_data.Split):
        if len(ds) == 0:
            return None
        ds = make_dataset(ds.take(range(min(num_examples, len(ds)))), preprocessor,
                          batch_size, with_labels=False)
    batches, n = [], 0
    for x in ds:
        size = int(tf.shape(x["token_ids"])[0])
        if n + size > num_examples:
            x = {k: v[: num_examples - n] for k, v in x.items()}
            size = num_examples - n
        batches.append(x)
        n += size
        if n >= num_examples:
            break
    if not batches:
        return None

    @tf.function(reduce_retracing=True)
    def forward(x):
        return model(x, training=False)

    for i in range(max(warmup_batches, 1)):
        np.asarray(forward(batches[i % len(batches)]))
    np.asarray(forward(batches[-1]))  # a smaller last batch traces once more
    best = math.inf
    for _ in range(max(repeats, 1)):
        t0 = time.perf_counter()
        for x in batches:
            out = forward(x)
        np.asarray(out)
        best = min(best, time.perf_counter() - t0)
    return {"ms_per_example": 1000.0 * best / n,
            "batch_size": int(tf.shape(batches[0]["token_ids"])[0]),
            "num_examples": n, "warmup_batches": warmup_batches, "repeats": repeats,
            "sequence_length": int(batches[0]["token_ids"].shape[1])}


# --------------------------------------------------------------------------
# Workdir and saving


def clear_previous_run(workdir: str, overwrite: bool = False) -> None:
    """In a held work directory (`minilm_tf.utils.workdir.hold`): refuses a
    previous run's outputs unless `overwrite` (then they are deleted first,
    and logged). An unfinished run (checkpoints, no report.json) is kept for
    `run_finetune` to resume; the outputs it had begun to write are removed
    (they are written again)."""
    existing = [n for n in RUN_OUTPUTS if os.path.lexists(os.path.join(workdir, n))]
    unfinished = (os.path.isdir(os.path.join(workdir, resume.CHECKPOINT_DIR))
                  and REPORT_FILE not in existing)
    if existing and not overwrite and not unfinished:
        raise FileExistsError(
            f"workdir {workdir} already holds a previous run's outputs ({existing}); "
            "use a new workdir or pass --overwrite to replace them."
        )
    if overwrite:
        existing.append(resume.CHECKPOINT_DIR)
    for n in existing:
        path = os.path.join(workdir, n)
        if not os.path.lexists(path):
            continue
        logger.warning("%s: removing %s", "overwrite" if overwrite else "resume", path)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)


def write_json_atomic(path: str, obj: Any) -> None:
    fileio.atomic_write_json(path, _json_clean(obj))


def save_finetuned(model, preprocessor, workdir: str, data: classification_data.TaskData,
                   encoder=None) -> Dict[str, Any]:
    """Saves the task model + label vocabulary under `workdir`.

    keras-hub task models go to `<workdir>/model/` via `save_to_preset` (with
    the preprocessor/tokenizer, `labels.json` and the feed-forward activation
    in `minilm_tf.json`); others to `<workdir>/model.keras`.
    """
    labels = {"task": data.name, "kind": data.kind, "labels": data.label_vocab,
              "num_outputs": data.num_classes, "is_pair": data.is_pair,
              "sequence_length": int(preprocessor.sequence_length)}
    write_json_atomic(os.path.join(workdir, LABELS_FILE), labels)
    info: Dict[str, Any] = {"labels_file": LABELS_FILE}
    if hasattr(model, "save_to_preset"):
        path = os.path.join(workdir, MODEL_DIR)
        try:
            with fileio.atomic_directory(path) as tmp:  # appears only when complete
                _with_preprocessor(model, preprocessor).save_to_preset(tmp)
                write_json_atomic(os.path.join(tmp, LABELS_FILE), labels)
                meta = dict(getattr(encoder, "metadata", None) or {})
                meta["hidden_act"] = getattr(encoder, "hidden_act", None) or "gelu_approximate"
                meta["finetuned_from"] = getattr(encoder, "spec", None)
                write_json_atomic(os.path.join(tmp, "minilm_tf.json"), meta)
            info.update(format="keras_hub_preset", path=MODEL_DIR,
                        task_class=type(model).__name__)
            return info
        except Exception as e:  # fall back to a .keras file
            logger.warning("save_to_preset failed (%s); saving a .keras file.", e)
            shutil.rmtree(path, ignore_errors=True)
    path = os.path.join(workdir, MODEL_KERAS_FILE)
    tmp = os.path.join(workdir, ".tmp_" + MODEL_KERAS_FILE)
    model.save(tmp)
    os.replace(tmp, path)
    info.update(format="keras", path=MODEL_KERAS_FILE)
    return info


def _with_preprocessor(model, preprocessor):
    """The same keras-hub task (shared backbone, copied head weights) with the
    preprocessor attached, so the saved preset is complete: the training
    model itself stays preprocessor-free (tf.data does the tokenisation)."""
    if getattr(model, "preprocessor", None) is not None:
        return model
    config = model.get_config()
    config.pop("backbone", None)
    config.pop("preprocessor", None)
    clone = type(model)(backbone=model.backbone, preprocessor=preprocessor, **config)
    clone.set_weights(model.get_weights())
    return clone


def load_finetuned(workdir_or_model_dir: str):
    """(model, preprocessor or None, labels dict) of a saved run.

    Accepts the run's workdir or its `model/` preset dir. The keras-hub task
    comes back with its preprocessor attached, so it takes raw strings:
    `model.predict(["text", ...])`, and for pairs
    `model.predict(tf.data.Dataset.from_tensor_slices(((texts, pairs),)).batch(32))`
    (a bare `(texts, pairs)` tuple would be read as `(x, y)`); and with the
    feed-forward activation the encoder was fine-tuned with. A plain
    `keras_hub.models.TextClassifier.from_preset(model_dir)` loads it too,
    but with keras-hub's default (tanh-approximate) GELU.
    """
    import keras_hub

    path = workdir_or_model_dir
    if os.path.isdir(os.path.join(path, MODEL_DIR)):
        path = os.path.join(path, MODEL_DIR)
    if os.path.isfile(os.path.join(path, MODEL_KERAS_FILE)):
        with open(os.path.join(path, LABELS_FILE), encoding="utf-8") as f:
            labels = json.load(f)
        return fileio.load_keras_archive(os.path.join(path, MODEL_KERAS_FILE)), None, labels
    with open(os.path.join(path, LABELS_FILE), encoding="utf-8") as f:
        labels = json.load(f)
    model = keras_hub.models.TextClassifier.from_preset(path)
    meta_path = os.path.join(path, "minilm_tf.json")
    if os.path.exists(meta_path):
        from minilm_tf.models.encoders import set_feedforward_activation

        with open(meta_path, encoding="utf-8") as f:
            hidden_act = json.load(f).get("hidden_act")
        if hidden_act:
            set_feedforward_activation(model.backbone, hidden_act)
    return model, model.preprocessor, labels


# --------------------------------------------------------------------------
# The run


def _versions() -> Dict[str, str]:
    out = {}
    for name in ("tensorflow", "keras", "keras_hub"):
        try:
            out[name] = importlib.import_module(name).__version__
        except Exception:  # pragma: no cover
            pass
    return out


def _config_dict(config: FinetuneConfig) -> Dict[str, Any]:
    d = dataclasses.asdict(config)
    d.pop("overwrite", None)
    return d


def _find_qa_hook():
    for module_name in QA_HOOK_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name == module_name:
                continue
            raise
        fn = getattr(module, QA_HOOK_FUNCTION, None)
        if fn is not None:
            return fn
    raise NotImplementedError(
        "QA fine-tuning needs minilm_tf.tasks.squad(_finetune)."
        f"{QA_HOOK_FUNCTION}(encoder, config, workdir) -> dict, which is not available."
    )


def load_task_data(config: FinetuneConfig) -> classification_data.TaskData:
    """The task's data with `max_train_examples` / `max_eval_examples` applied."""
    data = classification_data.load_task(
        config.task, train_file=config.train_file, validation_file=config.validation_file,
        test_file=config.test_file, kind=config.task_kind,
        tfds_data_dir=config.tfds_data_dir, tfds_download=config.tfds_download,
        file_format=config.file_format, text_key=config.text_key,
        text_pair_key=config.text_pair_key, label_key=config.label_key,
    )
    notes = list(data.notes)
    if config.max_train_examples and config.max_train_examples < len(data.train):
        notes.append(f"train subsampled to {config.max_train_examples} of "
                     f"{len(data.train)} examples (seed {config.seed}).")
        data.train = data.train.subsample(config.max_train_examples, config.seed)
    if config.max_eval_examples:
        for name in ("validation", "test"):
            split = getattr(data, name)
            if split is not None and config.max_eval_examples < len(split):
                notes.append(f"{name} subsampled to {config.max_eval_examples} of "
                             f"{len(split)} examples (seed {config.seed}).")
                setattr(data, name, split.subsample(config.max_eval_examples, config.seed))
    data.notes = notes
    return data


def run_finetune(config: FinetuneConfig, encoder=None, data: Optional[classification_data.TaskData] = None,
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
    # Before any other TensorFlow op (MultiWorkerMirroredStrategy needs that).
    strategy = make_strategy(config.strategy, config.tpu_address)
    keras.mixed_precision.set_global_policy(config.precision)
    t_start = time.perf_counter()
    kind = task_kind(config.task, config.task_kind)
    qa_finetune = _find_qa_hook() if kind == classification_data.QA else None  # fail before any output
    if not config.workdir:
        raise ValueError("workdir is required.")
    # Every worker saves; the copies are kept apart, each with its own lock.
    worker = "" if is_chief(strategy) else f".worker_{strategy.cluster_resolver.task_id}"
    checkpoints = os.path.join(worker, resume.CHECKPOINT_DIR)
    with workdirs.hold(config.workdir, temporaries_in=(worker, checkpoints),
                       lock_file=f"{worker}.lock" if worker else workdirs.LOCK_FILE) as held:
        clear_previous_run(held.root, config.overwrite)
        return _run_finetune(config, encoder, data, log, strategy, kind, qa_finetune,
                             held.root, held.path(checkpoints), t_start)


def _run_finetune(config, encoder, data, log, strategy, kind, qa_finetune, workdir,
                  checkpoint_dir, t_start) -> Dict[str, Any]:
    keras.utils.set_random_seed(config.seed)
    resume.check_config(checkpoint_dir, _config_dict(config))

    common = {
        "task": config.task,
        "task_kind": kind,
        "model": config.model,
    }

    if kind != classification_data.QA and data is None:  # data errors surface before the model loads
        log(f"loading task {config.task}")
        data = load_task_data(config)
    if encoder is None:
        log(f"loading model {config.model}")
        with strategy.scope():
            encoder = load_encoder(config.model)
    common["model_source_dir"] = getattr(encoder, "source_dir", None)
    common["backbone_class"] = type(encoder.backbone).__name__
    backbone_params = count_params(encoder.backbone)

    if kind == classification_data.QA:
        result = dict(qa_finetune(encoder=encoder, config=config, workdir=workdir))
        report = dict(common)
        report.update(result)
        report.setdefault("parameters", {"backbone": backbone_params})
        report["wall_time_sec"] = time.perf_counter() - t_start
        report["hyperparameters"] = _config_dict(config)
        report["versions"] = _versions()
        write_json_atomic(os.path.join(workdir, REPORT_FILE), _json_clean(report))
        shutil.rmtree(checkpoint_dir, ignore_errors=True)  # the run is complete
        return report

    log(f"task {data.name} ({data.kind}): train={len(data.train)} "
        f"validation={len(data.validation)} test={len(data.test) if data.test else 0}")

    seq_len = config.resolved_sequence_length()
    steps_per_epoch = math.ceil(len(data.train) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    with strategy.scope():
        model = build_task_model(encoder.backbone, data.num_classes, config.dropout)
        optimizer = make_optimizer(config.learning_rate, total_steps, config.warmup_ratio,
                                   config.weight_decay, config.clipnorm)
        compile_task_model(model, data.kind, optimizer,
                           resolve_jit_compile(config.jit_compile))
        model.optimizer.build(model.trainable_variables)  # slots exist before a restore
    preprocessor = build_preprocessor(encoder.tokenizer, seq_len, task_model=model)
    val_ds = make_eval_dataset(data.validation, preprocessor, config.eval_batch_size)
    test_ds = make_eval_dataset(data.test, preprocessor, config.eval_batch_size)

    def eval_validation():
        values, _ = evaluate_split(model, data.validation, preprocessor,
                                   config.eval_batch_size, data.kind, data.metrics, val_ds)
        return values

    callback = ValidationMetricCallback(eval_validation, data.main_metric,
                                        config.early_stopping_patience, True, log)

    def epoch_dataset(epoch, first_batch):
        order = resume.epoch_order(len(data.train), config.seed, epoch)
        order = order[first_batch * config.batch_size:]
        return make_dataset(data.train.take(order), preprocessor, config.batch_size), len(order)

    fit = resume.fit_resumable(model, epoch_dataset, epochs=config.epochs,
                               steps_per_epoch=steps_per_epoch, directory=checkpoint_dir,
                               validation=callback, log=log, log_every=config.log_every,
                               batch_size=config.batch_size)
    fit_seconds, examples_trained = fit.fit_seconds, fit.examples_trained
    train_seconds = max(fit_seconds - callback.eval_seconds, 1e-9)
    epochs_run = len(callback.history)

    val_metrics, val_eps = evaluate_split(model, data.validation, preprocessor,
                                          config.eval_batch_size, data.kind, data.metrics,
                                          val_ds)
    test_metrics, test_eps = evaluate_split(model, data.test, preprocessor,
                                            config.eval_batch_size, data.kind, data.metrics,
                                            test_ds)
    latency = None
    if config.latency_examples > 0:
        latency_bs = config.latency_batch_size or config.eval_batch_size
        latency = measure_latency(
            model, val_ds if latency_bs == config.eval_batch_size else data.validation,
            preprocessor, latency_bs, config.latency_examples)

    saved = None
    if config.save_model:
        saved = save_finetuned(model, preprocessor, workdir, data, encoder)

    total_params = count_params(model)
    report = dict(common)
    report.update({
        "task": data.name,
        "task_source": data.source,
        "notes": data.notes,
        "main_metric": data.main_metric,
        "metrics": {"validation": mt.json_safe(val_metrics) if val_metrics else None,
                    "test": mt.json_safe(test_metrics) if test_metrics else None},
        "validation_metric": _get(val_metrics, data.main_metric),
        "test_metric": _get(test_metrics, data.main_metric),
        "label_vocab": data.label_vocab,
        "num_examples": {k: (len(v) if v is not None else 0)
                         for k, v in data.splits().items()},
        "test_labeled": bool(data.test is not None and data.test.is_labeled),
        "best_epoch": callback.best_epoch,
        "epochs_run": epochs_run,
        "history": [mt.json_safe(h) for h in callback.history],
        "parameters": {"total": total_params, "backbone": backbone_params,
                       "head": total_params - backbone_params},
        "throughput": {
            # Over this process's training (a resumed run: since the resume).
            "train_examples_per_sec": (examples_trained / train_seconds
                                       if examples_trained else None),
            "eval_examples_per_sec": val_eps,
            "test_eval_examples_per_sec": test_eps,
        },
        "latency_ms_per_example": latency["ms_per_example"] if latency else None,
        "latency": latency,
        "saved_model": saved,
        "wall_time_sec": time.perf_counter() - t_start,
        "hyperparameters": dict(_config_dict(config), sequence_length=seq_len,
                                total_steps=total_steps,
                                warmup_steps=int(round(total_steps * config.warmup_ratio))),
        "versions": _versions(),
    })
    report = _json_clean(report)
    write_json_atomic(os.path.join(workdir, REPORT_FILE), report)
    shutil.rmtree(checkpoint_dir, ignore_errors=True)  # the run is complete
    log(f"validation {data.main_metric}={report['validation_metric']}, "
        f"test {data.main_metric}={report['test_metric']}; report: "
        f"{os.path.join(workdir, REPORT_FILE)}")
    # Handy for callers (tests, compare): not part of report.json.
    report_obj = dict(report)
    report_obj["_model"] = model
    report_obj["_preprocessor"] = preprocessor
    report_obj["_data"] = data
    return report_obj


def _get(d: Optional[Dict[str, float]], key: str):
    if not d:
        return None
    v = d.get(key)
    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else v


def _json_clean(obj):
    """NaN/inf -> None, numpy scalars -> Python, recursively."""
    if isinstance(obj, dict):
        return {str(k): _json_clean(v) for k, v in obj.items() if not str(k).startswith("_")}
    if isinstance(obj, (list, tuple)):
        return [_json_clean(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
