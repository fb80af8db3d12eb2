"""Self-attention relations and their KL divergence: the tensor math of MiniLM.

Everything here is pure TensorFlow on tensors; nothing imports models, data or
command-line code. Shapes use B = batch, T = sequence length, D = hidden size
(all heads concatenated), R = number of heads the relation is split into.

A relation between two sequences of vectors `a`, `b` of shape [B, T, D] is
computed per head: split D into R heads of size d = D / R and take
`softmax(a_r b_r^T / sqrt(d))` over the key axis. MiniLM (v1) uses the
attention distribution (a = queries, b = keys) and the value relation
(a = b = values) with the model's own attention heads; MiniLMv2 uses Q-Q, K-K
and V-V relations with `num_relation_heads` heads.

Padding: keys that are padding get zero probability, query rows that are
padding contribute nothing, and each example's loss is the mean over its real
query positions and heads, so appending padding never changes it. The batch
loss is the mean over examples. All of this runs in float32 whatever the
compute dtype of the inputs.
"""

import math

import tensorflow as tf

# Large finite negative used to mask keys. Finite so that 0 * logit stays 0.
_MASK_VALUE = -1e9


def split_heads(x: tf.Tensor, num_heads: int) -> tf.Tensor:
    """Reshapes [B, T, D] to [B, num_heads, T, D / num_heads] in float32."""
    x = tf.cast(x, tf.float32)
    depth = x.shape[-1]
    if depth is None or depth % num_heads:
        raise ValueError(
            f"Hidden size {depth} is not divisible by the number of relation "
            f"heads {num_heads}. Choose a head count that divides both the "
            "teacher's and the student's hidden sizes."
        )
    batch, length = tf.shape(x)[0], tf.shape(x)[1]
    x = tf.reshape(x, [batch, length, num_heads, depth // num_heads])
    return tf.transpose(x, [0, 2, 1, 3])


def relation_log_probs(
    a: tf.Tensor, b: tf.Tensor, num_heads: int, padding_mask: tf.Tensor
) -> tf.Tensor:
    """Log of the per-head relation `softmax(a b^T / sqrt(d))` over real keys.

    Args:
        a: float tensor [B, T, D], the "query side" vectors.
        b: float tensor [B, T, D], the "key side" vectors.
        num_heads: number of heads to split D into.
        padding_mask: [B, T], nonzero for real tokens.

    Returns:
        float32 tensor [B, num_heads, T, T] of log-probabilities. Padded keys
        get a log-probability around -1e9 (probability exactly zero).
    """
    a = split_heads(a, num_heads)
    b = split_heads(b, num_heads)
    scale = 1.0 / math.sqrt(a.shape[-1])
    logits = tf.matmul(a, b, transpose_b=True) * scale
    key_mask = tf.cast(padding_mask, tf.bool)[:, tf.newaxis, tf.newaxis, :]
    logits = tf.where(key_mask, logits, _MASK_VALUE)
    return tf.nn.log_softmax(logits, axis=-1)


def relation_kl(
    teacher_log_probs: tf.Tensor,
    student_log_probs: tf.Tensor,
    padding_mask: tf.Tensor,
) -> tf.Tensor:
    """KL(teacher || student) per example, averaged over heads and real rows.

    Args:
        teacher_log_probs: [B, R, T, T] from `relation_log_probs`.
        student_log_probs: [B, R, T, T] from `relation_log_probs`.
        padding_mask: [B, T], nonzero for real tokens.

    Returns:
        float32 tensor [B]: each example's mean KL over its R heads and its real
        query positions. An example with no real token gets 0.
    """
    mask = tf.cast(tf.cast(padding_mask, tf.bool), tf.float32)
    teacher_probs = tf.exp(teacher_log_probs)
    # Padded keys have teacher probability exactly 0; masking the difference
    # keeps their (large, cancelling) log-probabilities out of the sum.
    diff = (teacher_log_probs - student_log_probs) * mask[:, None, None, :]
    row_kl = tf.reduce_sum(teacher_probs * diff, axis=-1)  # [B, R, T]
    row_kl = tf.reduce_mean(row_kl, axis=1)  # mean over heads -> [B, T]
    real_rows = tf.reduce_sum(mask, axis=-1)
    return tf.math.divide_no_nan(tf.reduce_sum(row_kl * mask, axis=-1), real_rows)


def relation_loss(
    teacher_a: tf.Tensor,
    teacher_b: tf.Tensor,
    student_a: tf.Tensor,
    student_b: tf.Tensor,
    num_heads: int,
    padding_mask: tf.Tensor,
) -> tf.Tensor:
    """Per-example KL between the teacher's and the student's relation.

    `teacher_*` are [B, T, D_t] and `student_*` are [B, T, D_s]; D_t and D_s
    may differ but must both be divisible by `num_heads`. Returns [B].
    """
    teacher = relation_log_probs(teacher_a, teacher_b, num_heads, padding_mask)
    student = relation_log_probs(student_a, student_b, num_heads, padding_mask)
    return relation_kl(tf.stop_gradient(teacher), student, padding_mask)
