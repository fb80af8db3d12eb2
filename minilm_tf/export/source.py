"""What gets exported: a fine-tuned task model or a bare encoder, with the
tokenizer settings, labels, pooling and sequence length that go with it.

`load_source(path_or_spec)` accepts

* a fine-tuning workdir written by `tools/finetune.py` (it holds
  `labels.json` and `model/`, a keras-hub task preset) or that `model/`
  directory itself: exported as a classifier (or regressor);
* any encoder spec `minilm_tf.load_teacher` accepts (`all-minilm-l6-v2`, a
  Hugging Face directory, a keras-hub preset directory such as a student
  saved with `minilm_tf.save_encoder`): exported as a sentence encoder whose
  `embedding` is the sentence-transformers pooling of the token states
  (mean over real tokens unless the checkpoint's pooling config says
  otherwise), L2-normalised when the checkpoint normalises.

`compute_outputs(source, features)` is the graph code shared by every export
(SavedModel and TFLite): token ids -> named outputs. `keras_reference(...)`
computes the same outputs the plain Keras way (keras-hub preprocessor in
`tf.data`, `model.predict_on_batch`, pooling in numpy) and is what exports
are checked against.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Any, Sequence

import numpy as np

from minilm_tf.models.encoders import load_teacher
from minilm_tf.models.students import count_params
from minilm_tf.tasks.classification.model import build_preprocessor
from minilm_tf.tasks.finetuned import LABELS_FILE, MODEL_DIR, REPORT_FILE, load_finetuned

logger = logging.getLogger(__name__)

CLASSIFICATION = "classification"
REGRESSION = "regression"
ENCODER = "encoder"
KINDS = (CLASSIFICATION, REGRESSION, ENCODER)

# sentence-transformers pooling modes, in the order it concatenates them.
POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len")
_ST_POOLING_KEYS = {
    "cls": "pooling_mode_cls_token",
    "max": "pooling_mode_max_tokens",
    "mean": "pooling_mode_mean_tokens",
    "mean_sqrt_len": "pooling_mode_mean_sqrt_len_tokens",
}
DEFAULT_ENCODER_SEQUENCE_LENGTH = 128
ID_INPUTS = ("token_ids", "segment_ids", "padding_mask")


@dataclasses.dataclass
class ExportSource:
    """A model ready to export.

    Attributes:
        kind: `classification`, `regression` or `encoder`.
        model: Keras model from the id features (`token_ids`, `segment_ids`,
            `padding_mask`) to logits (tasks) or the backbone (encoders).
        backbone: the encoder backbone.
        tokenizer: the keras-hub tokenizer (`lowercase`, `strip_accents` set).
        preprocessor: keras-hub text-classifier preprocessor packing
            `[CLS] a [SEP] (b [SEP])` to `sequence_length`.
        sequence_length: tokens per example, including special tokens.
        labels: class names (strings) for classification with a vocabulary.
        is_pair: whether the task takes `text` and `text_pair`.
        pooling: encoder pooling modes (concatenated in this order).
        normalize: L2-normalise encoder embeddings.
        spec: what it was loaded from.
        task: the fine-tuning task name, when there is one.
        info: extra facts recorded in export metadata (labels.json, ...).
    """

    kind: str
    model: Any
    backbone: Any
    tokenizer: Any
    preprocessor: Any
    sequence_length: int
    labels: list[str] | None = None
    is_pair: bool = False
    pooling: tuple[str, ...] = ("mean",)
    normalize: bool = False
    spec: str = ""
    task: str | None = None
    info: dict = dataclasses.field(default_factory=dict)

    @property
    def vocabulary(self) -> list[str]:
        return self.tokenizer.get_vocabulary()

    @property
    def num_outputs(self) -> int | None:
        if self.kind == ENCODER:
            return None
        return int(self.model.outputs[0].shape[-1])

    @property
    def embedding_dim(self) -> int:
        return int(self.backbone.hidden_dim) * len(self.pooling)

    @property
    def text_inputs(self) -> tuple[str, ...]:
        return ("text", "text_pair") if self.is_pair else ("text",)

    def metadata(self) -> dict:
        """JSON-able description written next to every export."""
        tok = self.tokenizer
        return {
            "kind": self.kind,
            "spec": self.spec,
            "task": self.task,
            "labels": self.labels,
            "is_pair": self.is_pair,
            "sequence_length": self.sequence_length,
            "pooling": list(self.pooling) if self.kind == ENCODER else None,
            "normalize": self.normalize if self.kind == ENCODER else None,
            "embedding_dim": self.embedding_dim if self.kind == ENCODER else None,
            "num_outputs": self.num_outputs,
            "tokenizer": {
                "class": type(tok).__name__,
                "lowercase": bool(getattr(tok, "lowercase", False)),
                "strip_accents": bool(getattr(tok, "strip_accents", False)),
                "vocabulary_size": int(tok.vocabulary_size()),
            },
            "backbone": {
                "class": type(self.backbone).__name__,
                "num_layers": int(getattr(self.backbone, "num_layers", 0)),
                "hidden_dim": int(getattr(self.backbone, "hidden_dim", 0)),
                "max_sequence_length": int(getattr(self.backbone, "max_sequence_length", 0)),
                "parameters": count_params(self.model),
            },
            **{k: v for k, v in self.info.items() if k not in ("labels_json",)},
        }


# --------------------------------------------------------------------------
# Loading


def is_finetune_dir(path: str) -> bool:
    """A `tools/finetune.py` workdir or its `model/` directory."""
    if not os.path.isdir(path):
        return False
    if os.path.isfile(os.path.join(path, LABELS_FILE)):
        return True
    return os.path.isfile(os.path.join(path, MODEL_DIR, LABELS_FILE))


def pooling_from_metadata(metadata: dict) -> tuple[str, ...]:
    """Pooling modes from a sentence-transformers `1_Pooling/config.json`."""
    config = (metadata or {}).get("pooling") or {}
    modes = tuple(m for m in POOLING_MODES if config.get(_ST_POOLING_KEYS[m]))
    unsupported = [
        k for k, v in config.items()
        if k.startswith("pooling_mode_") and v and k not in _ST_POOLING_KEYS.values()
    ]
    if unsupported:
        raise ValueError(
            f"The checkpoint's sentence-transformers pooling uses {unsupported}, which the "
            f"export does not implement; pass --pooling (one of {POOLING_MODES})."
        )
    return modes or ("mean",)


def _sentence_bert_max_length(source_dir: str | None) -> int | None:
    if not source_dir:
        return None
    path = os.path.join(source_dir, "sentence_bert_config.json")
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        value = json.load(f).get("max_seq_length")
    return int(value) if value else None


def _check_sequence_length(sequence_length: int, backbone) -> int:
    sequence_length = int(sequence_length)
    limit = int(getattr(backbone, "max_sequence_length", sequence_length))
    if sequence_length < 3:
        raise ValueError(f"sequence_length must be >= 3, got {sequence_length}.")
    if sequence_length > limit:
        raise ValueError(
            f"sequence_length={sequence_length} exceeds the backbone's "
            f"max_sequence_length={limit} (its position embeddings)."
        )
    return sequence_length


def load_source(
    path: str,
    sequence_length: int | None = None,
    pooling: Sequence[str] | str | None = None,
    normalize: bool | None = None,
) -> ExportSource:
    """Loads a fine-tuned task model or an encoder for export.

    Args:
        path: a `tools/finetune.py` workdir (or its `model/` dir), or any
            encoder spec `minilm_tf.load_teacher` accepts.
        sequence_length: tokens per example; defaults to the fine-tuning
            sequence length, or for encoders to the sentence-transformers
            `max_seq_length` when there is one, else 128.
        pooling: encoder pooling mode(s) overriding the checkpoint's.
        normalize: L2-normalise encoder embeddings (default: the checkpoint's
            sentence-transformers config, else False).
    """
    if is_finetune_dir(path):
        if pooling is not None or normalize is not None:
            raise ValueError("--pooling/--normalize apply to encoders, not task models.")
        return _load_finetuned(path, sequence_length)
    return _load_encoder(path, sequence_length, pooling, normalize)


def _load_finetuned(path: str, sequence_length: int | None) -> ExportSource:
    model, preprocessor, labels_json = load_finetuned(path)
    if preprocessor is None or not hasattr(preprocessor, "tokenizer"):
        raise NotImplementedError(
            f"{path} holds a plain .keras model without a keras-hub preprocessor; only "
            "keras-hub task presets (tools/finetune.py's model/ directory) can be "
            "exported with in-graph tokenisation."
        )
    kind = labels_json.get("kind", CLASSIFICATION)
    if kind not in (CLASSIFICATION, REGRESSION):
        raise NotImplementedError(f"Exporting {kind!r} task models is not supported.")
    trained_length = int(labels_json.get("sequence_length") or preprocessor.sequence_length)
    length = _check_sequence_length(sequence_length or trained_length, model.backbone)
    if length != trained_length:
        logger.warning("Exporting with sequence_length=%d; the model was fine-tuned with %d.",
                       length, trained_length)
    preprocessor.sequence_length = length
    labels = labels_json.get("labels")
    if kind == CLASSIFICATION and labels is not None:
        labels = [str(v) for v in labels]
    report_path = os.path.join(path, REPORT_FILE)
    info = {"finetune_labels": labels_json, "source_dir": os.path.abspath(path)}
    if os.path.exists(report_path):
        info["finetune_report"] = os.path.abspath(report_path)
    meta_path = os.path.join(path, MODEL_DIR, "minilm_tf.json")
    if not os.path.exists(meta_path):
        meta_path = os.path.join(path, "minilm_tf.json")
    if os.path.exists(meta_path):
        with open(meta_path, encoding="utf-8") as f:
            info["hidden_act"] = json.load(f).get("hidden_act")
    return ExportSource(
        kind=kind,
        model=model,
        backbone=model.backbone,
        tokenizer=preprocessor.tokenizer,
        preprocessor=preprocessor,
        sequence_length=length,
        labels=labels if kind == CLASSIFICATION else None,
        is_pair=bool(labels_json.get("is_pair", False)),
        spec=path,
        task=labels_json.get("task"),
        info=info,
    )


def _load_encoder(path, sequence_length, pooling, normalize) -> ExportSource:
    encoder = load_teacher(path)
    if encoder.tokenizer is None:
        raise ValueError(f"{path} has no tokenizer; in-graph tokenisation needs one.")
    return encoder_source(encoder, sequence_length, pooling, normalize)


def encoder_source(encoder, sequence_length=None, pooling=None, normalize=None) -> ExportSource:
    """An `ExportSource` for a `LoadedEncoder` (sentence-encoder export)."""
    if isinstance(pooling, str):
        pooling = [p.strip() for p in pooling.split(",") if p.strip()]
    if pooling:
        bad = [p for p in pooling if p not in POOLING_MODES]
        if bad:
            raise ValueError(f"Unknown pooling {bad}; choose from {POOLING_MODES}.")
        modes = tuple(m for m in POOLING_MODES if m in pooling)
    else:
        modes = pooling_from_metadata(encoder.metadata)
    if normalize is None:
        normalize = bool(encoder.metadata.get("normalize", False))
    default_length = _sentence_bert_max_length(encoder.source_dir) or min(
        DEFAULT_ENCODER_SEQUENCE_LENGTH, int(encoder.backbone.max_sequence_length))
    length = _check_sequence_length(sequence_length or default_length, encoder.backbone)
    preprocessor = build_preprocessor(encoder.tokenizer, length)
    return ExportSource(
        kind=ENCODER,
        model=encoder.backbone,
        backbone=encoder.backbone,
        tokenizer=encoder.tokenizer,
        preprocessor=preprocessor,
        sequence_length=length,
        pooling=modes,
        normalize=bool(normalize),
        spec=str(encoder.spec),
        info={"hidden_act": encoder.hidden_act,
              "source_dir": encoder.source_dir},
    )


def task_source(model, preprocessor, kind=CLASSIFICATION, labels=None, is_pair=False,
                spec="in-memory", task=None) -> ExportSource:
    """An `ExportSource` for an in-memory keras-hub task model (ids -> logits)."""
    length = _check_sequence_length(preprocessor.sequence_length, model.backbone)
    return ExportSource(
        kind=kind, model=model, backbone=model.backbone, tokenizer=preprocessor.tokenizer,
        preprocessor=preprocessor, sequence_length=length,
        labels=[str(v) for v in labels] if labels is not None else None,
        is_pair=is_pair, spec=spec, task=task,
    )


# --------------------------------------------------------------------------
# Graph code shared by the exports


def id_features(token_ids, segment_ids, padding_mask) -> dict:
    return {"token_ids": token_ids, "segment_ids": segment_ids, "padding_mask": padding_mask}


def pool_tf(sequence_output, padding_mask, modes: Sequence[str], normalize: bool):
    """sentence-transformers pooling of `[B, L, H]` token states (TF ops that
    TFLite converts to builtins)."""
    import tensorflow as tf

    mask = tf.cast(padding_mask, sequence_output.dtype)[:, :, None]
    count = tf.maximum(tf.reduce_sum(mask, axis=1), 1e-9)
    parts = []
    for mode in modes:
        if mode == "cls":
            parts.append(sequence_output[:, 0, :])
        elif mode == "max":
            parts.append(tf.reduce_max(sequence_output * mask + (mask - 1.0) * 1e9, axis=1))
        elif mode == "mean":
            parts.append(tf.reduce_sum(sequence_output * mask, axis=1) / count)
        elif mode == "mean_sqrt_len":
            parts.append(tf.reduce_sum(sequence_output * mask, axis=1) / tf.sqrt(count))
        else:  # pragma: no cover - validated when loading
            raise ValueError(mode)
    emb = parts[0] if len(parts) == 1 else tf.concat(parts, axis=-1)
    if normalize:
        # torch.nn.functional.normalize: x / max(||x||, 1e-12)
        norm = tf.sqrt(tf.reduce_sum(tf.square(emb), axis=-1, keepdims=True))
        emb = emb / tf.maximum(norm, 1e-12)
    return emb


def compute_outputs(source: ExportSource, features: dict, string_labels: bool = True) -> dict:
    """Named outputs from id features (traced into every export).

    classification: `logits` [B, C], `probabilities` [B, C], `label_id` [B]
    int64 and `label` [B] (strings when the task has a label vocabulary,
    else equal to `label_id`); regression: `score` [B] and `logits` [B, 1];
    encoder: `embedding` [B, D].
    """
    import tensorflow as tf

    if source.kind == ENCODER:
        out = source.backbone(features, training=False)
        seq = out["sequence_output"] if isinstance(out, dict) else out
        emb = pool_tf(seq, features["padding_mask"], source.pooling, source.normalize)
        return {"embedding": tf.cast(emb, tf.float32)}
    logits = tf.cast(source.model(features, training=False), tf.float32)
    if source.kind == REGRESSION:
        return {"score": logits[:, 0], "logits": logits}
    label_id = tf.argmax(logits, axis=-1, output_type=tf.int64)
    outputs = {
        "logits": logits,
        "probabilities": tf.nn.softmax(logits, axis=-1),
        "label_id": label_id,
    }
    if source.labels is not None and string_labels:
        outputs["label"] = tf.gather(tf.constant(source.labels, dtype=tf.string), label_id)
    else:
        outputs["label"] = label_id
    return outputs


def main_output(source: ExportSource) -> str:
    """The float output compared across exports."""
    return {ENCODER: "embedding", REGRESSION: "score"}.get(source.kind, "logits")


# --------------------------------------------------------------------------
# Plain-Keras reference


def keras_tokenize(source: ExportSource, texts, text_pairs=None, batch_size: int = 64) -> dict:
    """Token features from the keras-hub preprocessor run in `tf.data` (the
    TensorFlow path the model was trained with). Returns numpy int32 arrays."""
    import tensorflow as tf

    x = list(texts) if text_pairs is None else (list(texts), list(text_pairs))
    # x= by keyword: a positional (text, text_pair) tuple is taken as (x, y).
    ds = tf.data.Dataset.from_tensor_slices(x).batch(batch_size).map(
        lambda *args: source.preprocessor(x=args[0] if len(args) == 1 else tuple(args)))
    chunks = [{k: np.asarray(v) for k, v in b.items()} for b in ds]
    if not chunks:
        return {k: np.zeros((0, source.sequence_length), np.int32) for k in ID_INPUTS}
    return {k: np.concatenate([c[k] for c in chunks]).astype(np.int32) for k in ID_INPUTS}


def pool_numpy(sequence_output: np.ndarray, padding_mask: np.ndarray, modes, normalize):
    mask = padding_mask.astype(np.float64)[:, :, None]
    seq = sequence_output.astype(np.float64)
    count = np.maximum(mask.sum(axis=1), 1e-9)
    parts = []
    for mode in modes:
        if mode == "cls":
            parts.append(seq[:, 0])
        elif mode == "max":
            parts.append(np.where(mask > 0, seq, -np.inf).max(axis=1))
        elif mode == "mean":
            parts.append((seq * mask).sum(axis=1) / count)
        elif mode == "mean_sqrt_len":
            parts.append((seq * mask).sum(axis=1) / np.sqrt(count))
    emb = np.concatenate(parts, axis=-1)
    if normalize:
        emb = emb / np.maximum(np.linalg.norm(emb, axis=-1, keepdims=True), 1e-12)
    return emb.astype(np.float32)


def keras_reference_from_ids(source: ExportSource, features: dict, batch_size: int = 64) -> dict:
    """Outputs of the Keras model for id features, post-processed in numpy."""
    n = len(features["token_ids"])
    chunks = []
    for start in range(0, n, batch_size):
        batch = {k: np.asarray(features[k][start:start + batch_size]) for k in ID_INPUTS}
        # Direct call: keras-hub tasks' predict_on_batch would run their
        # preprocessor again on the ids.
        out = source.model(batch, training=False)
        if source.kind == ENCODER:
            seq = out["sequence_output"] if isinstance(out, dict) else out
            chunks.append(pool_numpy(np.asarray(seq), batch["padding_mask"], source.pooling,
                                     source.normalize))
        else:
            chunks.append(np.asarray(out, dtype=np.float32))
    width = source.embedding_dim if source.kind == ENCODER else source.num_outputs
    values = np.concatenate(chunks) if chunks else np.zeros((0, width), np.float32)
    if source.kind == ENCODER:
        return {"embedding": values}
    if source.kind == REGRESSION:
        return {"score": values[:, 0], "logits": values}
    shifted = values - values.max(axis=-1, keepdims=True) if len(values) else values
    probs = np.exp(shifted)
    probs = probs / probs.sum(axis=-1, keepdims=True) if len(values) else probs
    label_id = values.argmax(axis=-1).astype(np.int64) if len(values) else np.zeros(0, np.int64)
    out = {"logits": values, "probabilities": probs, "label_id": label_id}
    if source.labels is not None:
        out["label"] = np.array([source.labels[i].encode("utf-8") for i in label_id], dtype=object)
    else:
        out["label"] = label_id
    return out


def keras_reference(source: ExportSource, texts, text_pairs=None, batch_size: int = 64) -> dict:
    """What the Keras model computes for raw texts (the export's reference)."""
    features = keras_tokenize(source, texts, text_pairs, batch_size)
    out = keras_reference_from_ids(source, features, batch_size)
    out["_features"] = features
    return out
