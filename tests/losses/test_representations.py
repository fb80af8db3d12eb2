"""Hidden-state and embedding objectives against numpy, padding invariance,
projections, composite objectives and their parsing."""

import numpy as np
import pytest
import tensorflow as tf

from minilm_tf import losses
from minilm_tf.losses import representations


def _inputs(batch=3, length=7, teacher_dim=8, student_dim=8, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, length + 1, size=batch)
    lengths[0] = length
    mask = (np.arange(length)[None] < lengths[:, None]).astype("int32")
    teacher = rng.normal(size=(batch, length, teacher_dim)).astype("float32")
    student = rng.normal(size=(batch, length, student_dim)).astype("float32")
    return teacher, student, mask


def _np_pool(x, mask, mode):
    out = []
    for example, m in zip(x.astype("float64"), mask.astype(bool)):
        real = example[m]
        out.append({"mean": real.mean(0), "max": real.max(0), "cls": example[0]}[mode])
    return np.stack(out)


def _pad(x, extra):
    """Appends `extra` positions of random garbage (masked out) to [B, T, ...]."""
    rng = np.random.default_rng(99)
    pad = rng.normal(size=(x.shape[0], extra, *x.shape[2:])).astype(x.dtype) * 50
    return np.concatenate([x, pad], axis=1)


@pytest.mark.parametrize("mode", ["mean", "max", "cls"])
def test_pooling_matches_numpy_over_real_tokens(mode):
    teacher, _, mask = _inputs()
    np.testing.assert_allclose(
        representations.pool(teacher, mask, mode).numpy(), _np_pool(teacher, mask, mode),
        rtol=1e-5, atol=1e-6)
    padded = representations.pool(_pad(teacher, 5), np.pad(mask, ((0, 0), (0, 5))), mode)
    np.testing.assert_allclose(padded.numpy(), _np_pool(teacher, mask, mode), rtol=1e-5, atol=1e-6)


def test_hidden_mse_matches_numpy_and_ignores_padding():
    teacher, student, mask = _inputs()
    expected = [((s[m.astype(bool)] - t[m.astype(bool)]) ** 2).mean()
                for t, s, m in zip(teacher.astype("float64"), student, mask)]
    got = representations.hidden_mse(teacher, student, mask).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    padded_mask = np.pad(mask, ((0, 0), (0, 4)))
    got_padded = representations.hidden_mse(_pad(teacher, 4), _pad(student, 4), padded_mask)
    np.testing.assert_allclose(got_padded.numpy(), expected, rtol=1e-5)
    assert representations.hidden_mse(teacher, teacher, mask).numpy().max() == 0.0


def test_l2_normalize_and_embedding_mse():
    x = np.array([[3.0, 4.0], [0.0, 2.0]], "float32")
    np.testing.assert_allclose(representations.l2_normalize(x).numpy(), [[0.6, 0.8], [0.0, 1.0]])
    y = np.array([[1.0, 1.0], [0.0, 0.0]], "float32")
    np.testing.assert_allclose(representations.embedding_mse(x, y).numpy(), [(4 + 9) / 2, 2.0])


def _features(hidden, mask):
    return {"sequence_output": tf.constant(hidden), "padding_mask": tf.constant(mask)}


@pytest.mark.parametrize("student_dim", [8, 6])
def test_hidden_mse_objective_projects_narrower_students(student_dim):
    teacher, student, mask = _inputs(teacher_dim=8, student_dim=student_dim)
    objective = losses.HiddenStateMSE()
    objective.build(teacher_dim=8, student_dim=student_dim)
    assert (objective.projection is None) == (student_dim == 8)
    projected = student.astype("float64")
    if objective.projection is not None:
        kernel, bias = (w.numpy() for w in objective.projection.weights)
        projected = projected @ kernel + bias
    expected = [((p[m.astype(bool)] - t[m.astype(bool)]) ** 2).mean()
                for t, p, m in zip(teacher, projected, mask)]
    got = objective(_features(teacher, mask), _features(student, mask))["hidden_mse_loss"]
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-4)


@pytest.mark.parametrize("pooling,normalize,student_dim",
                         [("mean", True, 8), ("cls", False, 8), ("mean", False, 4)])
def test_embedding_mse_objective_matches_numpy(pooling, normalize, student_dim):
    teacher, student, mask = _inputs(teacher_dim=8, student_dim=student_dim, seed=3)
    objective = losses.EmbeddingMSE(pooling=pooling, normalize=normalize)
    objective.build(teacher_dim=8, student_dim=student_dim)
    projected = student.astype("float64")
    if objective.projection is not None:
        kernel, bias = (w.numpy() for w in objective.projection.weights)
        projected = projected @ kernel + bias
    t, s = _np_pool(teacher, mask, pooling), _np_pool(projected, mask, pooling)
    if normalize:
        t = t / np.linalg.norm(t, axis=-1, keepdims=True)
        s = s / np.linalg.norm(s, axis=-1, keepdims=True)
    got = objective(_features(teacher, mask), _features(student, mask))["embedding_mse_loss"]
    np.testing.assert_allclose(got.numpy(), ((t - s) ** 2).mean(-1), rtol=1e-4, atol=1e-7)
    padded_mask = np.pad(mask, ((0, 0), (0, 3)))
    padded = objective(_features(_pad(teacher, 3), padded_mask),
                       _features(_pad(student, 3), padded_mask))["embedding_mse_loss"]
    np.testing.assert_allclose(padded.numpy(), got.numpy(), rtol=1e-5, atol=1e-7)
    if student_dim == 8:
        same = objective(_features(teacher, mask), _features(teacher, mask))["embedding_mse_loss"]
        assert same.numpy().max() < 1e-10


def test_parse_objective_terms_weights_and_errors():
    assert losses.parse_objective("minilm") == [(1.0, "minilm")]
    assert losses.parse_objective("MiniLMv2 + 300*embedding-mse") == [
        (1.0, "minilmv2"), (300.0, "embedding_mse")]
    for bad, message in [("minilm+attention", "Unknown objective 'attention'"),
                         ("none+minilm", "cannot be combined"),
                         ("minilm+2*minilm", "names a term twice"),
                         ("x*minilm", "Bad weight 'x'")]:
        with pytest.raises(ValueError, match=message):
            losses.parse_objective(bad)


def test_composite_objective_is_the_weighted_sum_of_its_terms():
    objective = losses.make_objective("minilm+300*embedding_mse+0.5*hidden_mse", num_heads=2,
                                      normalize=True)
    assert isinstance(objective, losses.CompositeObjective)
    assert objective.needs_relations and objective.needs_sequence_output
    assert objective.name == "minilm+300*embedding_mse+0.5*hidden_mse"
    assert objective.weights == {"attention_loss": 1.0, "value_relation_loss": 1.0,
                                 "embedding_mse_loss": 300.0, "hidden_mse_loss": 0.5}
    components = {name: tf.constant([float(i + 1)]) for i, name in enumerate(objective.weights)}
    assert float(objective.total(components)[0]) == pytest.approx(1 + 2 + 300 * 3 + 0.5 * 4)
    scaled = losses.make_objective("2*minilmv2", num_heads=2, num_relation_heads=4)
    assert isinstance(scaled, losses.MiniLMv2Objective) and set(scaled.weights.values()) == {2.0}
    with pytest.raises(ValueError, match="both have the component 'value_relation_loss'"):
        losses.make_objective("minilm+minilmv2", num_heads=2)
    with pytest.raises(ValueError, match="no distillation"):
        losses.make_objective("none", num_heads=2)
    with pytest.raises(ValueError, match="Unknown loss weight"):
        losses.make_objective("hidden_mse", num_heads=2, weights={"attention_loss": 2.0})
