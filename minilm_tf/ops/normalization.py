"""Layer normalisation over the last axis as one XLA cluster forward and one backward.

Keras' `LayerNormalization` computes in float32 through separate TensorFlow
kernels (cast, two means, rsqrt, scale, shift, cast back), and its gradient
through more: in a bfloat16 distillation step on 2 CPU cores the LayerNorm
elementwise kernels took ~35 ms (docs/performance.md). `fused_layer_norm`
computes the same function in float32 with its forward and its gradient each
one XLA function (the matmuls around them stay on oneDNN);
`layer_norm_call` is a drop-in `LayerNormalization.call` that
`minilm_tf.layers.fast_paths` installs while a step is traced.
"""

import keras
import tensorflow as tf

from minilm_tf.ops.xla import xla_function


def _normalized(x, epsilon):
    """(x - mean) / sqrt(variance + epsilon) over the last axis in float32, and the inverse std."""
    x = tf.cast(x, tf.float32)
    centered = x - tf.reduce_mean(x, axis=-1, keepdims=True)
    inv = tf.math.rsqrt(tf.reduce_mean(tf.square(centered), axis=-1, keepdims=True) + epsilon)
    return centered * inv, inv


@xla_function
def _forward(x, gamma, beta, epsilon, dtype):
    normalized, _ = _normalized(x, epsilon)
    return tf.cast(normalized * gamma + beta, dtype)


@xla_function
def _backward(x, gamma, epsilon, upstream):
    shape, depth = tf.shape(x), tf.shape(x)[-1]  # reduce_retracing may hide static sizes
    normalized, inv = _normalized(tf.reshape(x, [-1, depth]), epsilon)
    upstream = tf.cast(tf.reshape(upstream, [-1, depth]), tf.float32)
    # Column sums as [1, rows] @ [rows, D]: faster than XLA's CPU reduction.
    ones = tf.ones([1, tf.shape(upstream)[0]], tf.float32)
    d_beta = tf.matmul(ones, upstream)[0]
    d_gamma = tf.matmul(ones, upstream * normalized)[0]
    scaled = upstream * gamma
    d_x = inv * (scaled - tf.reduce_mean(scaled, axis=-1, keepdims=True)
                 - normalized * tf.reduce_mean(scaled * normalized, axis=-1, keepdims=True))
    return tf.reshape(tf.cast(d_x, x.dtype), shape), d_gamma, d_beta


def fused_layer_norm(
    x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, epsilon: float, dtype=None
) -> tf.Tensor:
    """`gamma * (x - mean) / sqrt(var + epsilon) + beta` over the last axis.

    Computed in float32 whatever `x`'s dtype; returned as `dtype` (default
    `x`'s). `gamma` and `beta` are float32 [D]; gradients flow to all three.
    """
    dtype = tf.as_dtype(dtype or x.dtype)
    gamma = tf.cast(gamma, tf.float32)
    beta = tf.cast(beta, tf.float32)

    @tf.custom_gradient
    def norm(x, gamma, beta):
        def grad(upstream):
            return _backward(x, gamma, epsilon, upstream)

        return _forward(x, gamma, beta, epsilon, dtype), grad

    return norm(x, gamma, beta)


def fusable(layer: keras.layers.Layer) -> bool:
    """Whether `layer_norm_call` computes what `layer.call` does."""
    return (isinstance(layer, keras.layers.LayerNormalization)
            and type(layer).call is keras.layers.LayerNormalization.call
            and not layer.rms_scaling
            and getattr(layer, "gamma", None) is not None
            and getattr(layer, "beta", None) is not None)


def layer_norm_call(layer: keras.layers.LayerNormalization, inputs: tf.Tensor) -> tf.Tensor:
    """`layer(inputs)` through `fused_layer_norm`; Keras' code for other axes."""
    rank = len(inputs.shape)
    if list(layer.axis) not in ([-1], [rank - 1]):
        return keras.layers.LayerNormalization.call(layer, inputs)
    return fused_layer_norm(inputs, layer.gamma, layer.beta, float(layer.epsilon),
                            layer.compute_dtype)
