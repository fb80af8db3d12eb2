"""Hidden-state and sentence-embedding distillation terms: the tensor math.

The baselines a practitioner tries beside MiniLM: mean squared error between
the teacher's and the student's last hidden states (TinyBERT's hidden-state
loss, DistilBERT's alignment), and between their pooled sentence embeddings
(sentence-transformers' distillation recipe). Pure TensorFlow on tensors;
everything is computed in float32 whatever the inputs' dtype.

Padding, as for the relation losses: padded positions contribute nothing,
each example's hidden-state loss is its mean over real positions, and a
pooled embedding is taken over real tokens only, so appending padding never
changes a loss.
"""

import tensorflow as tf

# Sentence-transformers pooling modes this package computes.
POOLING_MODES = ("mean", "cls", "max")


def _real(padding_mask: tf.Tensor) -> tf.Tensor:
    """[B, T] mask as float32 ones for real tokens."""
    return tf.cast(tf.cast(padding_mask, tf.bool), tf.float32)


def pool(hidden: tf.Tensor, padding_mask: tf.Tensor, mode: str = "mean") -> tf.Tensor:
    """A sentence embedding per example from [B, T, D] hidden states.

    Args:
        hidden: token vectors [B, T, D].
        padding_mask: [B, T], nonzero for real tokens.
        mode: `mean` (over real tokens; an example without any gives zeros),
            `cls` (the first token) or `max` (over real tokens).

    Returns:
        float32 [B, D].
    """
    hidden = tf.cast(hidden, tf.float32)
    if mode == "cls":
        return hidden[:, 0, :]
    mask = _real(padding_mask)[:, :, tf.newaxis]
    if mode == "mean":
        count = tf.reduce_sum(mask, axis=1)
        return tf.reduce_sum(hidden * mask, axis=1) / tf.maximum(count, 1.0)
    if mode == "max":
        return tf.reduce_max(tf.where(mask > 0, hidden, -1e9), axis=1)
    raise ValueError(f"Unknown pooling mode {mode!r}; use one of {POOLING_MODES}.")


def l2_normalize(x: tf.Tensor) -> tf.Tensor:
    """Unit-length rows, as sentence-transformers' Normalize module (eps 1e-12)."""
    return tf.math.l2_normalize(tf.cast(x, tf.float32), axis=-1, epsilon=1e-24)


def hidden_mse(teacher: tf.Tensor, student: tf.Tensor, padding_mask: tf.Tensor) -> tf.Tensor:
    """Per-example mean over real positions of the mean squared difference.

    Args:
        teacher: [B, T, D] teacher hidden states.
        student: [B, T, D] student hidden states (already projected to the
            teacher's width when the widths differ).
        padding_mask: [B, T], nonzero for real tokens.

    Returns:
        float32 [B]; 0 for an example without real tokens.
    """
    diff = tf.cast(student, tf.float32) - tf.cast(teacher, tf.float32)
    per_token = tf.reduce_mean(tf.square(diff), axis=-1)
    mask = _real(padding_mask)
    return tf.reduce_sum(per_token * mask, axis=-1) / tf.maximum(tf.reduce_sum(mask, -1), 1.0)


def embedding_mse(teacher: tf.Tensor, student: tf.Tensor) -> tf.Tensor:
    """Per-example mean squared difference of two [B, D] embeddings; float32 [B]."""
    diff = tf.cast(student, tf.float32) - tf.cast(teacher, tf.float32)
    return tf.reduce_mean(tf.square(diff), axis=-1)
