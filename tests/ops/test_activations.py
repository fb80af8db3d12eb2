"""GELUs (float32 exact, XLA-fused exact and tanh) against math.erf / math.tanh."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from minilm_tf.ops import activations
from minilm_tf.ops.activations import gelu_exact


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


def _reference_tanh(x):
    c = math.sqrt(2.0 / math.pi)
    return np.array([0.5 * v * (1.0 + math.tanh(c * (v + 0.044715 * v**3))) for v in x.ravel()])


def _numeric_derivative(fn, x, h=1e-5):
    return (fn(x + h) - fn(x - h)) / (2 * h)


@pytest.mark.parametrize("fused, reference", [
    (activations.fused_gelu_exact, _reference),
    (activations.fused_gelu_tanh, _reference_tanh),
])
def test_fused_gelus_match_reference_values_and_derivatives(fused, reference):
    x = np.linspace(-8.0, 8.0, 2001)
    x32 = tf.constant(x.astype("float32"))
    with tf.GradientTape() as tape:
        tape.watch(x32)
        y = fused(x32)
    upstream = np.linspace(0.5, 1.5, x.size).astype("float32")
    grad = tape.gradient(y, x32, output_gradients=tf.constant(upstream))
    np.testing.assert_allclose(y.numpy(), reference(x.astype("float32").astype("float64")),
                               rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(grad.numpy(), upstream * _numeric_derivative(reference, x),
                               rtol=1e-5, atol=1e-5)
    x16 = tf.cast(x32, tf.bfloat16)
    y16 = fused(x16)
    assert y16.dtype == tf.bfloat16
    want16 = reference(tf.cast(x16, tf.float64).numpy())
    np.testing.assert_allclose(tf.cast(y16, tf.float64).numpy(), want16, rtol=2**-8, atol=1e-6)


def test_fused_knows_the_gelus_in_use_and_nothing_else():
    import keras_hub

    assert activations.fused(activations.gelu_exact) is activations.fused_gelu_exact
    assert activations.fused(keras.activations.gelu) is activations.fused_gelu_exact
    assert activations.fused(activations.gelu_tanh) is activations.fused_gelu_tanh
    bert = keras_hub.models.BertBackbone(vocabulary_size=10, num_layers=1, num_heads=1,
                                         hidden_dim=4, intermediate_dim=8)
    keras_hub_gelu = bert.transformer_layers[0]._feedforward_intermediate_dense.activation
    assert activations.fused(keras_hub_gelu) is activations.fused_gelu_tanh
    for other in (keras.activations.relu, keras.activations.linear, None, lambda x: x):
        assert activations.fused(other) is None
