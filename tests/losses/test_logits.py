"""Task-stage distillation loss (minilm_tf/losses/logits.py) against numpy."""

import numpy as np
import pytest
import tensorflow as tf

from minilm_tf.losses.logits import LogitDistillationLoss


def _np_log_softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def _np_loss(labels, teacher, student, alpha, t, kind):
    if kind == "regression":
        hard = (student[:, 0] - labels) ** 2
        soft = ((student - teacher) ** 2).mean(axis=-1)
    else:
        hard = -_np_log_softmax(student)[np.arange(len(labels)), labels.astype(int)]
        p = np.exp(_np_log_softmax(teacher / t))
        soft = t * t * (p * (np.log(p) - _np_log_softmax(student / t))).sum(axis=-1)
    return ((1 - alpha) * hard + alpha * soft).mean()


@pytest.mark.parametrize("kind,classes", [("classification", 2), ("classification", 5),
                                          ("regression", 1)])
@pytest.mark.parametrize("alpha,t", [(0.0, 1.0), (0.5, 2.0), (1.0, 4.0), (0.3, 0.5)])
def test_matches_numpy(kind, classes, alpha, t):
    rng = np.random.default_rng(classes)
    n = 7
    labels = (rng.integers(0, classes, n) if kind == "classification"
              else rng.normal(size=n)).astype(np.float32)
    teacher = rng.normal(0, 3, (n, classes)).astype(np.float32)
    student = rng.normal(0, 3, (n, classes)).astype(np.float32)
    y_true = np.concatenate([labels[:, None], teacher], axis=1)
    got = float(LogitDistillationLoss(kind, alpha, t)(y_true, student))
    np.testing.assert_allclose(got, _np_loss(labels, teacher, student, alpha, t, kind),
                               rtol=1e-5)


def test_soft_term_vanishes_for_the_teacher_and_its_gradient_is_hintons():
    rng = np.random.default_rng(0)
    teacher = rng.normal(0, 2, (4, 3)).astype(np.float32)
    y_true = np.concatenate([np.zeros((4, 1), np.float32), teacher], axis=1)
    loss = LogitDistillationLoss("classification", alpha=1.0, temperature=3.0)
    assert float(loss(y_true, teacher)) == pytest.approx(0.0, abs=1e-6)
    # d/ds of T^2 KL(softmax(t/T) || softmax(s/T)) = T (softmax(s/T) - softmax(t/T)),
    # divided by the batch size of the mean.
    student = tf.Variable(rng.normal(0, 2, (4, 3)).astype(np.float32))
    with tf.GradientTape() as tape:
        value = loss(y_true, student)
    grad = tape.gradient(value, student).numpy()
    p_s, p_t = (np.exp(_np_log_softmax(x / 3.0)) for x in (student.numpy(), teacher))
    np.testing.assert_allclose(grad, 3.0 * (p_s - p_t) / 4, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("kwargs,match", [({"kind": "ranking"}, "kind"),
                                          ({"alpha": 1.5}, "alpha"),
                                          ({"temperature": 0.0}, "temperature")])
def test_bad_settings_say_which(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LogitDistillationLoss(**kwargs)


def test_config_round_trip():
    loss = LogitDistillationLoss("regression", alpha=0.25, temperature=3.0)
    again = LogitDistillationLoss.from_config(loss.get_config())
    assert (again.kind, again.alpha, again.temperature) == ("regression", 0.25, 3.0)
