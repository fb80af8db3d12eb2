"""Faster CPU code paths for a model's layers while a step is traced.

`fast_paths(model)` is a context manager for code that is being traced (a
`tf.function`, Keras' `train_step`); the training steps own it
(`MiniLMDistiller(fast_paths=...)`, `training.resume.fit_resumable(...,
fast_paths=...)`). Inside it, the model's
`MultiHeadAttention` layers use `attention.compute_attention` (query-first
scores, fused masked softmax), its `Dropout` layers `attention.dropout16`
(16-bit random numbers), its `LayerNormalization` layers
`normalization.layer_norm_call` (XLA-fused forward and gradient) and its
dense layers with a GELU activation the XLA-fused equivalent from
`activations.fused`. The traced graph keeps them; when the block exits the
layers are exactly as before, so nothing is saved with the model or changed
for other code using it. Measured effect in docs/performance.md.
"""

import contextlib
import types

import keras
from absl import logging

from minilm_tf import _compat
from minilm_tf.ops import activations
from minilm_tf.ops import attention
from minilm_tf.ops import normalization


@contextlib.contextmanager
def fast_paths(model: keras.Layer):
    """Within the block, `model`'s layers use the faster paths (see module doc);
    with a Keras they were not written for, the block changes nothing."""
    if not _compat.fast_paths_supported():
        logging.warning("minilm_tf: Keras %s lacks what the fast paths replace; the steps use "
                        "Keras' own layers.", keras.__version__)
        yield
        return
    undo = []

    def install(layer, name, value):
        # `object.__setattr__`: Keras layers track attributes set normally.
        if name in vars(layer):
            original = vars(layer)[name]
            undo.append(lambda: object.__setattr__(layer, name, original))
        else:
            undo.append(lambda: object.__delattr__(layer, name))
        object.__setattr__(layer, name, value)

    try:
        for layer in list(_compat.flatten_layers(model)):
            if (isinstance(layer, keras.layers.MultiHeadAttention)
                    and _compat.ATTENTION_SCORES not in vars(layer)):
                install(layer, _compat.ATTENTION_SCORES,
                        types.MethodType(attention.compute_attention, layer))
            if (isinstance(layer, keras.layers.Dropout)
                    and type(layer).call is keras.layers.Dropout.call
                    and "call" not in vars(layer)):
                install(layer, "call", types.MethodType(attention.dropout16, layer))
            if normalization.fusable(layer) and "call" not in vars(layer):
                install(layer, "call", types.MethodType(normalization.layer_norm_call, layer))
            fused = activations.fused(getattr(layer, "activation", None))
            if fused is not None:
                install(layer, "activation", fused)
        yield
    finally:
        for restore in reversed(undo):
            restore()

