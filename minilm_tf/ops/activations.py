"""Feed-forward activations, computed fast on CPU in every precision.

Keras' exact GELU runs `tf.nn.gelu(approximate=False)`, i.e.
`0.5 x erfc(-x / sqrt(2))`. On CPU, TensorFlow's bfloat16 `Erfc` kernel is
slow: under `mixed_bfloat16` it took 12% of a distillation step
(docs/performance.md). `gelu_exact` computes the same function as
`0.5 x (1 + erf(x / sqrt(2)))` in float32 and casts back: 2.9x faster on
bfloat16 activations, 1.4x on float32 ones, and in bfloat16 closer to the
true value (one rounding at the end).
"""

import keras
import tensorflow as tf

from minilm_tf.ops.xla import xla_function

_SQRT_HALF = 0.7071067811865476


def gelu_exact(x: tf.Tensor) -> tf.Tensor:
    """Exact (erf) GELU computed in float32, returned in `x`'s dtype."""
    y = tf.cast(x, tf.float32)
    y = 0.5 * y * (1.0 + tf.math.erf(y * _SQRT_HALF))
    return tf.cast(y, x.dtype)


def gelu_tanh(x: tf.Tensor) -> tf.Tensor:
    """The tanh approximation of GELU (BERT's original `gelu_new`)."""
    return keras.activations.gelu(x, approximate=True)


# --------------------------------------------------------------------------- fused versions
#
# Without XLA every elementwise op of an activation and of its gradient is a
# separate TensorFlow kernel pass over [tokens, intermediate] (bfloat16 ones
# convert to float32 and back inside each kernel): the tanh GELU's forward and
# backward take 24 ms per [4096, 1536] bfloat16 call on 2 cores. Compiled as
# one XLA function each (the matmuls around them stay on oneDNN), 7 ms.

_INV_SQRT_2PI = 0.3989422804014327
_TANH_SCALE = 0.7978845608028654  # sqrt(2 / pi)
_TANH_CUBIC = 0.044715


_gelu_exact_forward = xla_function(gelu_exact)


@xla_function
def _gelu_exact_backward(x, upstream):
    y = tf.cast(x, tf.float32)
    derivative = 0.5 * (1.0 + tf.math.erf(y * _SQRT_HALF)) + y * tf.exp(-0.5 * y * y) * _INV_SQRT_2PI
    return tf.cast(tf.cast(upstream, tf.float32) * derivative, x.dtype)


@xla_function
def _gelu_tanh_forward(x):
    y = tf.cast(x, tf.float32)
    inner = _TANH_SCALE * (y + _TANH_CUBIC * y * y * y)
    return tf.cast(0.5 * y * (1.0 + tf.tanh(inner)), x.dtype)


@xla_function
def _gelu_tanh_backward(x, upstream):
    y = tf.cast(x, tf.float32)
    t = tf.tanh(_TANH_SCALE * (y + _TANH_CUBIC * y * y * y))
    derivative = 0.5 * (1.0 + t) + 0.5 * y * (1.0 - t * t) * _TANH_SCALE * (
        1.0 + 3.0 * _TANH_CUBIC * y * y)
    return tf.cast(tf.cast(upstream, tf.float32) * derivative, x.dtype)


@tf.custom_gradient
def fused_gelu_exact(x: tf.Tensor):
    """`gelu_exact` with its forward and its gradient each one XLA cluster."""
    return _gelu_exact_forward(x), lambda upstream: _gelu_exact_backward(x, upstream)


@tf.custom_gradient
def fused_gelu_tanh(x: tf.Tensor):
    """`gelu_tanh` with its forward and its gradient each one XLA cluster."""
    return _gelu_tanh_forward(x), lambda upstream: _gelu_tanh_backward(x, upstream)


def _is_keras_hub_gelu_approximate(fn) -> bool:
    return (getattr(fn, "__name__", None) == "gelu_approximate"
            and getattr(fn, "__module__", "").startswith("keras_hub."))


def fused(activation):
    """The fused equivalent of a known GELU activation function, else None.

    Knows this module's `gelu_exact` / `gelu_tanh`, Keras' default (exact)
    `gelu` and keras-hub's `gelu_approximate` (the tanh form).
    """
    if activation in (gelu_exact, keras.activations.gelu):
        return fused_gelu_exact
    if activation is gelu_tanh or _is_keras_hub_gelu_approximate(activation):
        return fused_gelu_tanh
    return None
