"""Metrics against values computed by hand (see the comments for the sums)."""

import math

import numpy as np
import pytest

from minilm_tf.tasks import metrics


# Binary: TP=3, FN=1, FP=2, TN=4.
Y_TRUE = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
Y_PRED = [1, 1, 1, 0, 0, 0, 0, 0, 1, 1]


def test_accuracy():
    assert metrics.accuracy(Y_TRUE, Y_PRED) == pytest.approx(0.7)


def test_f1_binary():
    # 2 TP / (2 TP + FP + FN) = 6 / 9
    assert metrics.f1_binary(Y_TRUE, Y_PRED) == pytest.approx(6 / 9)
    # F1 of class 0: TP=4, FP=1, FN=2 -> 8 / 11
    assert metrics.f1_binary(Y_TRUE, Y_PRED, positive_label=0) == pytest.approx(8 / 11)
    # No positives anywhere: undefined -> 0.0
    assert metrics.f1_binary([0, 0], [0, 0]) == 0.0


def test_macro_f1():
    assert metrics.macro_f1(Y_TRUE, Y_PRED) == pytest.approx((6 / 9 + 8 / 11) / 2)


def test_mcc_binary():
    # (TP TN - FP FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (12 - 2) / sqrt(5*4*6*5)
    assert metrics.matthews_corrcoef(Y_TRUE, Y_PRED) == pytest.approx(10 / math.sqrt(600))
    # Perfect and inverted predictions.
    assert metrics.matthews_corrcoef(Y_TRUE, Y_TRUE) == pytest.approx(1.0)
    inverted = [1 - y for y in Y_TRUE]
    assert metrics.matthews_corrcoef(Y_TRUE, inverted) == pytest.approx(-1.0)
    # Constant predictions: denominator 0 -> 0.0.
    assert metrics.matthews_corrcoef(Y_TRUE, [1] * 10) == 0.0


def test_mcc_multiclass():
    # t_sum=[2,2,2], p_sum=[2,3,1], correct=5, n=6:
    # (5*6 - 12) / sqrt((36 - 14) * (36 - 12)) = 18 / sqrt(528)
    t = [0, 1, 2, 0, 1, 2]
    p = [0, 1, 1, 0, 1, 2]
    assert metrics.matthews_corrcoef(t, p) == pytest.approx(18 / math.sqrt(528))
    # String labels work too.
    ts = ["a", "b", "c", "a", "b", "c"]
    ps = ["a", "b", "b", "a", "b", "c"]
    assert metrics.matthews_corrcoef(ts, ps) == pytest.approx(18 / math.sqrt(528))


def test_pearson():
    # dx=[-2,-1,0,1,2], dy=[-2,0,1,0,1]: 6 / sqrt(10 * 6)
    x = [1, 2, 3, 4, 5]
    y = [2, 4, 5, 4, 5]
    assert metrics.pearson(x, y) == pytest.approx(6 / math.sqrt(60))
    assert metrics.pearson(x, [-v for v in x]) == pytest.approx(-1.0)
    assert math.isnan(metrics.pearson(x, [3, 3, 3, 3, 3]))


def test_rankdata_average_ties():
    np.testing.assert_allclose(
        metrics.rankdata_average([10, 20, 20, 5]), [2.0, 3.5, 3.5, 1.0]
    )
    np.testing.assert_allclose(
        metrics.rankdata_average([7, 7, 7]), [2.0, 2.0, 2.0]
    )


def test_spearman_with_ties():
    # ranks y = [1, 2.5, 4.5, 2.5, 4.5]; dy = [-2,-.5,1.5,-.5,1.5]:
    # sum dx dy = 7, sum dy^2 = 9 -> 7 / sqrt(90). Ordinal (non-averaged)
    # ranks would give 0.9 instead.
    x = [1, 2, 3, 4, 5]
    y = [2, 4, 5, 4, 5]
    assert metrics.spearman(x, y) == pytest.approx(7 / math.sqrt(90))
    # Monotone but non-linear: Spearman 1, Pearson < 1.
    z = [1, 8, 27, 64, 125]
    assert metrics.spearman(x, z) == pytest.approx(1.0)
    assert metrics.pearson(x, z) < 0.99


def test_compute_metrics_and_errors():
    out = metrics.compute_metrics(["accuracy", "f1", "mcc"], Y_TRUE, Y_PRED)
    assert out == pytest.approx(
        {"accuracy": 0.7, "f1": 6 / 9, "mcc": 10 / math.sqrt(600)}
    )
    with pytest.raises(ValueError, match="Unknown metric"):
        metrics.compute_metrics(["auc"], Y_TRUE, Y_PRED)
    with pytest.raises(ValueError, match="different lengths"):
        metrics.accuracy([1, 0], [1])
    with pytest.raises(ValueError, match="empty"):
        metrics.pearson([], [])


def test_is_better():
    assert metrics.is_better(0.5, None)
    assert metrics.is_better(0.5, float("nan"))
    assert not metrics.is_better(float("nan"), 0.1)
    assert not metrics.is_better(0.5, 0.5)
