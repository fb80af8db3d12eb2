"""What gets exported: a fine-tuned task model or a bare encoder, loaded as
an `ExportSource` (`minilm_tf.export.exportable`).

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

The exporters and tools reach everything about a source through this
module (`from minilm_tf.export import source as src`), so it also re-exports
the graph code shared by every export (`compute_outputs`, ...:
`minilm_tf.export.outputs`) and the plain-Keras reference exports are
checked against (`keras_reference`, ...: `minilm_tf.export.reference`).
"""

from __future__ import annotations

import json
import logging
import os
from typing import Sequence

from minilm_tf.export.exportable import (
    CLASSIFICATION,
    DEFAULT_ENCODER_SEQUENCE_LENGTH,
    ENCODER,
    ID_INPUTS,
    KINDS,
    POOLING_MODES,
    REGRESSION,
    ST_POOLING_KEYS,
    ExportSource,
)
from minilm_tf.export.outputs import compute_outputs, id_features, main_output, pool_tf
from minilm_tf.export.reference import (
    keras_reference,
    keras_reference_from_ids,
    keras_tokenize,
    pool_numpy,
)
from minilm_tf.models.encoders import load_teacher
from minilm_tf.tasks.classification.model import build_preprocessor
from minilm_tf.tasks.finetuned import LABELS_FILE, MODEL_DIR, REPORT_FILE, load_finetuned

__all__ = [
    "CLASSIFICATION",
    "DEFAULT_ENCODER_SEQUENCE_LENGTH",
    "ENCODER",
    "ID_INPUTS",
    "KINDS",
    "POOLING_MODES",
    "REGRESSION",
    "ST_POOLING_KEYS",
    "ExportSource",
    "compute_outputs",
    "encoder_source",
    "id_features",
    "is_finetune_dir",
    "keras_reference",
    "keras_reference_from_ids",
    "keras_tokenize",
    "load_source",
    "main_output",
    "pool_numpy",
    "pool_tf",
    "pooling_from_metadata",
    "sentence_bert_max_length",
    "task_source",
]

logger = logging.getLogger(__name__)


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
    modes = tuple(m for m in POOLING_MODES if config.get(ST_POOLING_KEYS[m]))
    unsupported = [
        k for k, v in config.items()
        if k.startswith("pooling_mode_") and v and k not in ST_POOLING_KEYS.values()
    ]
    if unsupported:
        raise ValueError(
            f"The checkpoint's sentence-transformers pooling uses {unsupported}, which the "
            f"export does not implement; pass --pooling (one of {POOLING_MODES})."
        )
    return modes or ("mean",)


def sentence_bert_max_length(source_dir: str | None) -> int | None:
    """`max_seq_length` from a sentence-transformers `sentence_bert_config.json`
    in `source_dir` (None when there is none)."""
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
    default_length = sentence_bert_max_length(encoder.source_dir) or min(
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
