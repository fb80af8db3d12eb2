"""`ExportSource`, what every exporter takes: a fine-tuned task model or a
bare encoder with the tokenizer settings, labels, pooling and sequence
length that go with it; its kinds, id inputs and pooling modes.

`minilm_tf.export.source` builds one (`load_source`, `encoder_source`,
`task_source`); `minilm_tf.export.outputs` traces it into the exports and
`minilm_tf.export.reference` computes its plain-Keras reference.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from minilm_tf.models.students import count_params
from minilm_tf.tasks.classification.data import CLASSIFICATION, REGRESSION

ENCODER = "encoder"
KINDS = (CLASSIFICATION, REGRESSION, ENCODER)

# sentence-transformers pooling modes, in the order it concatenates them.
POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len")
# Each mode's key in a sentence-transformers `1_Pooling/config.json`.
ST_POOLING_KEYS = {
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
