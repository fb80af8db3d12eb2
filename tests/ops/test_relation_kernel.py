"""The native relation kernel (minilm_tf/ops/native) against numpy and the XLA
implementation, its selection, and its build."""

import logging
import os

import numpy as np
import pytest
import tensorflow as tf

from minilm_tf.ops import native
from minilm_tf.losses import relations
from relation_reference import make, np_kl_loss

pytestmark = pytest.mark.skipif(native._compiler() is None,
                                reason="no C++ compiler: the kernel cannot be built here")
op = native.relation_kl_op()


@pytest.fixture(autouse=True)
def built():
    # With a compiler, a kernel that does not build is a failure, not a skip.
    assert op is not None, "the native kernel did not build (see the logged warning)"


def np_relation_rows(a, b, rows, cols):
    """float64 softmax(a b^T / sqrt(d)) over the given rows and head columns."""
    a, b = a[np.ix_(rows, cols)].astype(np.float64), b[np.ix_(rows, cols)]
    logits = a @ b.T / np.sqrt(len(cols))
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def np_loss_and_gradients(ta, tb, sa, sb, heads, mask):
    """Per-example loss and d(sum of losses)/d(sa, sb), by the definition:
    G = w (q - p) / sqrt(d), grad_a = G sb, grad_b = G^T sa."""
    b, t, ds = sa.shape
    d_t, d_s = ta.shape[-1] // heads, ds // heads
    ga, gb = np.zeros_like(sa, np.float64), np.zeros_like(sb, np.float64)
    for i in range(b):
        real = np.flatnonzero(mask[i])
        if not len(real):
            continue
        w = 1.0 / (len(real) * heads)
        for h in range(heads):
            p = np_relation_rows(ta[i], tb[i], real, np.arange(h * d_t, (h + 1) * d_t))
            cols = np.arange(h * d_s, (h + 1) * d_s)
            q = np_relation_rows(sa[i], sb[i], real, cols)
            g = w * (q - p) / np.sqrt(d_s)
            ga[i][np.ix_(real, cols)] += g @ sb[i][np.ix_(real, cols)]
            gb[i][np.ix_(real, cols)] += g.T @ sa[i][np.ix_(real, cols)]
    return np_kl_loss_masked(ta, tb, sa, sb, heads, mask), ga, gb


def np_kl_loss_masked(ta, tb, sa, sb, heads, mask):
    """np_kl_loss for any mask (not only right padding): gather the real rows."""
    out = []
    for i in range(ta.shape[0]):
        real = np.flatnonzero(mask[i])
        if not len(real):
            out.append(0.0)
            continue
        out.append(np_kl_loss(*(x[i:i + 1, real] for x in (ta, tb, sa, sb)), heads,
                              np.ones((1, len(real))))[0])
    return np.array(out)


def run_op(ta, tb, sa, sb, heads, mask, symmetric=False):
    return op(ta, tb, sa, sb, tf.constant(mask, tf.float32), num_heads=heads,
              symmetric=symmetric)


@pytest.mark.parametrize("length,heads,teacher_dim,student_dim", [
    (9, 3, 24, 12),     # tiny, one padded vector
    (37, 4, 32, 64),    # length not a multiple of 16, 8- and 16-wide heads
    (48, 6, 18, 30),    # 3- and 5-wide heads: the scalar paths
    (130, 12, 96, 96),  # 8-wide heads, a second 128-wide block plus a tail
])
def test_kernel_matches_numpy_with_any_mask(length, heads, teacher_dim, student_dim):
    b = 4
    ta, tb = make(b, length, teacher_dim, 1, 2.0), make(b, length, teacher_dim, 2, 2.0)
    sa, sb = make(b, length, student_dim, 3, 1.5), make(b, length, student_dim, 4, 1.5)
    rng = np.random.default_rng(5)
    mask = (rng.random((b, length)) < 0.7).astype("int32")  # holes anywhere
    mask[0] = 1
    mask[1] = 0  # an example without a real token: loss 0, no gradient
    loss, ga, gb = run_op(ta, tb, sa, sb, heads, mask)
    want_loss, want_ga, want_gb = np_loss_and_gradients(ta, tb, sa, sb, heads, mask)
    np.testing.assert_allclose(loss.numpy(), want_loss, rtol=2e-5, atol=1e-7)
    np.testing.assert_allclose(ga.numpy(), want_ga, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(gb.numpy(), want_gb, rtol=1e-4, atol=1e-7)
    assert loss.numpy()[1] == 0 and not ga.numpy()[1].any() and not gb.numpy()[1].any()

    # The self-relation path: one gradient, (G + G^T) sa.
    loss, ga, gb = run_op(ta, ta, sa, sa, heads, mask, symmetric=True)
    want_loss, want_ga, want_gb = np_loss_and_gradients(ta, ta, sa, sa, heads, mask)
    np.testing.assert_allclose(loss.numpy(), want_loss, rtol=2e-5, atol=1e-7)
    np.testing.assert_allclose(ga.numpy(), want_ga + want_gb, rtol=1e-4, atol=1e-7)
    assert gb.shape == (0,)


def test_kernel_reads_bfloat16_as_its_float32_values():
    """bfloat16 inputs give exactly the float32 computation on the same values."""
    b, t, d, heads = 3, 21, 48, 6
    x = [tf.cast(make(b, t, d, s, 2.0), tf.bfloat16) for s in range(4)]
    mask = np.ones((b, t), "int32")
    mask[2, 15:] = 0
    for teacher_dtype, student_dtype in [(tf.bfloat16, tf.bfloat16), (tf.float32, tf.bfloat16),
                                         (tf.bfloat16, tf.float32)]:
        cast = [tf.cast(v, dt) for v, dt in zip(x, [teacher_dtype] * 2 + [student_dtype] * 2)]
        got = run_op(*cast, heads, mask)
        want = run_op(*(tf.cast(v, tf.float32) for v in x), heads, mask)
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g.numpy(), w.numpy())


@pytest.mark.parametrize("symmetric", [False, True])
def test_native_and_xla_losses_and_gradients_agree(symmetric):
    """`relation_loss` through GradientTape, kernel against XLA, bfloat16 and
    float32 student inputs (gradients come back in the input's dtype)."""
    b, t, d, heads = 4, 40, 64, 8
    mask = np.ones((b, t), "int32")
    mask[1, 30:] = 0
    ta = make(b, t, 96, 0)
    tb = ta if symmetric else make(b, t, 96, 1)
    for dtype in (tf.float32, tf.bfloat16):
        sa = tf.Variable(tf.cast(make(b, t, d, 2), dtype))
        sb = sa if symmetric else tf.Variable(tf.cast(make(b, t, d, 3), dtype))
        results = {}
        for implementation in ("native", "xla"):
            with tf.GradientTape() as tape:
                a = tf.identity(sa)
                bb = a if symmetric else tf.identity(sb)
                loss = relations.relation_loss(ta, tb, a, bb, heads, mask, symmetric=symmetric,
                                               implementation=implementation)
                weighted = tf.reduce_sum(loss * tf.range(1.0, b + 1.0))
            grads = tape.gradient(weighted, [sa] if symmetric else [sa, sb])
            assert all(g.dtype == dtype for g in grads)
            results[implementation] = [loss.numpy()] + [g.numpy().astype("float32") for g in grads]
        tolerance = 1e-5 if dtype == tf.float32 else 1e-2  # gradients rounded to bfloat16
        for got, want in zip(results["native"], results["xla"]):
            np.testing.assert_allclose(got, want, rtol=tolerance, atol=1e-6)


def test_auto_uses_xla_inside_xla_compiled_functions(monkeypatch):
    """A custom op cannot be XLA-compiled: under jit_compile 'auto' must pick
    the XLA function, and give the same numbers."""
    b, t, d, heads = 2, 12, 16, 4
    ta, tb, sa, sb = (make(b, t, d, s) for s in range(4))
    mask = np.ones((b, t), "int32")
    chosen = []
    real = relations._native_op
    monkeypatch.setattr(relations, "_native_op", lambda impl: chosen.append(real(impl)) or
                        chosen[-1])
    eager = relations.relation_loss(ta, tb, sa, sb, heads, mask)
    compiled = tf.function(lambda: relations.relation_loss(ta, tb, sa, sb, heads, mask),
                           jit_compile=True)()
    graph = tf.function(lambda: relations.relation_loss(ta, tb, sa, sb, heads, mask))()
    assert chosen == [op, None, op]
    np.testing.assert_allclose(compiled.numpy(), eager.numpy(), rtol=1e-5)
    np.testing.assert_allclose(graph.numpy(), eager.numpy(), rtol=1e-6)


def test_bad_implementation_and_bad_inputs(monkeypatch):
    x = make(2, 5, 8, 0)
    mask = np.ones((2, 5), "int32")
    with pytest.raises(ValueError, match="implementation must be"):
        relations.relation_loss(x, x, x, x, 2, mask, implementation="cuda")
    with pytest.raises(tf.errors.InvalidArgumentError, match="mask must be"):
        run_op(x, x, x, x, 2, np.ones((2, 4)))
    with pytest.raises(tf.errors.InvalidArgumentError, match="share batch and length"):
        run_op(x, x, make(2, 6, 8, 1), make(2, 6, 8, 1), 2, mask)
    with pytest.raises(tf.errors.InvalidArgumentError, match="divisible"):
        run_op(x, x, x, x, 3, mask)
    monkeypatch.setattr(native, "relation_kl_op", lambda: None)
    with pytest.raises(RuntimeError, match="unavailable"):
        relations.relation_loss(x, x, x, x, 2, mask, implementation="native")
    # 'auto' falls back to XLA and still computes the loss.
    np.testing.assert_allclose(relations.relation_loss(x, x, x, x, 2, mask).numpy(), 0.0,
                               atol=1e-6)


def test_build_is_cached_and_failures_fall_back(tmp_path, monkeypatch, caplog):
    prebuilt = os.environ.get(native.LIBRARY_ENV)  # set by the Bazel targets
    monkeypatch.delenv(native.LIBRARY_ENV, raising=False)
    compiler = native._compiler()
    path = native.build(compiler)
    assert path == native.library_path(compiler) and os.path.exists(path)
    mtime = os.stat(path).st_mtime_ns
    assert native.build(compiler) == path and os.stat(path).st_mtime_ns == mtime  # no rebuild
    if not prebuilt:  # (a second library of an op already loaded registers nothing)
        assert native.relation_kl_op.__wrapped__() is not None  # loading again is harmless

    # A compiler that fails: a clear warning, None, and no half-written file.
    monkeypatch.setenv("MINILM_TF_KERNEL_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", "false")
    with caplog.at_level(logging.WARNING):
        assert native.relation_kl_op.__wrapped__() is None
    assert "XLA implementation" in caplog.text
    assert os.listdir(tmp_path) == []
    monkeypatch.setenv("MINILM_TF_NATIVE_KERNELS", "0")
    assert native.relation_kl_op.__wrapped__() is None


def test_a_prebuilt_library_is_loaded_and_a_bad_one_is_an_error(tmp_path, monkeypatch):
    """$MINILM_TF_RELATION_KL_LIBRARY (the Bazel-built library) replaces the build."""
    library = os.environ.get(native.LIBRARY_ENV) or native.build(native._compiler())
    monkeypatch.setenv(native.LIBRARY_ENV, library)
    monkeypatch.setenv("CXX", "false")  # no compiling: the named library is what loads
    prebuilt = native.relation_kl_op.__wrapped__()
    x = [make(2, 9, 12, s) for s in range(4)]
    mask = np.ones((2, 9), "int32")
    mask[1, 6:] = 0
    outputs = prebuilt(*x, tf.constant(mask, tf.float32), num_heads=3, symmetric=False)
    for got, want in zip(outputs, run_op(*x, 3, mask), strict=True):
        np.testing.assert_array_equal(got.numpy(), want.numpy())

    bad = tmp_path / "relation_kl.so"
    bad.write_text("not a shared library")
    for path in (str(bad), str(tmp_path / "missing.so")):
        monkeypatch.setenv(native.LIBRARY_ENV, path)
        with pytest.raises(RuntimeError, match=f"{native.LIBRARY_ENV}=.*unset it"):
            native.relation_kl_op.__wrapped__()
    monkeypatch.setenv("MINILM_TF_NATIVE_KERNELS", "0")  # switching kernels off still wins
    assert native.relation_kl_op.__wrapped__() is None
