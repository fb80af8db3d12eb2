"""Span-extraction (SQuAD) head for keras-hub BERT-style backbones.

``backbone -> sequence_output [B, L, H] -> Dense(2) -> start_logits,
end_logits [B, L]``. Training loss is the mean of the start and end sparse
categorical cross-entropies (original BERT ``run_squad.py``). Logits are not
masked in the model; :func:`minilm_tf.tasks.question_answering.postprocess` restricts
spans to context tokens.
"""

from __future__ import annotations

from typing import Mapping

import keras
import numpy as np


__all__ = [
    "INPUT_NAMES",
    "SpanLogits",
    "build_qa_model",
    "compile_qa_model",
    "make_qa_dataset",
    "qa_loss",
]

INPUT_NAMES = ("token_ids", "segment_ids", "padding_mask")


def input_names(model) -> tuple[str, ...]:
    """The names of `INPUT_NAMES` that a backbone or QA model takes (XLM-R-style
    backbones take no ``segment_ids``), in `INPUT_NAMES` order."""
    inputs = model.input
    names = set(inputs) if isinstance(inputs, dict) else set()
    return tuple(n for n in INPUT_NAMES if n in names) or INPUT_NAMES


@keras.saving.register_keras_serializable(package="minilm_tf")
class SpanLogits(keras.layers.Layer):
    """Dense(2) over [B, L, H] split into float32 (start_logits, end_logits) [B, L]."""

    def __init__(self, initializer_range: float = 0.02, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.initializer_range = initializer_range
        self.dense = keras.layers.Dense(
            2,
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=initializer_range),
            dtype=self.dtype_policy,
            name="dense",
        )

    def build(self, input_shape):
        self.dense.build(input_shape)

    def call(self, sequence_output):
        logits = self.dense(keras.ops.cast(sequence_output, self.compute_dtype))
        return logits[..., 0], logits[..., 1]

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]), tuple(input_shape[:-1])

    def get_config(self):
        return {**super().get_config(), "initializer_range": self.initializer_range}


def build_qa_model(
    backbone: keras.Model,
    dropout: float = 0.0,
    initializer_range: float = 0.02,
    name: str = "squad_qa",
) -> keras.Model:
    """Functional QA model over a keras-hub backbone.

    Args:
      backbone: a model taking ``{"token_ids", "segment_ids",
        "padding_mask"}`` or ``{"token_ids", "padding_mask"}`` (int32,
        [B, L]) and returning a dict with
        ``"sequence_output"`` (e.g. ``keras_hub.models.BertBackbone``), or a
        plain [B, L, H] tensor.
      dropout: dropout on the sequence output before the span head.

    Returns:
      A ``keras.Model`` with the same input dict and outputs
      ``{"start_logits": [B, L], "end_logits": [B, L]}`` (float32).
    """
    inputs = {n: keras.Input(shape=(None,), dtype="int32", name=n)
              for n in input_names(backbone)}
    outputs = backbone(inputs)
    sequence_output = outputs["sequence_output"] if isinstance(outputs, dict) else outputs
    if dropout:
        sequence_output = keras.layers.Dropout(dropout, name="qa_dropout")(sequence_output)
    start_logits, end_logits = SpanLogits(
        initializer_range=initializer_range, name="qa_outputs"
    )(sequence_output)
    return keras.Model(
        inputs=inputs,
        outputs={"start_logits": start_logits, "end_logits": end_logits},
        name=name,
    )


def qa_loss(start_positions, end_positions, start_logits, end_logits):
    """Mean of start and end sparse categorical cross-entropy (from logits)."""
    ce = keras.losses.sparse_categorical_crossentropy
    start = keras.ops.mean(ce(start_positions, start_logits, from_logits=True))
    end = keras.ops.mean(ce(end_positions, end_logits, from_logits=True))
    return (start + end) / 2.0


def compile_qa_model(model: keras.Model, optimizer="adam", **kwargs) -> keras.Model:
    """Compiles with loss = (CE(start) + CE(end)) / 2 over the output dict.

    Labels are ``{"start_logits": start_positions, "end_logits":
    end_positions}`` (see :func:`make_qa_dataset`).
    """
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(
        optimizer=optimizer,
        loss={"start_logits": ce, "end_logits": ce},
        loss_weights={"start_logits": 0.5, "end_logits": 0.5},
        **kwargs,
    )
    return model


def make_qa_dataset(
    features: Mapping[str, np.ndarray],
    batch_size: int,
    training: bool = False,
    shuffle_buffer: int = 10_000,
    seed: int | None = None,
    drop_remainder: bool | None = None,
    names=INPUT_NAMES,
):
    """``tf.data.Dataset`` of ``(inputs, labels)`` from ``prepare_squad`` features.

    ``inputs`` is the int32 dict of the model's input ``names`` (see
    :func:`input_names`); ``labels`` is
    ``{"start_logits": start_positions, "end_logits": end_positions}``.
    Training datasets are shuffled and drop the last partial batch by default.
    """
    import tensorflow as tf

    x = {n: np.asarray(features[n], np.int32) for n in names}
    y = {
        "start_logits": np.asarray(features["start_positions"], np.int32),
        "end_logits": np.asarray(features["end_positions"], np.int32),
    }
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if training:
        ds = ds.shuffle(min(shuffle_buffer, max(1, len(y["start_logits"]))), seed=seed)
    if drop_remainder is None:
        drop_remainder = training
    return ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)
