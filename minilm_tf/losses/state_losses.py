"""Objectives on hidden states: last-layer hidden-state MSE and sentence-embedding MSE.

The baselines a practitioner tries beside MiniLM (TinyBERT's hidden-state
loss, sentence-transformers' embedding distillation); the tensor math is in
`minilm_tf.losses.representations`.
"""

from typing import Mapping

import keras
import tensorflow as tf

from minilm_tf.losses import representations
from minilm_tf.losses.objective import Features, Objective, component_weights


class _Projected(Objective):
    """An objective on the models' hidden states, with a learned projection
    (a dense layer, student width -> teacher width) when the widths differ."""

    needs_sequence_output = True

    def __init__(self, weight_names, weights):
        self.weights = component_weights(weight_names, weights, self.name)
        self.projection = None

    @property
    def layers(self) -> list:
        return [self.projection] if self.projection is not None else []

    def build(self, teacher_dim: int, student_dim: int) -> None:
        if teacher_dim != student_dim and self.projection is None:
            self.projection = keras.layers.Dense(teacher_dim, name=f"{self.name}_projection")
            self.projection.build((None, student_dim))

    def _project(self, x: tf.Tensor) -> tf.Tensor:
        return x if self.projection is None else self.projection(x)


class HiddenStateMSE(_Projected):
    """Mean squared error between the teacher's and the student's last hidden
    states, per real token (TinyBERT's hidden-state loss on the last layer).

    The student's states go through a learned projection to the teacher's
    width when the widths differ. Component: `hidden_mse_loss`.
    """

    name = "hidden_mse"

    def __init__(self, weights: Mapping[str, float] | None = None):
        super().__init__(("hidden_mse_loss",), weights)

    def __call__(self, teacher: Features, student: Features) -> dict[str, tf.Tensor]:
        s = self._project(student["sequence_output"])
        loss = representations.hidden_mse(teacher["sequence_output"], s, student["padding_mask"])
        return {"hidden_mse_loss": loss}


class EmbeddingMSE(_Projected):
    """Mean squared error between the teacher's and the student's sentence
    embeddings (sentence-transformers' distillation recipe).

    Both embeddings are pooled over real tokens with the teacher's pooling
    (`mean`, `cls` or `max`) and L2-normalised when the teacher normalises
    (its sentence-transformers `Normalize` module); the student's hidden
    states are projected to the teacher's width first when the widths
    differ. Component: `embedding_mse_loss`. For unit-length embeddings the
    loss is (2 - 2 cos) / D, so it is small: weight it up when it is one
    term of a sum (e.g. `minilm+300*embedding_mse`).

    Args:
        pooling: pooling mode; default `mean`.
        normalize: L2-normalise both embeddings; default False.
        weights: optional weight for `embedding_mse_loss`.
    """

    name = "embedding_mse"

    def __init__(
        self,
        pooling: str = "mean",
        normalize: bool = False,
        weights: Mapping[str, float] | None = None,
    ):
        if pooling not in representations.POOLING_MODES:
            raise ValueError(
                f"Unknown pooling {pooling!r}; use one of {representations.POOLING_MODES}."
            )
        super().__init__(("embedding_mse_loss",), weights)
        self.pooling = pooling
        self.normalize = bool(normalize)

    def embed(self, hidden: tf.Tensor, padding_mask: tf.Tensor) -> tf.Tensor:
        """Pooled (and normalised, when configured) [B, D] float32 embeddings."""
        pooled = representations.pool(hidden, padding_mask, self.pooling)
        return representations.l2_normalize(pooled) if self.normalize else pooled

    def __call__(self, teacher: Features, student: Features) -> dict[str, tf.Tensor]:
        mask = student["padding_mask"]
        t = self.embed(teacher["sequence_output"], mask)
        s = self.embed(self._project(student["sequence_output"]), mask)
        return {"embedding_mse_loss": representations.embedding_mse(t, s)}
