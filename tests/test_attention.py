"""Query-first attention path: same outputs as Keras, layers restored, 16-bit dropout."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import random_batch, tiny_bert
from minilm_tf import attention


def test_query_first_attention_matches_keras_and_restores_layers(monkeypatch):
    backbone = tiny_bert(num_layers=2)
    batch = random_batch()
    layers = attention.attention_layers(backbone, backbone)
    assert len(layers) == 2  # each layer once
    want = backbone(batch, training=False)["sequence_output"].numpy()

    calls = []
    real_dropout = attention.dropout16
    monkeypatch.setattr(attention, "dropout16", lambda *a: calls.append(1) or real_dropout(*a))
    with attention.query_first_attention(layers):
        assert all("_compute_attention" in vars(layer) for layer in layers)
        got = backbone(batch, training=False)["sequence_output"].numpy()
    assert len(calls) == 2  # the patched path ran in both layers
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert not any("_compute_attention" in vars(layer) for layer in layers)

    with pytest.raises(RuntimeError):
        with attention.query_first_attention(layers):
            raise RuntimeError("boom")
    assert not any("_compute_attention" in vars(layer) for layer in layers)


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


def test_relation_layer_runs_the_layers_below_query_first(monkeypatch):
    from minilm_tf.layers import SelfAttentionRelations

    backbone = tiny_bert(num_layers=3)
    relations = SelfAttentionRelations(backbone, layer_index=-1)
    calls = []
    real = attention._compute_attention
    monkeypatch.setattr(attention, "_compute_attention",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    out = tf.function(lambda x: relations(x, training=True))(random_batch())
    assert len(calls) == 2  # layers 0 and 1; layer 2 only projects Q, K, V
    assert tuple(out["queries"].shape[-2:]) == (4, 8)
    assert not any("_compute_attention" in vars(layer)
                   for layer in attention.attention_layers(backbone))
