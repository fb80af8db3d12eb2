"""SelfAttentionRelations: values, truncation, XLA, serialization."""

import numpy as np
import pytest
import tensorflow as tf

from conftest import random_batch, tiny_bert
from minilm_tf.layers import SelfAttentionRelations, resolve_layer_index


def _reference_attention(backbone, layer_index, batch):
    """Attention probabilities as keras-hub itself computes them (full forward)."""
    x = backbone.get_layer("embeddings_dropout")(
        backbone.get_layer("embeddings_layer_norm")(
            backbone.get_layer("embeddings_add")(
                (
                    backbone.get_layer("token_embedding")(batch["token_ids"]),
                    backbone.get_layer("position_embedding")(
                        backbone.get_layer("token_embedding")(batch["token_ids"])
                    ),
                    backbone.get_layer("segment_embedding")(batch["segment_ids"]),
                )
            )
        )
    )
    for i, layer in enumerate(backbone.transformer_layers):
        if i == layer_index:
            _, scores = layer(
                x, padding_mask=batch["padding_mask"], return_attention_scores=True
            )
            return scores.numpy(), x.numpy()
        x = layer(x, padding_mask=batch["padding_mask"])


@pytest.mark.parametrize("layer_index", [0, 2, -1])
def test_attention_probs_match_keras_hub(layer_index):
    backbone = tiny_bert(num_layers=4)
    batch = random_batch()
    index = resolve_layer_index(backbone, layer_index)
    want, hidden_in = _reference_attention(backbone, index, batch)
    out = SelfAttentionRelations(backbone, layer_index, return_attention_probs=True)(batch)
    mask = batch["padding_mask"].astype(bool)
    rows = mask[:, None, :, None] & mask[:, None, None, :]  # real query, real key
    got = out["attention_probs"].numpy()
    np.testing.assert_allclose(got[np.broadcast_to(rows, got.shape)],
                               want[np.broadcast_to(rows, want.shape)], atol=1e-6)
    # Q/K/V are the layer's own projections of its input.
    attention = backbone.transformer_layers[index]._self_attention_layer
    np.testing.assert_allclose(
        out["values"].numpy(), attention.value_dense(hidden_in).numpy(), atol=1e-6
    )


def test_layers_above_do_not_run():
    backbone = tiny_bert(num_layers=4)
    calls = []
    for layer in backbone.transformer_layers:
        original = layer.call

        def counting(*args, _name=layer.name, _original=original, **kwargs):
            calls.append(_name)
            return _original(*args, **kwargs)

        layer.call = counting
    relations = SelfAttentionRelations(backbone, layer_index=1)
    # The truncated graph holds only the layers below the chosen one.
    assert [l.name for l in relations.below.layers if "transformer" in l.name] == [
        "transformer_layer_0"
    ]
    relations(random_batch())
    assert calls == ["transformer_layer_0"]
    calls.clear()
    tf.function(relations, jit_compile=True)(random_batch())  # traced once
    assert set(calls) == {"transformer_layer_0"}


def test_works_under_xla_and_matches_eager():
    backbone = tiny_bert(num_layers=3)
    relations = SelfAttentionRelations(backbone, layer_index=-2)
    batch = random_batch()
    eager = relations(batch)
    compiled = tf.function(lambda b: relations(b), jit_compile=True)(batch)
    for key in ("queries", "keys", "values"):
        np.testing.assert_allclose(compiled[key].numpy(), eager[key].numpy(), atol=1e-5)


def test_bad_layer_index():
    with pytest.raises(ValueError, match="out of range.*0..1"):
        SelfAttentionRelations(tiny_bert(num_layers=2), layer_index=2)


def test_config_round_trip():
    backbone = tiny_bert(num_layers=2)
    layer = SelfAttentionRelations(backbone, layer_index=1)
    clone = SelfAttentionRelations.from_config(layer.get_config())
    clone.backbone.set_weights(backbone.get_weights())
    batch = random_batch()
    np.testing.assert_allclose(clone(batch)["keys"].numpy(), layer(batch)["keys"].numpy(), atol=1e-6)
