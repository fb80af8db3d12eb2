"""MiniLM losses against an independent numpy implementation."""

import numpy as np
import pytest
import keras
import tensorflow as tf

from minilm_tf import losses
from minilm_tf.layers import RelationLogits
from minilm_tf.ops import native
from minilm_tf.losses import relations
from relation_reference import make, make_mask, np_kl_loss


@pytest.fixture(autouse=True, params=["native", "xla"])
def implementation(request, monkeypatch):
    """Runs each test with the native CPU kernel and with the XLA function
    (what `relation_loss` falls back to without the kernel)."""
    if request.param == "native":
        if native._compiler() is None:
            pytest.skip("no C++ compiler: the native kernel cannot be built here")
        assert native.relation_kl_op() is not None, "the native kernel did not build"
    else:
        monkeypatch.setattr(native, "relation_kl_op", lambda: None)
    return request.param


@pytest.mark.parametrize(
    "heads,teacher_dim,student_dim", [(1, 8, 8), (4, 32, 16), (12, 48, 24), (6, 36, 12)]
)
def test_relation_loss_matches_numpy(heads, teacher_dim, student_dim):
    b, t = 5, 9
    ta, tb = make(b, t, teacher_dim, 1, 2.0), make(b, t, teacher_dim, 2, 2.0)
    sa, sb = make(b, t, student_dim, 3), make(b, t, student_dim, 4)
    mask = make_mask(b, t, 5)
    got = relations.relation_loss(ta, tb, sa, sb, heads, mask).numpy()
    want = np_kl_loss(ta, tb, sa, sb, heads, mask)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)


def _features(b, t, heads, head_dim, seed):
    rng = np.random.default_rng(seed)
    return {
        key: rng.normal(size=(b, t, heads, head_dim)).astype("float32")
        for key in ("queries", "keys", "values")
    }


def test_v1_objective_matches_numpy_per_component():
    b, t, heads = 4, 10, 4
    teacher, student = _features(b, t, heads, 8, 0), _features(b, t, heads, 4, 1)
    mask = make_mask(b, t, 2)
    student["padding_mask"] = teacher["padding_mask"] = mask
    flat = {k: v.reshape(b, t, -1) for k, v in teacher.items() if k != "padding_mask"}
    sflat = {k: v.reshape(b, t, -1) for k, v in student.items() if k != "padding_mask"}
    got = losses.MiniLMv1Objective(heads)(teacher, student)
    np.testing.assert_allclose(
        got["attention_loss"].numpy(),
        np_kl_loss(flat["queries"], flat["keys"], sflat["queries"], sflat["keys"], heads, mask),
        rtol=2e-5,
    )
    np.testing.assert_allclose(
        got["value_relation_loss"].numpy(),
        np_kl_loss(flat["values"], flat["values"], sflat["values"], sflat["values"], heads, mask),
        rtol=2e-5,
    )


@pytest.mark.parametrize("relation_heads", [1, 2, 8])
def test_v2_objective_matches_numpy_with_unequal_heads(relation_heads):
    b, t = 3, 7
    teacher, student = _features(b, t, 4, 8, 3), _features(b, t, 2, 8, 4)  # 32 vs 16 wide
    mask = make_mask(b, t, 5)
    student["padding_mask"] = teacher["padding_mask"] = mask
    objective = losses.MiniLMv2Objective(relation_heads)
    got = objective(teacher, student)
    for name, key in [
        ("query_relation_loss", "queries"),
        ("key_relation_loss", "keys"),
        ("value_relation_loss", "values"),
    ]:
        tk, sk = teacher[key].reshape(b, t, -1), student[key].reshape(b, t, -1)
        np.testing.assert_allclose(
            got[name].numpy(), np_kl_loss(tk, tk, sk, sk, relation_heads, mask), rtol=2e-5
        )
    total = objective.total(got).numpy()
    np.testing.assert_allclose(total, sum(got[n].numpy() for n in got), rtol=1e-6)


def test_padding_invariance():
    b, t, dim, heads = 3, 6, 16, 4
    ta, tb, sa, sb = (make(b, t, dim, s) for s in range(4))
    mask = make_mask(b, t, 7)
    base = relations.relation_loss(ta, tb, sa, sb, heads, mask).numpy()

    def pad(x, extra, seed):  # garbage in the padded positions must not matter
        noise = np.random.default_rng(seed).normal(size=(b, extra, dim)).astype("float32") * 50
        return np.concatenate([x, noise], axis=1)

    padded_mask = np.concatenate([mask, np.zeros((b, 5), "int32")], axis=1)
    padded = relations.relation_loss(
        pad(ta, 5, 1), pad(tb, 5, 2), pad(sa, 5, 3), pad(sb, 5, 4), heads, padded_mask
    ).numpy()
    np.testing.assert_allclose(padded, base, rtol=1e-5, atol=1e-7)


def test_kl_zero_for_identical_and_positive_otherwise():
    x, y, z = make(2, 5, 12, 0), make(2, 5, 12, 1), make(2, 5, 12, 2)
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], "int32")
    same = relations.relation_loss(x, y, x, y, 3, mask).numpy()
    np.testing.assert_allclose(same, 0.0, atol=1e-6)
    assert (relations.relation_loss(x, y, z, y, 3, mask).numpy() > 1e-3).all()


def test_float32_computation_from_bfloat16_inputs():
    x = tf.cast(make(2, 5, 8, 0), tf.bfloat16)
    out = relations.relation_logits(x, x, 2, np.ones((2, 5), "int32"))
    assert out.dtype == tf.float32


def test_bad_relation_heads_and_head_mismatch():
    with pytest.raises(ValueError, match="not divisible by num_relation_heads=5"):
        losses.MiniLMv2Objective(5).validate(4, 32, 2, 16)
    with pytest.raises(ValueError, match="same number of attention heads.*minilmv2"):
        losses.MiniLMv1Objective(4).validate(4, 32, 2, 16)
    with pytest.raises(ValueError, match="positive"):
        losses.MiniLMv2Objective(0)
    with pytest.raises(ValueError, match="only applies to 'minilmv2'"):
        losses.make_objective("minilm", num_heads=12, num_relation_heads=48)
    with pytest.raises(ValueError, match="Unknown loss weight"):
        losses.MiniLMv1Objective(4, weights={"query_relation_loss": 1.0})


def test_gradient_matches_naive_kl():
    """The custom-gradient KL has the gradient of the textbook KL (autodiff of
    log-softmaxes), under XLA too, and passes none to the teacher."""
    b, t, dim, heads = 3, 7, 12, 3
    ta, tb = tf.Variable(make(b, t, dim, 0)), make(b, t, dim, 1)
    sa, sb = tf.Variable(make(b, t, dim, 2)), tf.Variable(make(b, t, dim, 3))
    mask = make_mask(b, t, 4)

    def naive():
        m = tf.cast(mask, tf.float32)
        def log_p(x, y):
            logits = relations.relation_logits(x, y, heads, mask)
            return tf.nn.log_softmax(logits, axis=-1)
        lt, ls = log_p(tf.stop_gradient(ta), tb), log_p(sa, sb)
        kl = tf.reduce_sum(tf.exp(lt) * (lt - ls) * m[:, None, None, :], -1)
        return tf.reduce_sum(tf.reduce_mean(kl, 1) * m, -1) / tf.reduce_sum(m, -1)

    with tf.GradientTape(persistent=True) as tape:
        ours = tf.reduce_sum(relations.relation_loss(ta, tb, sa, sb, heads, mask))
        reference = tf.reduce_sum(naive())
    np.testing.assert_allclose(ours.numpy(), reference.numpy(), rtol=1e-5)
    for var in (sa, sb):
        np.testing.assert_allclose(
            tape.gradient(ours, var).numpy(), tape.gradient(reference, var).numpy(),
            rtol=1e-4, atol=1e-6,
        )
    assert tape.gradient(ours, ta) is None

    @tf.function(jit_compile=True)
    def compiled_gradients():
        with tf.GradientTape() as inner:
            loss = tf.reduce_sum(relations.relation_loss(ta, tb, sa, sb, heads, mask))
        return inner.gradient(loss, [sa, sb])

    for got, var in zip(compiled_gradients(), (sa, sb)):
        np.testing.assert_allclose(
            got.numpy(), tape.gradient(reference, var).numpy(), rtol=1e-4, atol=1e-6
        )


def test_chunk_plan():
    """Fewest head groups whose logits fit, then the largest dividing chunk."""
    assert relations._chunk_plan(6, 4, 8, 1024) == (1, 3)  # 4 rows fit but do not divide 6
    assert relations._chunk_plan(6, 4, 8, 2048) == (1, 6)
    assert relations._chunk_plan(6, 4, 8, 128) == (2, 1)  # two heads of 8 x 8 per row
    assert relations._chunk_plan(6, 6, 8, 200) == (2, 1)  # 3 heads (192) fit, not 6
    assert relations._chunk_plan(6, 4, 8, 10) == (4, 1)  # not even one head fits
    assert relations._chunk_plan(None, 4, 8, 128) == (2, 1)
    assert relations._chunk_plan(6, 4, None, 128) == (1, 1)
    assert relations._chunk_plan(32, 48, 128, relations._CHUNK_ENTRIES) == (4, 1)
    assert relations._chunk_plan(32, 12, 128, relations._CHUNK_ENTRIES) == (1, 1)


@pytest.mark.parametrize("entries", [10**9, 400, 128, 64, 10])
@pytest.mark.parametrize("symmetric", [False, True])
def test_chunked_loss_same_for_any_chunking_and_unknown_batch(monkeypatch, entries, symmetric):
    """Any split into head groups and chunks of rows, with a static or an
    unknown batch size, gives numpy's loss and the unchunked gradients."""
    b, t, dim, heads = 6, 8, 16, 4
    ta, tb = make(b, t, dim, 0), make(b, t, dim, 1)
    if symmetric:
        tb = ta
    sa, sb = tf.Variable(make(b, t, dim, 2)), tf.Variable(make(b, t, dim, 3))
    mask = make_mask(b, t, 4)

    def loss_and_grads(a, b_, m):
        with tf.GradientTape() as tape:
            s_a = tf.identity(sa)
            s_b = s_a if symmetric else tf.identity(sb)
            loss = relations.relation_loss(a, a if symmetric else b_, s_a, s_b, heads, m,
                                           symmetric=symmetric)
            weighted = tf.reduce_sum(loss * tf.range(1.0, 7.0))
        return loss, tape.gradient(weighted, [sa, sb])

    reference = loss_and_grads(ta, tb, mask)  # one chunk of all 6 examples
    monkeypatch.setattr(relations, "_CHUNK_ENTRIES", entries)
    spec = [tf.TensorSpec([None, t, dim], tf.float32)] * 2 + [tf.TensorSpec([None, t], tf.int32)]
    results = [
        loss_and_grads(ta, tb, mask),
        tf.function(loss_and_grads, input_signature=spec)(ta, tb, mask),
    ]
    sb_value = sa.numpy() if symmetric else sb.numpy()
    want = np_kl_loss(ta, tb, sa.numpy(), sb_value, heads, mask)
    for loss, grads in results:
        np.testing.assert_allclose(loss.numpy(), want, rtol=2e-5, atol=1e-7)
        for got, ref in zip(grads, reference[1]):
            if ref is None:
                assert got is None
            else:
                np.testing.assert_allclose(got.numpy(), ref.numpy(), rtol=1e-5, atol=1e-8)


def test_self_relation_path_matches_the_general_one():
    """relation_loss(symmetric=True) (one (G + G^T) s gradient) equals the
    general path given the same tensors as a and b."""
    b, t, dim, heads = 3, 9, 24, 6
    x = make(b, t, dim, 0)
    sv = tf.Variable(make(b, t, dim, 1))
    mask = make_mask(b, t, 2)
    with tf.GradientTape(persistent=True) as tape:
        s = tf.identity(sv)
        symmetric = relations.relation_loss(x, None, s, None, heads, mask, symmetric=True)
        general = relations.relation_loss(x, x, s, s, heads, mask)
        weighted = [tf.reduce_sum(loss * np.arange(1.0, 4.0)) for loss in (symmetric, general)]
    np.testing.assert_allclose(symmetric.numpy(), np_kl_loss(x, x, sv.numpy(), sv.numpy(), heads, mask),
                               rtol=2e-5, atol=1e-7)
    np.testing.assert_allclose(symmetric.numpy(), general.numpy(), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(tape.gradient(weighted[0], sv).numpy(),
                               tape.gradient(weighted[1], sv).numpy(), rtol=1e-5, atol=1e-8)


def test_symmetric_needs_one_tensor_per_model():
    x, y = make(2, 5, 8, 0), make(2, 5, 8, 1)
    mask = np.ones((2, 5), "int32")
    with pytest.raises(ValueError, match="pass student_b=None"):
        relations.relation_loss(x, x, x, y, 2, mask, symmetric=True)
    np.testing.assert_allclose(
        relations.relation_loss(x, x, y, y, 2, mask, symmetric=True).numpy(),
        np_kl_loss(x, x, y, y, 2, mask), rtol=2e-5, atol=1e-7)


@pytest.mark.parametrize("objective", [
    losses.MiniLMv1Objective(num_heads=4, weights={"attention_loss": 2.0}),
    losses.MiniLMv2Objective(num_relation_heads=8),
])
def test_relation_objects_save_and_load(objective):
    """RelationLogits and MiniLMDistillationLoss round-trip through Keras'
    serialization and compute what the original computes."""
    layer = RelationLogits(objective, name="relations")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored.objective) is type(objective)
    assert restored.objective.get_config() == objective.get_config()
    assert restored.name == "relations"
    loss = losses.MiniLMDistillationLoss(objective)
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    b, t, d = 2, 6, 16
    mask = np.ones((b, t), "int32")
    mask[1, 4:] = 0
    features = [{name: make(b, t, d, seed + i) for i, name in enumerate(("queries", "keys", "values"))}
                | {"padding_mask": mask} for seed in (0, 10)]
    teacher, student = (layer(f) for f in features)
    np.testing.assert_allclose(again.compute_loss(teacher, student).numpy(),
                               loss.compute_loss(teacher, student).numpy(), rtol=1e-6)
    np.testing.assert_allclose(restored(features[0])[objective.component_names[0]].numpy(),
                               teacher[objective.component_names[0]].numpy(), rtol=1e-6)
