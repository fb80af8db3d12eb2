"""fused_layer_norm against numpy; layer_norm_call equals LayerNormalization."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from minilm_tf.ops.normalization import fusable, fused_layer_norm, layer_norm_call


def _numpy_layer_norm_and_gradients(x, gamma, beta, epsilon, upstream):
    """Values and gradients (x, gamma, beta) of sum(upstream * LN(x)), float64."""
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    inv = 1.0 / np.sqrt(var + epsilon)
    xhat = (x - mean) * inv
    y = xhat * gamma + beta
    rows = tuple(range(x.ndim - 1))
    g = upstream * gamma
    d_x = inv * (g - g.mean(-1, keepdims=True) - xhat * (g * xhat).mean(-1, keepdims=True))
    return y, d_x, (upstream * xhat).sum(rows), upstream.sum(rows)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_values_and_gradients_against_numpy(dtype):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((3, 5, 16)) * 4 + 2).astype("float32")
    gamma = rng.standard_normal(16).astype("float32")
    beta = rng.standard_normal(16).astype("float32")
    upstream = rng.standard_normal((3, 5, 16)).astype("float32")
    x_in = tf.cast(x, dtype)
    x64 = tf.cast(x_in, tf.float64).numpy()  # what the function sees
    gamma_t, beta_t = tf.constant(gamma), tf.constant(beta)
    with tf.GradientTape() as tape:
        tape.watch([x_in, gamma_t, beta_t])
        y = fused_layer_norm(x_in, gamma_t, beta_t, 1e-5)
        loss = tf.reduce_sum(tf.cast(y, tf.float32) * upstream)
    grads = tape.gradient(loss, [x_in, gamma_t, beta_t])
    assert y.dtype == x_in.dtype and grads[0].dtype == x_in.dtype
    want = _numpy_layer_norm_and_gradients(x64, gamma, beta, 1e-5, upstream)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == "float32" else dict(rtol=1e-2, atol=3e-2)
    for got, expected in zip([y, *grads], want):
        np.testing.assert_allclose(tf.cast(got, tf.float64).numpy(), expected, **tol)


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_layer_norm_call_equals_the_layer(policy):
    keras.mixed_precision.set_global_policy(policy)
    try:
        layer = keras.layers.LayerNormalization(epsilon=1e-12)
        layer.build((None, 4, 8))
        layer.gamma.assign(np.linspace(0.5, 2.0, 8, dtype="float32"))
        layer.beta.assign(np.linspace(-1.0, 1.0, 8, dtype="float32"))
        assert fusable(layer)
        x = tf.cast(np.random.default_rng(1).standard_normal((2, 4, 8)) * 3, layer.compute_dtype)
        want, got = layer(x), layer_norm_call(layer, x)
        assert got.dtype == want.dtype
        np.testing.assert_allclose(tf.cast(got, tf.float32).numpy(),
                                   tf.cast(want, tf.float32).numpy(), rtol=1e-2, atol=1e-2)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_other_axes_and_layers_fall_back():
    layer = keras.layers.LayerNormalization(axis=1)
    layer.build((None, 4, 8))
    x = tf.random.stateless_normal([2, 4, 8], [0, 2])
    np.testing.assert_allclose(layer_norm_call(layer, x).numpy(), layer(x).numpy(), rtol=1e-6)
    unbuilt = keras.layers.LayerNormalization()
    assert not fusable(unbuilt)
    no_center = keras.layers.LayerNormalization(center=False)
    no_center.build((None, 8))
    assert not fusable(no_center)
    assert not fusable(keras.layers.Dense(3))


def test_gradients_after_retracing_for_new_shapes():
    # The XLA functions retrace with relaxed (unknown) sizes after a few shapes.
    gamma, beta = tf.ones([8]), tf.zeros([8])
    for i, shape in enumerate([(2, 3, 8), (4, 5, 8), (1, 7, 8), (3, 2, 8)]):
        x = tf.random.stateless_normal(shape, [i, 0])
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(fused_layer_norm(x, gamma, beta, 1e-5) * x)
        d_x = tape.gradient(loss, x)
        want = _numpy_layer_norm_and_gradients(x.numpy().astype("float64"), 1.0, 0.0, 1e-5,
                                               x.numpy().astype("float64"))[1]
        # d/dx sum(LN(x) * x) = LN'(x)^T x + LN(x)
        want = want + _numpy_layer_norm_and_gradients(x.numpy().astype("float64"), 1.0, 0.0,
                                                      1e-5, x.numpy())[0]
        np.testing.assert_allclose(d_x.numpy(), want, rtol=1e-4, atol=1e-4)
