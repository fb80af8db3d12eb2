"""Label-smoothed cross-entropy over target tokens (padding ignored)."""

from __future__ import annotations

import keras
import tensorflow as tf

from minilm_tf.tasks.generation.model import IGNORE_LABEL


@keras.saving.register_keras_serializable(package="minilm_tf")
class SmoothedTokenCrossEntropy(keras.losses.Loss):
    """Per-example mean token cross-entropy with label smoothing.

    With smoothing e the target distribution is (1 - e) on the label plus e
    spread uniformly over the vocabulary (as in s2s-ft and fairseq). Labels
    equal to `IGNORE_LABEL` (target padding) are ignored; each example's
    loss is the mean over its real target tokens, and the batch loss the mean
    over examples (Keras' `sum_over_batch_size`, which `tf.distribute`
    scales by the global batch). Computed in float32.

    Args:
        label_smoothing: e in [0, 1).
    """

    def __init__(self, label_smoothing: float = 0.0, name="smoothed_token_cross_entropy",
                 **kwargs):
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}.")
        super().__init__(name=name, **kwargs)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        labels = tf.cast(y_true, tf.int32)
        real = tf.cast(labels != IGNORE_LABEL, tf.float32)
        log_probs = tf.nn.log_softmax(tf.cast(y_pred, tf.float32), axis=-1)
        safe = tf.where(labels == IGNORE_LABEL, 0, labels)
        nll = -tf.gather(log_probs, safe, batch_dims=2)
        loss = nll
        if self.label_smoothing:
            uniform = -tf.reduce_mean(log_probs, axis=-1)
            loss = (1.0 - self.label_smoothing) * nll + self.label_smoothing * uniform
        return tf.reduce_sum(loss * real, axis=-1) / tf.maximum(tf.reduce_sum(real, -1), 1.0)

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}
