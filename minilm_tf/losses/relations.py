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

import functools
import math

import tensorflow as tf

from minilm_tf import _compat
from minilm_tf.ops import native

# Large finite negative used to mask keys. Finite so that 0 * logit stays 0.
_MASK_VALUE = -1e9


def _check_divisible(depth: int | None, num_heads: int) -> None:
    if depth is None or depth % num_heads:
        raise ValueError(
            f"Hidden size {depth} is not divisible by the number of relation "
            f"heads {num_heads}. Choose a head count that divides both the "
            "teacher's and the student's hidden sizes."
        )


def split_heads(x: tf.Tensor, num_heads: int) -> tf.Tensor:
    """Reshapes [B, T, D] to [B, num_heads, T, D / num_heads] in float32."""
    x = tf.cast(x, tf.float32)
    depth = x.shape[-1]
    _check_divisible(depth, num_heads)
    batch, length = tf.shape(x)[0], tf.shape(x)[1]
    x = tf.reshape(x, [batch, length, num_heads, depth // num_heads])
    return tf.transpose(x, [0, 2, 1, 3])


def relation_logits(
    a: tf.Tensor, b: tf.Tensor, num_heads: int, padding_mask: tf.Tensor
) -> tf.Tensor:
    """Per-head relation logits `a_r b_r^T / sqrt(d)`, padded keys at -1e9.

    Args:
        a: float tensor [B, T, D], the "query side" vectors.
        b: float tensor [B, T, D], the "key side" vectors.
        num_heads: number of heads to split D into.
        padding_mask: [B, T], nonzero for real tokens.

    Returns:
        float32 tensor [B, num_heads, T, T]. The scale is folded into `a`
        ([B, R, T, d], smaller than the logits) and the mask is one additive
        bias, so the [B, R, T, T] tensor is touched once.
    """
    a = split_heads(a, num_heads)
    b = split_heads(b, num_heads)
    a = a * (1.0 / math.sqrt(a.shape[-1]))
    key_mask = tf.cast(tf.cast(padding_mask, tf.bool), tf.float32)
    bias = ((1.0 - key_mask) * _MASK_VALUE)[:, tf.newaxis, tf.newaxis, :]
    return tf.matmul(a, b, transpose_b=True) + bias


def _softmax_parts(logits: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Shifted logits, probabilities and log-partition, one `exp` per entry."""
    shifted = logits - tf.reduce_max(logits, axis=-1, keepdims=True)
    exps = tf.exp(shifted)
    partition = tf.reduce_sum(exps, axis=-1, keepdims=True)
    return shifted, exps / partition, tf.math.log(partition)


def _kl_and_logit_gradient(
    teacher_logits: tf.Tensor, student_logits: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """KL(softmax(teacher) || softmax(student)) over the last axis, and q - p.

    With shifted logits z and log-partitions Z, log p = z - Z, so
    KL = sum p (z_t - z_s) - (Z_t - Z_s): one `exp` per entry on each side.
    q - p (q the student's softmax) is the KL's gradient wrt the student logits.
    """
    z_t, p, log_z_t = _softmax_parts(teacher_logits)
    z_s, q, log_z_s = _softmax_parts(student_logits)
    kl = tf.reduce_sum(p * (z_t - z_s), axis=-1) - tf.squeeze(log_z_t - log_z_s, -1)
    return kl, q - p


@tf.custom_gradient
def _row_kl(teacher_logits: tf.Tensor, student_logits: tf.Tensor):
    """`_kl_and_logit_gradient` as a differentiable op; the teacher gets no gradient."""
    kl, backprop = _kl_and_logit_gradient(teacher_logits, student_logits)

    def grad(upstream):
        return None, upstream[..., tf.newaxis] * backprop

    return kl, grad


def relation_kl(
    teacher_logits: tf.Tensor,
    student_logits: tf.Tensor,
    padding_mask: tf.Tensor,
) -> tf.Tensor:
    """KL(teacher || student) per example, averaged over heads and real rows.

    Args:
        teacher_logits: [B, R, T, T] relation logits (or log-probabilities,
            which are their own logits) from `relation_logits`. No gradient
            flows into them.
        student_logits: [B, R, T, T], likewise.
        padding_mask: [B, T], nonzero for real tokens.

    Returns:
        float32 tensor [B]: each example's mean KL over its R heads and its real
        query positions. An example with no real token gets 0.

    Padded keys have teacher probability exactly 0 and contribute nothing.
    """
    row_kl = tf.reduce_mean(_row_kl(teacher_logits, student_logits), axis=1)  # [B, T]
    mask = tf.cast(tf.cast(padding_mask, tf.bool), tf.float32)
    real_rows = tf.reduce_sum(mask, axis=-1)
    return tf.math.divide_no_nan(tf.reduce_sum(row_kl * mask, axis=-1), real_rows)


# Relation logits handled per chunk in `relation_loss`: 768 KB of float32
# [chunk, heads, T, T], so a chunk's softmaxes stay in a core's L2 cache
# (1 MB on the machines of docs/performance.md; 3 MB chunks were 25% slower).
_CHUNK_ENTRIES = 196_608


def _chunk_plan(
    batch: int | None, num_heads: int, length: int | None, entries: int
) -> tuple[int, int]:
    """(head groups, rows per chunk) so that a chunk holds <= `entries` logits.

    Each example's heads are split into the fewest groups (a divisor of
    `num_heads`) whose [heads / groups, T, T] logits fit; then as many
    (example, group) rows as fit and divide `batch * groups` form a chunk.
    One head per group when even one head does not fit; (1, 1) when the
    sequence length is unknown, one row when the batch size is.
    """
    if length is None:
        return 1, 1
    per_head = length * length
    groups = min([g for g in range(1, num_heads + 1)
                  if num_heads % g == 0 and num_heads // g * per_head <= entries]
                 or [num_heads])
    if batch is None:
        return groups, 1
    rows = batch * groups
    target = max(1, entries // (num_heads // groups * per_head))
    return groups, max(c for c in range(1, min(rows, target) + 1) if rows % c == 0)


def _to_groups(x: tf.Tensor, groups: int) -> tf.Tensor:
    """[B, T, D] -> [B * groups, T, D / groups], consecutive heads per row."""
    if groups == 1:
        return x
    length, depth = tf.shape(x)[1], x.shape[-1] // groups
    x = tf.reshape(x, [-1, length, groups, depth])
    return tf.reshape(tf.transpose(x, [0, 2, 1, 3]), [-1, length, depth])


def _from_groups(x: tf.Tensor, groups: int, shape: tf.Tensor) -> tf.Tensor:
    """Chunked rows of `_to_groups` back to `shape` [B, T, D]."""
    if groups > 1:
        x = tf.reshape(x, [shape[0], groups, shape[1], -1])
        x = tf.transpose(x, [0, 2, 1, 3])
    return tf.reshape(x, shape)


def _merge_heads(x: tf.Tensor) -> tf.Tensor:
    """[B, R, T, d] -> [B, T, R * d], the inverse of `split_heads`."""
    batch, heads, length, depth = tf.shape(x)[0], x.shape[1], tf.shape(x)[2], x.shape[3]
    return tf.reshape(tf.transpose(x, [0, 2, 1, 3]), [batch, length, heads * depth])


@tf.function(jit_compile=True)
def _relation_loss_and_gradients(
    teacher_a, teacher_b, student_a, student_b, mask, num_heads, chunk_entries, symmetric
):
    """Per-example relation KL [B] and its gradients wrt the student inputs.

    `symmetric` means a self-relation (b = a, as in the value relation and
    MiniLMv2's Q-Q, K-K, V-V; `*_b` are then ignored): one gradient, wrt
    `student_a`.
    Runs over chunks of at most `chunk_entries` logits (`_chunk_plan`,
    `tf.map_fn`); no [B, R, T, T] tensor is kept. For one example with
    weights w_i = mask_i / (R * real rows), the loss is
    sum_r,i w_i KL(p_ri || q_ri) and its gradient wrt the student logits is
    G = w_i (q_ri - p_ri), pushed through the scaled `a b^T`: G b and G^T a,
    or (G + G^T) a for a self-relation.
    """
    groups, chunk = _chunk_plan(teacher_a.shape[0], num_heads, teacher_a.shape[1], chunk_entries)
    heads = num_heads // groups
    scale_s = 1.0 / math.sqrt(student_a.shape[-1] // num_heads)

    def one_chunk(args):
        m = args[-1]  # [c, T]
        t_a, s_a = args[0], args[1]
        t_b, s_b = (t_a, s_a) if symmetric else args[2:4]
        kl, q_minus_p = _kl_and_logit_gradient(relation_logits(t_a, t_b, heads, m),
                                               relation_logits(s_a, s_b, heads, m))
        s_a, s_b = split_heads(s_a, heads), split_heads(s_b, heads)  # for the gradients
        weights = tf.math.divide_no_nan(m, tf.reduce_sum(m, -1, keepdims=True) * num_heads)
        weights = weights[:, tf.newaxis, :]  # [c, 1, T] over rows
        loss = tf.reduce_sum(kl * weights, axis=[1, 2])
        grad_logits = q_minus_p * (weights[..., tf.newaxis] * scale_s)
        if symmetric:
            grad_logits += tf.transpose(grad_logits, [0, 1, 3, 2])
            return loss, _merge_heads(tf.matmul(grad_logits, s_a))
        grad_a = tf.matmul(grad_logits, s_b)
        # (a^T G)^T: XLA's CPU dot is 1.5-2.4x slower reading G transposed.
        grad_b = tf.linalg.matrix_transpose(tf.matmul(s_a, grad_logits, transpose_a=True))
        return loss, _merge_heads(grad_a), _merge_heads(grad_b)

    def chunks(x):
        return tf.reshape(x, tf.concat([[-1, chunk], tf.shape(x)[1:]], axis=0))

    inputs = (teacher_a, student_a) if symmetric else (teacher_a, student_a, teacher_b, student_b)
    inputs = [_to_groups(x, groups) for x in inputs]
    mask = tf.reshape(tf.repeat(mask[:, tf.newaxis], groups, axis=1), [-1, tf.shape(mask)[1]])
    outputs = tf.map_fn(
        one_chunk,
        tuple(chunks(x) for x in (*inputs, mask)),
        fn_output_signature=(tf.float32,) * (2 if symmetric else 3),
    )
    loss = tf.reduce_sum(tf.reshape(outputs[0], [-1, groups]), axis=1)
    return (loss, *(_from_groups(g, groups, tf.shape(student_a)) for g in outputs[1:]))


def _native_op(implementation: str):
    """The native CPU op for this call site, or None for the XLA function."""
    if implementation not in ("auto", "native", "xla"):
        raise ValueError(
            f"implementation must be 'auto', 'native' or 'xla', got {implementation!r}.")
    if implementation == "xla":
        return None
    op = native.relation_kl_op()
    if implementation == "native":
        if op is None:
            raise RuntimeError("The native relation kernel is unavailable (see the logged "
                               "warning); use implementation='auto' or 'xla'.")
        return op
    # 'auto': a CPU-only process, and not inside an XLA-compiled function
    # (which cannot contain a custom op).
    in_xla = _compat.in_xla_context()
    accelerators = tf.config.list_logical_devices("GPU") + tf.config.list_logical_devices("TPU")
    return None if in_xla or accelerators else op


def relation_loss(
    teacher_a: tf.Tensor,
    teacher_b: tf.Tensor,
    student_a: tf.Tensor,
    student_b: tf.Tensor,
    num_heads: int,
    padding_mask: tf.Tensor,
    *,
    symmetric: bool = False,
    implementation: str = "auto",
) -> tf.Tensor:
    """Per-example KL between the teacher's and the student's relation.

    `teacher_*` are [B, T, D_t] and `student_*` are [B, T, D_s]; D_t and D_s
    may differ but must both be divisible by `num_heads`. Returns [B] float32
    (as `relation_kl` of the two `relation_logits`); no gradient flows to the
    teacher.

    `symmetric=True` computes a self-relation (the value relation, MiniLMv2's
    Q-Q/K-K/V-V): `teacher_b` and `student_b` must then be None or the same
    tensors as `teacher_a` and `student_a`, and one (G + G^T) gradient
    product replaces two.

    The loss and its gradients wrt the student's inputs are computed together,
    so the [B, R, T, T] relations are never stored for the backward pass:
    `implementation='native'` by the compiled CPU kernel of
    `minilm_tf.ops.native` (each example's head at a time, in cache),
    `'xla'` by an XLA-compiled function (chunks of examples and heads), and
    `'auto'` (the default) picks the kernel when it is available, the process
    has no GPU or TPU and the caller is not itself XLA-compiled
    (docs/performance.md).
    """
    for x in (teacher_a, student_a):
        _check_divisible(x.shape[-1], num_heads)
    mask = tf.cast(tf.cast(padding_mask, tf.bool), tf.float32)
    if symmetric:
        for name, a, b in (("teacher", teacher_a, teacher_b), ("student", student_a, student_b)):
            if b is not None and b is not a:
                raise ValueError(f"symmetric=True relates {name}_a to itself: pass "
                                 f"{name}_b=None (or {name}_a), or symmetric=False.")
    native_op = _native_op(implementation)

    def prepare(x):
        # The kernel reads float32 and bfloat16 itself; XLA gets float32.
        x = tf.stop_gradient(x)
        kept = (tf.float32, tf.bfloat16) if native_op is not None else (tf.float32,)
        return x if x.dtype in kept else tf.cast(x, tf.float32)

    teacher_a = prepare(teacher_a)
    teacher = [teacher_a, teacher_a if symmetric else prepare(teacher_b)]

    @tf.custom_gradient
    def loss_fn(*students):
        # The gradient is `grad` below: nothing inside needs differentiating.
        a = prepare(students[0])
        b = a if symmetric else prepare(students[1])
        compute = native_op or functools.partial(_relation_loss_and_gradients,
                                              chunk_entries=_CHUNK_ENTRIES)
        loss, *gradients = compute(teacher[0], teacher[1], a, b, mask, num_heads=num_heads,
                                   symmetric=symmetric)

        def grad(upstream):
            upstream = upstream[:, tf.newaxis, tf.newaxis]
            return tuple(tf.cast(upstream * g, x.dtype) for g, x in zip(gradients, students))

        return loss, grad

    return loss_fn(student_a) if symmetric else loss_fn(student_a, student_b)
