"""16-bit dropout of attention probabilities."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from minilm_tf.ops import attention


@pytest.mark.parametrize("length", [128, 127])
def test_dropout16_rate_scale_and_seeds(length):
    x = tf.ones([8, 4, 64, length])
    layer = keras.layers.Dropout(0.1, seed=3)
    y = attention.dropout16(layer, x, True).numpy()
    assert y.shape == x.shape
    dropped = 6554 / 65536  # round(0.1 * 65536) / 65536
    n = y.size
    assert abs(np.mean(y == 0) - dropped) < 5 * np.sqrt(dropped * (1 - dropped) / n)
    np.testing.assert_array_equal(np.unique(y), [0.0, np.float32(65536 / (65536 - 6554))])
    # The layer's seed generator advances; the same seed reproduces the mask.
    assert not np.array_equal(attention.dropout16(layer, x, True).numpy(), y)
    again = keras.layers.Dropout(0.1, seed=3)
    np.testing.assert_array_equal(attention.dropout16(again, x, True).numpy(), y)
    # Inference and rate 0 leave the input alone.
    assert attention.dropout16(layer, x, False) is x
    assert attention.dropout16(keras.layers.Dropout(0.0), x, True) is x


def test_dropout16_bfloat16_keeps_dtype_and_expectation():
    x = tf.cast(tf.random.stateless_normal([16, 4, 32, 32], [1, 2]), tf.bfloat16)
    y = attention.dropout16(keras.layers.Dropout(0.25, seed=1), x, True)
    assert y.dtype == tf.bfloat16
    x32, y32 = (tf.cast(t, tf.float32).numpy() for t in (x, y))
    kept = y32 != 0
    np.testing.assert_allclose(y32[kept], x32[kept] * 65536 / (65536 - 16384), rtol=1e-2)
    assert abs(kept.mean() - 0.75) < 0.01


@pytest.mark.parametrize("mask_dtype", ["bool", "int32", None])
def test_masked_softmax_matches_keras_softmax_values_and_gradients(mask_dtype):
    rng = np.random.default_rng(0)
    scores = tf.constant(rng.normal(size=(2, 3, 5, 6)).astype("float32") * 3)
    mask = rng.random((2, 1, 5, 6)) > 0.3
    mask[0, 0, 1] = False  # a fully masked row: zeros, as Keras gives
    mask = None if mask_dtype is None else tf.constant(mask.astype(mask_dtype))
    upstream = tf.constant(rng.normal(size=(2, 3, 5, 6)).astype("float32"))
    keras_softmax = keras.layers.Softmax(axis=-1)
    results = []
    for fn in (attention.masked_softmax, lambda s, m: keras_softmax(s, mask=m)):
        with tf.GradientTape() as tape:
            tape.watch(scores)
            probs = fn(scores, mask)
        results.append((probs.numpy(), tape.gradient(probs, scores, upstream).numpy()))
    (got, got_grad), (want, want_grad) = results
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(got_grad, want_grad, rtol=1e-5, atol=1e-6)
    if mask is not None:
        assert not got[0, :, 1].any()
