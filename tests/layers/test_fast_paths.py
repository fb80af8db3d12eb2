"""fast_paths: same values and gradients as Keras' own paths, layers restored."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import random_batch, tiny_bert
from minilm_tf.ops import activations
from minilm_tf.ops import attention
from minilm_tf.ops import normalization
from minilm_tf.layers.fast_paths import fast_paths
from minilm_tf.models.distiller import MiniLMDistiller
from minilm_tf.layers import SelfAttentionRelations


def _state(model):
    """What fast_paths may touch: instance attributes and activations."""
    return [(id(layer), "_compute_attention" in vars(layer), "call" in vars(layer),
             getattr(layer, "activation", None))
            for layer in model._flatten_layers(include_self=True, recursive=True)]


@pytest.fixture
def spies(monkeypatch):
    calls = {"attention": 0, "gelu": 0, "dropout": 0, "layer_norm": 0}
    real_attention, real_gelu = attention.compute_attention, activations._gelu_tanh_forward
    real_dropout = attention.dropout16
    real_layer_norm = normalization._forward

    def counted_layer_norm(*args, **kwargs):
        calls["layer_norm"] += 1
        return real_layer_norm(*args, **kwargs)

    def counted_dropout(*args, **kwargs):
        calls["dropout"] += 1
        return real_dropout(*args, **kwargs)

    def counted_attention(*args, **kwargs):
        calls["attention"] += 1
        return real_attention(*args, **kwargs)

    def counted_gelu(x):
        calls["gelu"] += 1
        return real_gelu(x)

    monkeypatch.setattr(attention, "compute_attention", counted_attention)
    monkeypatch.setattr(activations, "_gelu_tanh_forward", counted_gelu)
    monkeypatch.setattr(attention, "dropout16", counted_dropout)
    monkeypatch.setattr(normalization, "_forward", counted_layer_norm)
    return calls


@pytest.mark.parametrize("exact_gelu", [False, True])
def test_same_outputs_and_gradients_as_keras(spies, exact_gelu):
    backbone = tiny_bert(num_layers=2)
    if exact_gelu:  # as load_teacher sets it for `hidden_act: gelu`
        for layer in backbone.transformer_layers:
            layer._feedforward_intermediate_dense.activation = activations.gelu_exact
    batch = random_batch()
    weights = tf.random.stateless_normal([4, 12, 32], [0, 1])

    def forward_and_gradients():
        # training=False: no dropout mask, but the explicit-scores path runs
        # (the layers are configured with dropout 0.1).
        with tf.GradientTape() as tape:
            out = backbone(batch, training=False)["sequence_output"]
            loss = tf.reduce_sum(out * weights)
        return out, tape.gradient(loss, backbone.trainable_variables)

    before = _state(backbone)
    want, want_grads = forward_and_gradients()
    with fast_paths(backbone):
        assert _state(backbone) != before
        got, got_grads = forward_and_gradients()
    assert _state(backbone) == before
    assert spies["attention"] == 2
    assert spies["gelu"] == (0 if exact_gelu else 2)
    assert spies["layer_norm"] == 5  # embeddings + two per layer
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-5)
    assert sum(w is not None for w in want_grads) > 10
    for g, w in zip(got_grads, want_grads):
        if w is None:  # the pooler
            assert g is None
            continue
        g, w = (tf.convert_to_tensor(x).numpy() for x in (g, w))
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


def test_layers_restored_after_an_error_and_nesting_is_harmless():
    backbone = tiny_bert(num_layers=2)
    before = _state(backbone)
    with pytest.raises(RuntimeError):
        with fast_paths(backbone):
            with fast_paths(backbone):
                pass
            assert _state(backbone) != before  # the inner block undid nothing of the outer
            raise RuntimeError("boom")
    assert _state(backbone) == before


def test_relation_layer_is_plain_keras(spies):
    backbone = tiny_bert(num_layers=3)
    relations = SelfAttentionRelations(backbone, layer_index=-1)
    out = tf.function(lambda x: relations(x, training=True))(random_batch())
    assert tuple(out["queries"].shape[-2:]) == (4, 8)
    assert spies == {"attention": 0, "gelu": 0, "dropout": 0, "layer_norm": 0}


@pytest.mark.parametrize("fast_paths,jit_compile,used", [
    (None, False, True), (None, True, False), (True, True, True), (False, False, False)])
def test_distiller_steps_trace_with_fast_paths_by_choice(spies, fast_paths, jit_compile, used):
    teacher, student = tiny_bert(num_layers=3, seed=0), tiny_bert(num_layers=2, seed=1)
    distiller = MiniLMDistiller(teacher, student, objective="minilm", fast_paths=fast_paths)
    assert MiniLMDistiller.from_config(distiller.get_config()).fast_paths is fast_paths
    distiller.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=jit_compile)
    before = _state(distiller)
    batch = random_batch()
    distiller.fit(tf.data.Dataset.from_tensors(batch), epochs=1, verbose=0)
    assert distiller.uses_fast_paths is used
    if used:
        # Teacher layers 0-1 and student layer 0 (below the relation layers) attend;
        # each model's embeddings, then per layer below: attention probabilities,
        # attention output and feed-forward dropout (the frozen teacher's too:
        # it runs with training=False, where Dropout returns its input).
        assert spies["attention"] == 3 and spies["gelu"] == 3
        assert spies["layer_norm"] > 0 and spies["dropout"] > 0
    else:
        assert spies == {"attention": 0, "gelu": 0, "dropout": 0, "layer_norm": 0}
    assert _state(distiller) == before
    # Saved configs are untouched: the activation is still keras-hub's.
    assert "fused" not in str(keras.saving.serialize_keras_object(student))


@pytest.mark.parametrize("use", [True, False])
def test_fine_tuning_steps_trace_with_fast_paths_by_choice(spies, tmp_path, use):
    from minilm_tf.tasks.classification.model import build_task_model, compile_task_model
    from minilm_tf.training.resume import fit_resumable

    backbone = tiny_bert(num_layers=2)
    model = build_task_model(backbone, 2)
    compile_task_model(model, "classification", keras.optimizers.Adam(1e-3), jit_compile=False)
    batch = random_batch()
    labels = np.array([0, 1, 1, 0], "int32")
    before = _state(model)
    dataset = tf.data.Dataset.from_tensor_slices((batch, labels)).batch(4)
    fit_resumable(model, lambda epoch, first: (dataset, 4), epochs=1, steps_per_epoch=1,
                  directory=str(tmp_path / "checkpoints"), log=lambda _: None, fast_paths=use)
    if use:
        assert spies["attention"] >= 2 and spies["gelu"] >= 2 and spies["dropout"] > 0
    else:
        assert spies == {"attention": 0, "gelu": 0, "dropout": 0, "layer_norm": 0}
    # Afterwards the layers are Keras' own again: a plain call uses none of them.
    assert _state(model) == before
    traced = dict(spies)
    model(batch, training=False)
    assert spies == traced


def test_the_recipe_setting_is_checked():
    from configs import base
    from minilm_tf.training.distillation_config import validate_config

    config = base.get_config()
    validate_config(config)
    config.train.fast_paths = "maybe"
    with pytest.raises(ValueError, match=r"train.fast_paths must be one of \['auto', 'false', 'true'\]"):
        validate_config(config)


def test_a_keras_without_the_swapped_internals_gets_plain_keras(spies, monkeypatch):
    from minilm_tf import _compat

    monkeypatch.setattr(_compat, "fast_paths_supported", lambda: False)
    backbone = tiny_bert(num_layers=2)
    before = _state(backbone)
    batch = random_batch()
    with fast_paths(backbone):
        assert _state(backbone) == before
        backbone(batch, training=True)
    assert spies == {"attention": 0, "gelu": 0, "dropout": 0, "layer_norm": 0}
