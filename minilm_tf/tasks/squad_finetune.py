"""Fine-tuning and evaluating an encoder on extractive QA (SQuAD v1.1 / v2.0).

`finetune_qa(encoder, config, workdir)` is the QA hook of
`minilm_tf.tasks.finetune.run_finetune` (and so of `tools/finetune.py
--task squad|squad_v2 ...` or `--task NAME --task_kind qa`):

1. Data (`load_qa_data`): local SQuAD-format JSON files (`train_file`,
   `validation_file`, optional `test_file`; v1.1 or v2.0 is detected from the
   files: a `version` of v2.x or any `is_impossible` question), or TFDS
   `squad/v1.1` (tasks `squad`, `squad_v1`, `squad_v1.1`, `squad1`,
   `squad/v1.1`) / `squad/v2.0` (`squad_v2`, `squad_v2.0`, `squad2`,
   `squad/v2.0`), train + validation splits. Without a validation file, ~10%
   of the train contexts (all their questions) are held out, seeded.
   Training questions whose answer does not match their context are skipped
   (task option `on_mismatch`: skip / keep / error); evaluation questions
   are always kept with all their gold answers. `max_train_examples` /
   `max_eval_examples` subsample questions, seeded.
2. Features: `squad.prepare_squad` (sliding windows of `max_seq_length`
   tokens, `doc_stride` apart; questions cut to `max_query_length` tokens),
   tokenised with `squad.OffsetWordPieceTokenizer` mirroring the encoder's
   keras-hub WordPiece tokenizer.
3. Model: `qa_model.build_qa_model(backbone)` (span head over the sequence
   output), loss (CE(start) + CE(end)) / 2, AdamW with linear warm-up and
   linear decay (`minilm_tf.optimizers.adamw.make_adamw` via `finetune.make_optimizer`),
   gradient clipping, seeded shuffling.
4. Evaluation: `squad.postprocess` (n-best search over all windows, v2.0
   null answer against `null_threshold`) and the official EM / F1
   (`squad_metrics.squad_evaluate`) on validation (and test when given).
   With `epochs > 1` the validation F1 is computed after every epoch, training
   stops after `early_stopping_patience` epochs without improvement and the
   best epoch's weights are restored.
5. Outputs in `workdir`: `model.keras` (Keras archive; loads with
   `safe_mode=True`, see `load_finetuned_qa`), `qa_config.json` (what is
   needed to preprocess and decode: max_seq_length, doc_stride, lowercase,
   ...), `qa_vocab.txt` (the tokenizer's vocabulary) and
   `predictions_<split>.json` (question id -> answer, the official format).
   `run_finetune` writes `report.json` from the returned dict.

Defaults (BERT `run_squad.py`): max_seq_length 384 (capped at the backbone's
position table), doc_stride 128, max_query_length 64, n_best 20,
max_answer_length 30, null_threshold 0.0. Override them with `--task_option
KEY=VALUE` (`config.extra`): `max_seq_length` (or `--sequence_length`),
`doc_stride`, `max_query_length`, `n_best`, `max_answer_length`,
`null_threshold`, `version_2` (force v1.1/v2.0 rules), `on_mismatch`,
`head_dropout` (dropout before the span head, default 0 as in BERT;
`config.dropout` is the classifier's and is not used for QA), `tfds_name`,
`save_predictions`. Unknown keys are an error.

The throughput and latency fields match the classification report:
`throughput.train_examples_per_sec` counts questions (per-epoch evaluation
excluded; `train_features_per_sec` counts windows), `eval_examples_per_sec`
questions through model + decoding, and `latency_ms_per_example` is batched
model inference per window of `max_seq_length` tokens.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
import warnings
from typing import Any, Callable, Dict, List, Optional

import keras
import numpy as np

from minilm_tf.utils import fileio
from minilm_tf.utils import workdir as workdirs
from minilm_tf.tasks import finetune as ft
from minilm_tf.tasks import qa_model
from minilm_tf.tasks import resume
from minilm_tf.tasks import squad
from minilm_tf.tasks import squad_metrics

logger = logging.getLogger(__name__)

__all__ = [
    "QA_CONFIG_FILE",
    "QAData",
    "QAOptions",
    "evaluate_qa",
    "finetune_qa",
    "load_finetuned_qa",
    "load_qa_data",
    "predict_logits",
    "resolve_qa_options",
    "tfds_name_for_task",
]

QA_CONFIG_FILE = "qa_config.json"
VOCAB_FILE = "qa_vocab.txt"
MODEL_FILE = ft.MODEL_KERAS_FILE  # "model.keras": finetune's workdir checks know it
MAIN_METRIC = "f1"
HOLDOUT_FRACTION = 0.1
_POOLER_NO_GRADIENT = r"Gradients do not exist for variables \['pooled_dense/kernel', " \
    r"'pooled_dense/bias'\]"

_TFDS_V1 = "squad/v1.1"
_TFDS_V2 = "squad/v2.0"
_TFDS_NAMES = {
    "squad": _TFDS_V1, "squad_v1": _TFDS_V1, "squad_v1.1": _TFDS_V1, "squad1": _TFDS_V1,
    "squad/v1.1": _TFDS_V1, "squad/v1": _TFDS_V1, "squad_v11": _TFDS_V1,
    "squad_v2": _TFDS_V2, "squad_v2.0": _TFDS_V2, "squad2": _TFDS_V2,
    "squad/v2.0": _TFDS_V2, "squad/v2": _TFDS_V2, "squad_v20": _TFDS_V2,
}


# --------------------------------------------------------------------------
# Options


@dataclasses.dataclass
class QAOptions:
    """Preprocessing / decoding settings (BERT run_squad.py defaults)."""

    max_seq_length: int = 384
    doc_stride: int = 128
    max_query_length: int = 64
    n_best: int = 20
    max_answer_length: int = 30
    null_threshold: float = 0.0
    version_2: Optional[bool] = None  # None: from the data / task name
    on_mismatch: str = "skip"  # training questions whose answer does not align
    head_dropout: float = 0.0
    tfds_name: Optional[str] = None
    save_predictions: bool = True

    def validate(self) -> None:
        for name in ("max_seq_length", "doc_stride", "max_query_length", "n_best",
                     "max_answer_length"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"QA option {name} must be a positive integer, got {value!r}.")
        if self.max_seq_length < self.max_query_length + 4:
            raise ValueError(
                f"max_seq_length={self.max_seq_length} leaves no room for the context after "
                f"max_query_length={self.max_query_length} question tokens.")
        if self.on_mismatch not in squad.MISMATCH_MODES:
            raise ValueError(f"QA option on_mismatch must be one of {squad.MISMATCH_MODES}, "
                             f"got {self.on_mismatch!r}.")
        if not 0 <= self.head_dropout < 1:
            raise ValueError(f"QA option head_dropout must be in [0, 1), got {self.head_dropout}.")
        if not isinstance(self.null_threshold, (int, float)) or not math.isfinite(
                self.null_threshold):
            raise ValueError(f"QA option null_threshold must be a number, "
                             f"got {self.null_threshold!r}.")


_OPTION_ALIASES = {"n_best_size": "n_best", "max_seq_len": "max_seq_length",
                   "sequence_length": "max_seq_length", "null_score_diff_threshold":
                   "null_threshold"}


def resolve_qa_options(config, backbone=None) -> QAOptions:
    """`QAOptions` from `config.extra` (task options) and `config.sequence_length`.

    The default max_seq_length (384) is capped at the backbone's position
    table (`max_sequence_length`); an explicit longer one is an error.
    """
    fields = {f.name for f in dataclasses.fields(QAOptions)}
    values: Dict[str, Any] = {}
    for key, value in dict(getattr(config, "extra", None) or {}).items():
        name = _OPTION_ALIASES.get(key, key)
        if name not in fields:
            raise ValueError(f"Unknown QA task option {key!r}; known: {sorted(fields)}.")
        values[name] = value
    for key in ("null_threshold", "head_dropout"):
        if key in values and isinstance(values[key], int) and not isinstance(values[key], bool):
            values[key] = float(values[key])
    for key in ("version_2", "save_predictions"):
        if key in values and values[key] is not None and not isinstance(values[key], bool):
            raise ValueError(f"QA option {key} must be true or false, got {values[key]!r}.")
    seq = getattr(config, "sequence_length", None)
    explicit = seq is not None or "max_seq_length" in values
    if seq is not None:
        if "max_seq_length" in values and values["max_seq_length"] != seq:
            raise ValueError(f"--sequence_length {seq} and task option max_seq_length="
                             f"{values['max_seq_length']} disagree.")
        values["max_seq_length"] = seq
    options = QAOptions(**values)
    max_positions = getattr(backbone, "max_sequence_length", None) if backbone else None
    if max_positions and options.max_seq_length > max_positions:
        if explicit:
            raise ValueError(f"max_seq_length {options.max_seq_length} exceeds the model's "
                             f"{max_positions} positions.")
        options.max_seq_length = int(max_positions)
        if "max_query_length" not in values and (
                options.max_query_length + 4 > options.max_seq_length):
            options.max_query_length = max(1, options.max_seq_length // 4)
    options.validate()
    return options


# --------------------------------------------------------------------------
# Data


@dataclasses.dataclass
class QAData:
    """Examples of each split and where they came from."""

    train: List[squad.SquadExample]
    validation: List[squad.SquadExample]
    test: Optional[List[squad.SquadExample]]
    version_2: bool
    source: str
    notes: List[str] = dataclasses.field(default_factory=list)

    def splits(self) -> Dict[str, Optional[List[squad.SquadExample]]]:
        return {"train": self.train, "validation": self.validation, "test": self.test}


def tfds_name_for_task(task: str) -> Optional[str]:
    """`squad/v1.1` / `squad/v2.0` for the SQuAD task names, else None."""
    name = task.strip().lower().replace("-", "_")
    return _TFDS_NAMES.get(name)


def _task_says_v2(task: str) -> Optional[bool]:
    name = tfds_name_for_task(task)
    return None if name is None else name == _TFDS_V2


def _read_json(path: str):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"SQuAD file {path} does not exist.")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not SQuAD JSON: {e}") from e
    if not (isinstance(data, dict) and isinstance(data.get("data"), list)):
        raise ValueError(f"{path} is not SQuAD JSON (expected an object with a 'data' list "
                         "of articles).")
    return data


def detect_version_2(data) -> bool:
    """True for SQuAD v2.0 JSON: `version` v2.x, or any `is_impossible` question."""
    if str(data.get("version", "")).lstrip("v").startswith("2"):
        return True
    return any(qa.get("is_impossible", False) for article in data["data"]
               for paragraph in article.get("paragraphs", []) for qa in paragraph.get("qas", []))


def _subsample(examples, n: Optional[int], seed: int):
    if n is None or n >= len(examples):
        return list(examples)
    rng = np.random.default_rng(seed)
    return [examples[i] for i in np.sort(rng.choice(len(examples), size=n, replace=False))]


def _holdout_by_context(examples, fraction: float, seed: int):
    """(train, held out): ~`fraction` of the contexts with all their questions."""
    contexts = list(dict.fromkeys(e.context for e in examples))
    if len(contexts) < 2:
        raise ValueError("Cannot hold out validation questions from a train file with a "
                         "single context; pass --validation_file.")
    rng = np.random.default_rng(seed)
    n = max(1, int(round(fraction * len(contexts))))
    held = {contexts[i] for i in rng.choice(len(contexts), size=n, replace=False)}
    return ([e for e in examples if e.context not in held],
            [e for e in examples if e.context in held])


def load_qa_data(config, options: Optional[QAOptions] = None) -> QAData:
    """The QA task's examples (files or TFDS), subsampled as the config says."""
    options = options or QAOptions()
    notes: List[str] = []
    seed = int(getattr(config, "seed", 0) or 0)
    use_files = any(getattr(config, k, None) for k in ("train_file", "validation_file"))
    test = None
    if use_files:
        if not config.train_file:
            raise ValueError("QA from local files needs --train_file (SQuAD JSON).")
        raw = {k: _read_json(getattr(config, f"{k}_file"))
               for k in ("train", "validation", "test") if getattr(config, f"{k}_file", None)}
        version_2 = options.version_2
        if version_2 is None:
            version_2 = any(detect_version_2(d) for d in raw.values()) or bool(
                _task_says_v2(config.task))
        train = squad.read_squad_json(raw["train"], is_training=True,
                                      on_mismatch=options.on_mismatch, version_2=version_2)
        if "validation" in raw:
            validation = squad.read_squad_json(raw["validation"], is_training=False,
                                               version_2=version_2)
        else:
            train, validation = _holdout_by_context(list(train), HOLDOUT_FRACTION, seed)
            notes.append(f"no validation file: {len(validation)} questions of "
                         f"~{HOLDOUT_FRACTION:.0%} of the train contexts held out "
                         f"(seed {seed}).")
        if "test" in raw:
            test = squad.read_squad_json(raw["test"], is_training=False, version_2=version_2)
        source = "files"
    else:
        name = options.tfds_name or tfds_name_for_task(config.task)
        if name is None:
            raise ValueError(
                f"QA task {config.task!r} has no built-in data: pass --train_file/"
                "--validation_file (SQuAD JSON) or use task squad / squad_v2.")
        version_2 = options.version_2 if options.version_2 is not None else (
            name.rstrip("/").endswith("v2.0"))
        kwargs = dict(data_dir=getattr(config, "tfds_data_dir", None),
                      download=getattr(config, "tfds_download", True))
        train = squad.load_squad_tfds(name, "train", is_training=True,
                                      on_mismatch=options.on_mismatch, **kwargs)
        validation = squad.load_squad_tfds(name, "validation", is_training=False, **kwargs)
        if getattr(config, "test_file", None):
            test = squad.read_squad_json(_read_json(config.test_file), is_training=False,
                                         version_2=version_2)
        source = f"tfds:{name}"
    skipped = getattr(train, "num_skipped", 0)
    if skipped:
        notes.append(f"{skipped} training question(s) skipped: answer does not match the "
                     f"context (on_mismatch={options.on_mismatch!r}); first ids "
                     f"{train.skipped_ids[:5]}.")
    train, validation = list(train), list(validation)
    test = list(test) if test is not None else None
    if not train:
        raise ValueError("No training questions left (all skipped or empty data); check the "
                         "data or use --task_option on_mismatch=keep.")
    if not validation:
        raise ValueError("The QA validation split is empty.")
    n_train = getattr(config, "max_train_examples", None)
    if n_train and n_train < len(train):
        notes.append(f"train subsampled to {n_train} of {len(train)} questions (seed {seed}).")
        train = _subsample(train, n_train, seed)
    n_eval = getattr(config, "max_eval_examples", None)
    if n_eval:
        if n_eval < len(validation):
            notes.append(f"validation subsampled to {n_eval} of {len(validation)} questions "
                         f"(seed {seed}).")
            validation = _subsample(validation, n_eval, seed)
        if test is not None and n_eval < len(test):
            notes.append(f"test subsampled to {n_eval} of {len(test)} questions (seed {seed}).")
            test = _subsample(test, n_eval, seed)
    return QAData(train, validation, test or None, bool(version_2), source, notes)


# --------------------------------------------------------------------------
# Prediction and evaluation


def _inputs_dataset(features, batch_size: int):
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices(squad.model_inputs(features)).batch(batch_size)


def predict_logits(model, features_or_dataset, batch_size: int = 64):
    """(start_logits, end_logits) [N, L] float32 numpy for `prepare_squad`
    features (or a batched dataset of their model inputs)."""
    ds = features_or_dataset
    if isinstance(ds, dict):
        ds = _inputs_dataset(ds, batch_size)
    starts, ends = [], []
    for x in ds:
        out = model.predict_on_batch(x)
        starts.append(np.asarray(out["start_logits"], np.float32))
        ends.append(np.asarray(out["end_logits"], np.float32))
    if not starts:
        return np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32)
    return np.concatenate(starts), np.concatenate(ends)


def evaluate_qa(model, examples, features, meta, options: QAOptions, version_2: bool,
                batch_size: int = 64, dataset=None):
    """(official metrics, predictions {id: answer}, seconds) for one split.

    `dataset`: a cached batched dataset of the features' model inputs to reuse.
    """
    t0 = time.perf_counter()
    start, end = predict_logits(model, dataset if dataset is not None else features,
                                batch_size)
    predictions = squad.postprocess(
        examples, meta, start, end, n_best=options.n_best,
        max_answer_length=options.max_answer_length, version_2=version_2,
        null_threshold=options.null_threshold)
    seconds = time.perf_counter() - t0
    metrics = squad_metrics.squad_evaluate(examples, predictions, version_2=version_2)
    return metrics, predictions, seconds


class _SpanLogitsStack:
    """`model(x)` -> one tensor (start, end stacked), for `ft.measure_latency`."""

    def __init__(self, model):
        self.model = model

    def __call__(self, x, training=False):
        out = self.model(x, training=training)
        return keras.ops.stack([out["start_logits"], out["end_logits"]])


def _numeric(metrics: Dict[str, Any]) -> Dict[str, float]:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float))
            and not isinstance(v, bool)}


# --------------------------------------------------------------------------
# Saving / loading


def _check_encoder(encoder) -> None:
    import keras_hub

    tokenizer = getattr(encoder, "tokenizer", None)
    if tokenizer is None:
        raise ValueError("QA fine-tuning needs the encoder's tokenizer (got none).")
    if not isinstance(tokenizer, keras_hub.tokenizers.WordPieceTokenizer):
        raise NotImplementedError(
            f"QA fine-tuning supports WordPiece (BERT-style) tokenizers; this model has "
            f"{type(tokenizer).__name__}.")
    backbone_inputs = encoder.backbone.input
    names = set(backbone_inputs) if isinstance(backbone_inputs, dict) else set()
    if not set(qa_model.INPUT_NAMES) <= names:
        raise NotImplementedError(
            f"QA fine-tuning needs a backbone taking {list(qa_model.INPUT_NAMES)}; "
            f"{type(encoder.backbone).__name__} takes {sorted(names)}.")


def _find_backbone(model):
    for layer in model.layers:
        if hasattr(layer, "transformer_layers"):
            return layer
    return None


def save_qa_model(model, workdir: str) -> str:
    """`<workdir>/model.keras`, written beside and renamed into place."""
    path = os.path.join(workdir, MODEL_FILE)
    tmp = os.path.join(workdir, ".tmp-" + MODEL_FILE)
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def load_finetuned_qa(workdir: str, safe_mode: bool = True):
    """(model, qa_config dict, `squad.OffsetWordPieceTokenizer`) of a saved QA run.

    The model loads with `safe_mode=True` (no code in the archive); the
    feed-forward activation the encoder was fine-tuned with is restored
    (keras-hub rebuilds its encoders with tanh-approximate GELU). Answer
    questions with `squad.prepare_squad(examples, tokenizer, **windowing)`,
    `predict_logits` and `squad.postprocess` (settings in qa_config).
    """
    from minilm_tf.models.encoders import set_feedforward_activation

    with open(os.path.join(workdir, QA_CONFIG_FILE), encoding="utf-8") as f:
        qa_config = json.load(f)
    path = os.path.join(workdir, qa_config.get("model_file", MODEL_FILE))
    if safe_mode:
        model = fileio.load_keras_archive(path)
    else:  # the caller vouches for the archive
        model = keras.saving.load_model(path, safe_mode=False)
    hidden_act = qa_config.get("hidden_act")
    backbone = _find_backbone(model)
    if hidden_act and backbone is not None:
        set_feedforward_activation(backbone, hidden_act)
    tok = qa_config.get("tokenizer", {})
    tokenizer = squad.OffsetWordPieceTokenizer(
        os.path.join(workdir, qa_config.get("vocabulary_file", VOCAB_FILE)),
        lowercase=tok.get("lowercase", True), strip_accents=tok.get("strip_accents"),
        split_on_cjk=tok.get("split_on_cjk", True),
        suffix_indicator=tok.get("suffix_indicator", "##"),
        oov_token=tok.get("oov_token", "[UNK]"), special_tokens=tok.get("special_tokens"),
        cls_token=tok.get("cls_token", "[CLS]"), sep_token=tok.get("sep_token", "[SEP]"),
        pad_token=tok.get("pad_token", "[PAD]"))
    return model, qa_config, tokenizer


def _qa_config(options: QAOptions, version_2: bool, tok: squad.OffsetWordPieceTokenizer,
               encoder, saved: bool) -> Dict[str, Any]:
    cls_tok = tok.vocabulary[tok.cls_id]
    return {
        "max_seq_length": options.max_seq_length,
        "doc_stride": options.doc_stride,
        "max_query_length": options.max_query_length,
        "n_best": options.n_best,
        "max_answer_length": options.max_answer_length,
        "null_threshold": options.null_threshold,
        "version_2": version_2,
        "lowercase": tok.lowercase,
        "tokenizer": {
            "lowercase": tok.lowercase, "strip_accents": tok.strip_accents,
            "split_on_cjk": tok.split_on_cjk, "suffix_indicator": tok.suffix_indicator,
            "oov_token": tok.oov_token, "special_tokens": list(tok.special_tokens) or None,
            "cls_token": cls_tok, "sep_token": tok.vocabulary[tok.sep_id],
            "pad_token": tok.vocabulary[tok.pad_id],
        },
        "vocabulary_file": VOCAB_FILE,
        "vocabulary_size": len(tok.vocabulary),
        "model_file": MODEL_FILE if saved else None,
        "inputs": list(qa_model.INPUT_NAMES),
        "outputs": ["start_logits", "end_logits"],
        "window_layout": "[CLS] question [SEP] context [SEP]; segment 1 from the context",
        "hidden_act": getattr(encoder, "hidden_act", None),
        "backbone_class": type(encoder.backbone).__name__,
        "finetuned_from": getattr(encoder, "spec", None),
    }


# --------------------------------------------------------------------------
# The hook


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
    _check_encoder(encoder)
    options = resolve_qa_options(config, encoder.backbone)
    if data is None:
        data = load_qa_data(config, options)
    version_2 = data.version_2 if options.version_2 is None else options.version_2
    notes = list(data.notes)
    explicit_length = config.sequence_length is not None or any(
        _OPTION_ALIASES.get(k, k) == "max_seq_length" for k in (config.extra or {}))
    if options.max_seq_length != QAOptions.max_seq_length and not explicit_length:
        notes.append(f"max_seq_length capped at the model's {options.max_seq_length} "
                     "positions.")
    log(f"QA data ({data.source}, {'v2.0' if version_2 else 'v1.1'} rules): "
        f"train={len(data.train)} validation={len(data.validation)} "
        f"test={len(data.test) if data.test else 0} questions")

    tok = squad.get_offset_tokenizer(encoder.tokenizer)
    windowing = dict(max_seq_length=options.max_seq_length, doc_stride=options.doc_stride,
                     max_query_length=options.max_query_length)
    t0 = time.perf_counter()
    train_features, _ = squad.prepare_squad(data.train, tok, **windowing)
    evals = {}
    for split in ("validation", "test"):
        examples = getattr(data, split)
        if examples:
            features, meta = squad.prepare_squad(examples, tok, **windowing)
            evals[split] = (examples, features, meta,
                            _inputs_dataset(features, config.eval_batch_size).cache())
    preprocess_seconds = time.perf_counter() - t0
    n_train_features = len(train_features["token_ids"])
    log(f"features: train={n_train_features} "
        + " ".join(f"{k}={len(v[2])}" for k, v in evals.items())
        + f" (max_seq_length={options.max_seq_length}, doc_stride={options.doc_stride}; "
        f"{preprocess_seconds:.1f}s)")

    keras.utils.set_random_seed(config.seed)
    model = qa_model.build_qa_model(encoder.backbone, dropout=options.head_dropout)
    # Full batches only (as BERT's run_squad: one traced shape, reshuffled every
    # epoch); a train split smaller than one batch is one partial batch.
    drop_remainder = n_train_features >= config.batch_size
    steps_per_epoch = (n_train_features // config.batch_size) if drop_remainder else 1
    total_steps = steps_per_epoch * config.epochs
    warmup_steps = int(round(total_steps * config.warmup_ratio))
    optimizer = ft.make_optimizer(config.learning_rate, total_steps, config.warmup_ratio,
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
        return (qa_model.make_qa_dataset(features, config.batch_size, drop_remainder=drop_remainder),
                len(order))

    def run_eval(split):
        examples, features, meta, ds = evals[split]
        return evaluate_qa(model, examples, features, meta, options, version_2,
                           config.eval_batch_size, ds)

    callback = None
    if config.epochs > 1:
        callback = ft.ValidationMetricCallback(
            lambda: _numeric(run_eval("validation")[0]), MAIN_METRIC,
            config.early_stopping_patience, True, log)
    with warnings.catch_warnings():
        # The backbone's pooler is not part of the QA model's loss.
        warnings.filterwarnings("ignore", message=_POOLER_NO_GRADIENT)
        fit = resume.fit_resumable(
            model, epoch_dataset, epochs=config.epochs, steps_per_epoch=steps_per_epoch,
            directory=os.path.join(workdir, resume.CHECKPOINT_DIR), validation=callback,
            log=log, batch_size=config.batch_size)
    train_seconds = max(fit.fit_seconds - (callback.eval_seconds if callback else 0.0), 1e-9)
    epochs_run = len(callback.history) if callback else config.epochs
    features_seen = fit.examples_trained
    del train_arrays

    metrics: Dict[str, Any] = {"validation": None, "test": None}
    eval_eps: Dict[str, Optional[float]] = {"validation": None, "test": None}
    for split in evals:
        values, predictions, seconds = run_eval(split)
        metrics[split] = values
        eval_eps[split] = len(evals[split][0]) / max(seconds, 1e-9)
        log(f"{split}: exact_match={values['exact_match']:.2f} f1={values['f1']:.2f}")
        if options.save_predictions:
            ft.write_json_atomic(os.path.join(workdir, f"predictions_{split}.json"),
                                 predictions)

    latency = None
    if config.latency_examples > 0:
        latency_bs = config.latency_batch_size or config.eval_batch_size
        ds = evals["validation"][3]
        if latency_bs != config.eval_batch_size:
            ds = _inputs_dataset(evals["validation"][1], latency_bs)
        latency = ft.measure_latency(_SpanLogitsStack(model), ds, batch_size=latency_bs,
                                     num_examples=config.latency_examples)
        if latency:
            latency["unit"] = "window of max_seq_length tokens"

    saved = None
    if config.save_model:
        save_qa_model(model, workdir)
        saved = {"format": "keras", "path": MODEL_FILE, "config_file": QA_CONFIG_FILE,
                 "vocabulary_file": VOCAB_FILE, "safe_mode": True}
    fileio.atomic_write_text(os.path.join(workdir, VOCAB_FILE),
                             "\n".join(tok.vocabulary) + "\n")
    ft.write_json_atomic(os.path.join(workdir, QA_CONFIG_FILE),
                         _qa_config(options, version_2, tok, encoder, saved is not None))

    total_params = ft.count_params(model)
    backbone_params = ft.count_params(encoder.backbone)
    val, test = metrics["validation"], metrics["test"]
    result = {
        "task_source": data.source,
        "notes": notes,
        "main_metric": MAIN_METRIC,
        "metrics": metrics,
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
