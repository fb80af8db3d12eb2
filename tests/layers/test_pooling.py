"""TokenPooling against numpy: mean/max over real tokens, first token;
padding never changes the result; the layer serialises."""

import keras
import numpy as np
import pytest

from minilm_tf.layers import TokenPooling


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    states = rng.normal(size=(4, 7, 5)).astype("float32")
    lengths = np.array([7, 3, 1, 5])
    mask = (np.arange(7)[None, :] < lengths[:, None]).astype("int32")
    return states, mask, lengths


@pytest.mark.parametrize("mode", ["mean", "max", "cls"])
def test_matches_numpy_and_ignores_padding(mode):
    states, mask, lengths = _inputs()
    expected = np.stack([
        {"mean": s[:n].mean(0), "max": s[:n].max(0), "cls": s[0]}[mode]
        for s, n in zip(states, lengths)])
    layer = TokenPooling(mode)
    np.testing.assert_allclose(np.asarray(layer(states, mask)), expected, atol=1e-6)
    # Padded positions hold other values and more padding is appended: same vectors.
    noisy = np.where(mask[:, :, None] > 0, states, 1e3).astype("float32")
    longer = np.pad(noisy, ((0, 0), (0, 4), (0, 0)), constant_values=-1e3)
    np.testing.assert_allclose(np.asarray(layer(longer, np.pad(mask, ((0, 0), (0, 4))))),
                               expected, atol=1e-5)


def test_config_round_trip_and_bad_mode():
    layer = TokenPooling("max", name="pool")
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(clone, TokenPooling) and clone.mode == "max" and clone.name == "pool"
    with pytest.raises(ValueError, match="pooling mode"):
        TokenPooling("first")
