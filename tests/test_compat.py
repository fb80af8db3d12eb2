"""The private Keras / keras-hub / TensorFlow internals the package relies on exist."""

import keras
import keras_hub
import numpy as np
import tensorflow as tf

from minilm_tf import _compat


def test_no_internal_the_package_relies_on_is_missing():
    assert _compat.missing_internals() == []


def test_accessors_reach_the_encoder_parts():
    block = keras_hub.layers.TransformerEncoder(intermediate_dim=8, num_heads=2)
    inputs = keras.Input((5, 4))
    block(inputs)
    assert isinstance(_compat.self_attention(block), keras.layers.MultiHeadAttention)
    assert _compat.self_attention(block).num_heads == 2
    assert _compat.feedforward_intermediate(block).units == 8
    assert _compat.feedforward_output(block).units == 4
    assert isinstance(_compat.self_attention_norm(block), keras.layers.LayerNormalization)
    assert isinstance(_compat.feedforward_norm(block), keras.layers.LayerNormalization)
    assert _compat.call_input(block) is inputs
    model = keras.Model(inputs, block(inputs))
    assert block in list(_compat.flatten_layers(model))
    assert _compat.self_attention(block) in list(_compat.flatten_layers(model))


def test_optimizer_slots_are_adams_moments():
    variable = keras.Variable(np.array([1.0, -2.0], "float32"))
    optimizer = keras.optimizers.AdamW(learning_rate=0.1, beta_1=0.5, beta_2=0.25, weight_decay=0.0)
    gradient = np.array([0.5, 2.0], "float32")
    optimizer.apply([gradient], [variable])
    first, second = _compat.optimizer_slots(optimizer, variable)
    np.testing.assert_allclose(first.numpy(), 0.5 * gradient, rtol=1e-6)
    np.testing.assert_allclose(second.numpy(), 0.75 * gradient ** 2, rtol=1e-6)


def test_xla_context_is_seen_only_inside_jit_compiled_functions():
    seen = {}
    tf.function(lambda: seen.setdefault("xla", _compat.in_xla_context()), jit_compile=True)()
    tf.function(lambda: seen.setdefault("graph", _compat.in_xla_context()))()
    assert seen == {"xla": True, "graph": False}
    assert not _compat.in_xla_context()
    assert not _compat.in_multi_worker_mode(tf.distribute.get_strategy())


def test_checkpoint_object_graph_names_objects_and_variables(tmp_path):
    module = tf.Module()
    module.inner = tf.Module()
    module.inner.weight = tf.Variable([1.0, 2.0])
    path = tf.train.Checkpoint(encoder=module).save(str(tmp_path / "ckpt"))
    graph = _compat.checkpoint_object_graph(tf.train.load_checkpoint(path))
    nodes = graph.nodes
    encoder = next(c.node_id for c in nodes[0].children if c.local_name == "encoder")
    inner = next(c.node_id for c in nodes[encoder].children if c.local_name == "inner")
    weight = next(c.node_id for c in nodes[inner].children if c.local_name == "weight")
    assert [a.checkpoint_key for a in nodes[weight].attributes] == [
        "encoder/inner/weight/.ATTRIBUTES/VARIABLE_VALUE"]


def test_fast_paths_are_gated_on_the_keras_version(monkeypatch):
    assert _compat.fast_paths_supported()  # the pinned Keras 3
    monkeypatch.setattr(keras, "__version__", "4.0.0")
    assert not _compat.fast_paths_supported()
