"""`xla_function`: compile a small TensorFlow function as one XLA cluster.

For the elementwise pieces of a step that is not XLA-compiled as a whole
(oneDNN CPUs, docs/performance.md): activations, softmax, LayerNorm and the
AdamW update each become one fused pass; the matmuls around them stay on
oneDNN. Functions retrace with relaxed shapes, so read sizes with `tf.shape`.
"""

import tensorflow as tf


def xla_function(fn):
    """`fn` as a `tf.function` compiled with XLA (no autograph)."""
    return tf.function(fn, jit_compile=True, autograph=False, reduce_retracing=True)
