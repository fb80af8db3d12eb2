"""The one place minilm_tf reaches private Keras, keras-hub and TensorFlow internals.

Everything else in the package goes through the functions here, so an
upgrade that renames or removes an internal breaks in one module, and
`missing_internals()` (run by the test suite) names what is gone:

- keras-hub's `TransformerEncoder` sub-layers (`_self_attention_layer`,
  `_self_attention_layer_norm`, `_feedforward_*`): the attention projections
  MiniLM distils, the activation the teacher loader sets, the weights the
  Hugging Face exporter writes;
- Keras: a functional layer's call arguments (`_inbound_nodes`), the layer
  walk (`_flatten_layers`), `MultiHeadAttention._compute_attention` (the
  method the fast paths swap), `Model._maybe_symbolic_build` (overridden by
  the distiller), AdamW's `_apply_weight_decay`, `_get_variable_index`,
  `_use_weight_decay`, `_momentums` and `_velocities` (the fused optimizer),
  and a strategy's `_in_multi_worker_mode`;
- TensorFlow: whether a graph is being XLA-compiled, whether oneDNN is on,
  `saved_model_cli`, and the object-graph proto of TF2 checkpoints (how the
  Model Garden loader finds variables by their objects' names).

The imports here are Keras, keras-hub and TensorFlow only.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator

import keras
import tensorflow as tf

# keras-hub's TransformerEncoder: attribute names (also the first component
# of the sub-layer's variable paths in a saved `model.weights.h5`).
SELF_ATTENTION = "_self_attention_layer"
SELF_ATTENTION_NORM = "_self_attention_layer_norm"
FEEDFORWARD_INTERMEDIATE = "_feedforward_intermediate_dense"
FEEDFORWARD_OUTPUT = "_feedforward_output_dense"
FEEDFORWARD_NORM = "_feedforward_layer_norm"
_ENCODER_PARTS = (SELF_ATTENTION, SELF_ATTENTION_NORM, FEEDFORWARD_INTERMEDIATE,
                  FEEDFORWARD_OUTPUT, FEEDFORWARD_NORM)

# The MultiHeadAttention method `layers.fast_paths` replaces while a step
# traces, and the Keras major versions the fast paths are written for.
ATTENTION_SCORES = "_compute_attention"
FAST_PATHS_KERAS_MAJOR = (3,)

# Methods and attributes of Keras classes the package calls or overrides.
_KERAS_METHODS = (
    (keras.layers.MultiHeadAttention, ATTENTION_SCORES),
    (keras.layers.Layer, "_flatten_layers"),
    (keras.Model, "_maybe_symbolic_build"),
    (keras.optimizers.AdamW, "_apply_weight_decay"),
    (keras.optimizers.AdamW, "_get_variable_index"),
    (keras.optimizers.AdamW, "_use_weight_decay"),
)


def self_attention(block: keras.layers.Layer) -> keras.layers.MultiHeadAttention:
    """The `MultiHeadAttention` of a keras-hub `TransformerEncoder`."""
    return getattr(block, SELF_ATTENTION)


def self_attention_norm(block: keras.layers.Layer) -> keras.layers.Layer:
    """The LayerNorm around a `TransformerEncoder`'s attention."""
    return getattr(block, SELF_ATTENTION_NORM)


def feedforward_intermediate(block: keras.layers.Layer) -> keras.layers.Dense:
    return getattr(block, FEEDFORWARD_INTERMEDIATE)


def feedforward_output(block: keras.layers.Layer) -> keras.layers.Dense:
    return getattr(block, FEEDFORWARD_OUTPUT)


def feedforward_norm(block: keras.layers.Layer) -> keras.layers.Layer:
    return getattr(block, FEEDFORWARD_NORM)


def call_input(layer: keras.layers.Layer):
    """The first positional argument of `layer`'s first call in a functional model."""
    return layer._inbound_nodes[0].arguments.args[0]


def flatten_layers(model: keras.layers.Layer) -> Iterator[keras.layers.Layer]:
    """`model` and every layer inside it, recursively."""
    return model._flatten_layers(include_self=True, recursive=True)


def optimizer_slots(optimizer: keras.optimizers.Optimizer, variable) -> tuple:
    """Adam's (first, second) moment variables of `variable`."""
    index = optimizer._get_variable_index(variable)
    return optimizer._momentums[index], optimizer._velocities[index]


def in_multi_worker_mode(strategy: tf.distribute.Strategy) -> bool:
    return bool(getattr(strategy.extended, "_in_multi_worker_mode", lambda: False)())


def in_xla_context() -> bool:
    """Whether the current graph is being built inside an XLA-compiled function."""
    from tensorflow.python.ops import control_flow_util

    return bool(control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()))


def onednn_enabled() -> bool:
    """Whether this TensorFlow build runs its CPU kernels with oneDNN."""
    try:
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:  # a TensorFlow build without the private module
        return False
    return bool(_pywrap_util_port.IsMklEnabled())


SAVED_MODEL_CLI = "tensorflow.python.tools.saved_model_cli"


def saved_model_cli():
    """TensorFlow's `saved_model_cli` module (its `show` and `run` commands)."""
    return importlib.import_module(SAVED_MODEL_CLI)


TRACKABLE_OBJECT_GRAPH = "tensorflow.core.protobuf.trackable_object_graph_pb2"
# The tensor of an object-based (TF2) checkpoint that holds its object graph.
_OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"


def _trackable_object_graph_class():
    return importlib.import_module(TRACKABLE_OBJECT_GRAPH).TrackableObjectGraph


def checkpoint_object_graph(reader: tf.train.CheckpointReader):
    """A TF2 checkpoint's `TrackableObjectGraph` (objects, named edges, variable
    keys), or None for a name-based TF1 checkpoint."""
    if not reader.has_tensor(_OBJECT_GRAPH_KEY):
        return None
    graph = _trackable_object_graph_class()()
    graph.ParseFromString(reader.get_tensor(_OBJECT_GRAPH_KEY))
    return graph


def fast_paths_supported() -> bool:
    """Whether this Keras has what the fast paths swap; without it the steps
    run Keras' own layers."""
    major = int(keras.__version__.split(".")[0])
    return (major in FAST_PATHS_KERAS_MAJOR
            and callable(getattr(keras.layers.MultiHeadAttention, ATTENTION_SCORES, None)))


def missing_internals() -> list[str]:
    """The internals above that the installed versions lack (empty when all is well)."""
    import keras_hub

    missing = [f"{cls.__module__}.{cls.__name__}.{name}" for cls, name in _KERAS_METHODS
               if not callable(getattr(cls, name, None))]
    block = keras_hub.layers.TransformerEncoder(intermediate_dim=8, num_heads=2)
    block.build((None, 3, 4))
    missing += [f"keras_hub.layers.TransformerEncoder.{name}" for name in _ENCODER_PARTS
                if not isinstance(getattr(block, name, None), keras.layers.Layer)]
    inputs = keras.Input((3, 4))
    layer = keras.layers.Dense(2)
    layer(inputs)
    try:
        if call_input(layer) is not inputs:
            missing.append("keras.layers.Layer._inbound_nodes[0].arguments.args")
    except (AttributeError, IndexError):
        missing.append("keras.layers.Layer._inbound_nodes[0].arguments.args")
    optimizer = keras.optimizers.AdamW()
    variable = keras.Variable(tf.zeros([2]))
    optimizer.build([variable])
    try:
        optimizer_slots(optimizer, variable)
    except (AttributeError, IndexError):
        missing.append("keras.optimizers.AdamW._momentums/_velocities")
    if not callable(getattr(type(tf.distribute.get_strategy().extended),
                            "_in_multi_worker_mode", None)):
        missing.append("tf.distribute.StrategyExtended._in_multi_worker_mode")
    for name, check in (("control_flow_util.GraphOrParentsInXlaContext", in_xla_context),
                        (SAVED_MODEL_CLI, saved_model_cli),
                        (TRACKABLE_OBJECT_GRAPH, _trackable_object_graph_class)):
        try:
            check()
        except (ImportError, AttributeError):
            missing.append(name)
    return missing
