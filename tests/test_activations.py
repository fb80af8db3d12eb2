"""The float32 exact GELU against math.erf."""

import math

import keras
import numpy as np
import tensorflow as tf

from minilm_tf.activations import gelu_exact


def _reference(x):
    return np.array([0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0))) for v in x.ravel()])


def test_gelu_exact_matches_erf_in_float32_and_bfloat16():
    x = np.linspace(-8.0, 8.0, 2001).astype("float32")
    want = _reference(x.astype("float64"))
    got = gelu_exact(tf.constant(x))
    assert got.dtype == tf.float32
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-6, atol=1e-6)

    x16 = tf.cast(x, tf.bfloat16)
    want16 = _reference(tf.cast(x16, tf.float64).numpy())
    got16 = gelu_exact(x16)
    assert got16.dtype == tf.bfloat16
    # One rounding to bfloat16 (8 bits of mantissa) at the end.
    np.testing.assert_allclose(tf.cast(got16, tf.float64).numpy(), want16, rtol=2**-8, atol=1e-6)
    keras_error = np.abs(tf.cast(keras.activations.gelu(x16, approximate=False), tf.float64) - want16)
    assert np.abs(tf.cast(got16, tf.float64).numpy() - want16).max() <= keras_error.max()
