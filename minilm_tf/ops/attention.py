"""Faster equivalents of Keras attention pieces on CPU, without global XLA.

Costs of Keras' own code in a bfloat16 step on 2 cores (docs/performance.md):

- `MultiHeadAttention` computes the scores as `einsum("aecd,abcd->acbe",
  key, query)`: with the key first TensorFlow computes [B, N, S, T] and then
  transposes the whole score tensor, which costs more than the matmul itself
  (batch 32 x 128, 12 heads: 14.3 ms against 5.1 ms with the query first);
- its masked `Softmax` is four separate kernels forward and more backward;
- `Dropout` draws one 32-bit random number per entry (26 ms for the
  [32, 12, 128, 128] attention probabilities).

`compute_attention` is a drop-in `_compute_attention` computing the same
scores query-first with an XLA-fused `masked_softmax`; `dropout16` a drop-in
`Dropout.call` using 16-bit random numbers (two per Philox output; drop
probability round(rate * 65536) / 65536, kept values scaled to keep the
expectation) from the layer's own seed generator. `minilm_tf.layers.fast_paths`
installs them while a step is traced.
"""

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from minilm_tf.ops.xla import xla_function

# Keras' score equation for [B, T, N, H] inputs attending over axis 1, and the
# same contraction with the query as the first operand.
_KEY_FIRST = "aecd,abcd->acbe"
_QUERY_FIRST = "abcd,aecd->acbe"


def dropout16(layer: keras.layers.Dropout, x: tf.Tensor, training=False) -> tf.Tensor:
    """`layer(x, training)` with 16-bit random numbers and the layer's seeds.

    Falls back to Keras' own code for a noise shape or an unknown last axis.
    `fast_paths` installs it as the `call` of a model's `Dropout` layers.
    """
    if not training or layer.rate <= 0.0:
        return x
    length = x.shape[-1]
    if layer.noise_shape is not None or length is None or layer.rate >= 1.0:
        return keras.layers.Dropout.call(layer, x, training=training)
    threshold = min(max(round(layer.rate * 65536), 1), 65535)
    seed = tf.cast(tf.math.floormod(layer.seed_generator.next(), tf.int32.max - 1), tf.int32)
    shape = tf.concat([tf.shape(x)[:-1], [(length + 1) // 2]], axis=0)
    bits = tf.random.stateless_uniform(shape, seed, minval=None, maxval=None, dtype=tf.uint32)
    halves = tf.bitcast(bits, tf.uint16)  # [..., (length + 1) // 2, 2]
    halves = tf.reshape(halves, tf.concat([tf.shape(x)[:-1], [-1]], axis=0))
    if length % 2:
        halves = halves[..., :length]
    keep = halves >= tf.constant(threshold, tf.uint16)
    scale = tf.cast(65536.0 / (65536 - threshold), x.dtype)
    return tf.where(keep, x * scale, tf.zeros_like(x))


@xla_function
def _masked_softmax_forward(scores, mask):
    logits = tf.where(mask, tf.cast(scores, tf.float32), -1e9)
    return tf.cast(tf.where(mask, tf.nn.softmax(logits, axis=-1), 0.0), scores.dtype)


@xla_function
def _softmax_backward(probs, upstream):
    p, dy = tf.cast(probs, tf.float32), tf.cast(upstream, tf.float32)
    return tf.cast(p * (dy - tf.reduce_sum(dy * p, axis=-1, keepdims=True)), probs.dtype)


def masked_softmax(scores: tf.Tensor, mask: tf.Tensor | None) -> tf.Tensor:
    """Keras' masked `Softmax` over the last axis, each pass one XLA cluster.

    As `keras.layers.Softmax`: masked positions (mask False or <= 0.5) get
    -1e9 before the softmax and 0 after it; computed in float32 and returned
    in the scores' dtype. `mask` broadcasts against `scores`.
    """
    if mask is None:
        mask = tf.ones([1] * len(scores.shape), tf.bool)
    elif mask.dtype != tf.bool:
        mask = mask > tf.cast(0.5, mask.dtype)

    @tf.custom_gradient
    def softmax(x):
        probs = _masked_softmax_forward(x, mask)
        return probs, lambda upstream: _softmax_backward(probs, upstream)

    return softmax(scores)


def compute_attention(
    self,
    query,
    key,
    value,
    attention_mask=None,
    training=None,
    return_attention_scores=False,
    use_causal_mask=False,
):
    """`MultiHeadAttention._compute_attention`'s explicit-scores path, query first.

    Scaling and dropout are the layer's own; the softmax is `masked_softmax`
    when the layer's is Keras' over the key axis.
    """
    fused = not (self._dropout > 0.0 or return_attention_scores or len(query.shape) != 4)
    if fused or use_causal_mask or self._dot_product_equation != _KEY_FIRST:
        # Paths this function does not reproduce go to the layer's own code.
        return type(self)._compute_attention(
            self, query, key, value, attention_mask=attention_mask, training=training,
            return_attention_scores=return_attention_scores,
            use_causal_mask=use_causal_mask)
    query = ops.multiply(query, ops.cast(self._inverse_sqrt_key_dim, query.dtype))
    scores = ops.einsum(_QUERY_FIRST, query, key)
    if tuple(np.atleast_1d(self._softmax.axis)) in ((3,), (-1,)):
        while attention_mask is not None and len(attention_mask.shape) < 4:
            attention_mask = tf.expand_dims(attention_mask, -3)  # [B, T, S] -> [B, 1, T, S]
        scores = masked_softmax(scores, attention_mask)
    else:
        scores = self._masked_softmax(scores, attention_mask)
    dropped = self._dropout_layer(scores, training=training)
    return ops.einsum(self._combine_equation, dropped, value), scores
