"""`TokenPooling`: a sentence vector per example from an encoder's token
states, the way sentence-transformers pools them (mean or max over real
tokens, or the first token), as a serialisable Keras layer."""

import keras
import tensorflow as tf

from minilm_tf.losses.representations import POOLING_MODES, pool


@keras.saving.register_keras_serializable(package="minilm_tf")
class TokenPooling(keras.layers.Layer):
    """`[B, T, D]` token states and a `[B, T]` padding mask -> `[B, D]`.

    Args:
        mode: `mean` (over real tokens), `max` (over real tokens) or `cls`
            (the first token). Padded positions never change the result.
    """

    def __init__(self, mode: str = "mean", **kwargs):
        super().__init__(**kwargs)
        if mode not in POOLING_MODES:
            raise ValueError(f"Unknown pooling mode {mode!r}; use one of {POOLING_MODES}.")
        self.mode = mode

    def call(self, sequence_output, padding_mask):
        return tf.cast(pool(sequence_output, padding_mask, self.mode), self.compute_dtype)

    def compute_output_shape(self, sequence_output_shape, padding_mask_shape):
        return (sequence_output_shape[0], sequence_output_shape[-1])

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}
