"""Evaluation metrics for fine-tuning tasks, in plain numpy.

No sklearn or scipy: every metric is a few lines of numpy so the package has
no extra dependency and the definitions are easy to audit.

Conventions (matching sklearn / scipy where those define one):
  * `matthews_corrcoef` and `f1_binary` return 0.0 when the statistic is
    undefined (a zero denominator), like sklearn's defaults.
  * `pearson` and `spearman` return NaN when either input is constant, like
    scipy. `compute_metrics` passes NaN through; `is_better` treats NaN as
    worse than any number so early stopping never selects it.
  * `spearman` ranks with ties given the average of the ranks they span
    (scipy.stats.rankdata(method="average")).
"""

import math
from typing import Dict, Iterable, Sequence

import numpy as np

__all__ = [
    "accuracy",
    "f1_binary",
    "macro_f1",
    "matthews_corrcoef",
    "pearson",
    "spearman",
    "rankdata_average",
    "METRIC_FUNCTIONS",
    "REGRESSION_METRICS",
    "compute_metrics",
    "is_better",
]


def _as_1d(x, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 1:
        arr = arr.reshape(-1)
    return arr


def _check_same_length(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"Metric inputs have different lengths: {a.shape[0]} vs {b.shape[0]}."
        )
    if a.shape[0] == 0:
        raise ValueError("Metric inputs are empty.")


def accuracy(y_true: Sequence, y_pred: Sequence) -> float:
    """Fraction of positions where `y_true == y_pred`."""
    t, p = _as_1d(y_true, "y_true"), _as_1d(y_pred, "y_pred")
    _check_same_length(t, p)
    return float(np.mean(t == p))


def f1_binary(y_true: Sequence, y_pred: Sequence, positive_label=1) -> float:
    """F1 of the positive class: 2 TP / (2 TP + FP + FN); 0.0 when undefined."""
    t, p = _as_1d(y_true, "y_true"), _as_1d(y_pred, "y_pred")
    _check_same_length(t, p)
    tp = float(np.sum((t == positive_label) & (p == positive_label)))
    fp = float(np.sum((t != positive_label) & (p == positive_label)))
    fn = float(np.sum((t == positive_label) & (p != positive_label)))
    denom = 2.0 * tp + fp + fn
    return 0.0 if denom == 0 else 2.0 * tp / denom


def macro_f1(y_true: Sequence, y_pred: Sequence, labels: Iterable = None) -> float:
    """Unweighted mean of the per-class F1 over `labels` (default: classes in
    `y_true` or `y_pred`)."""
    t, p = _as_1d(y_true, "y_true"), _as_1d(y_pred, "y_pred")
    _check_same_length(t, p)
    if labels is None:
        labels = np.union1d(np.unique(t), np.unique(p))
    scores = [f1_binary(t, p, positive_label=c) for c in labels]
    return float(np.mean(scores))


def matthews_corrcoef(y_true: Sequence, y_pred: Sequence) -> float:
    """Matthews correlation coefficient, multi-class form (Gorodkin 2004).

    For two classes this equals (TP TN - FP FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)).
    Returns 0.0 when the denominator is zero (e.g. constant predictions).
    """
    t, p = _as_1d(y_true, "y_true"), _as_1d(y_pred, "y_pred")
    _check_same_length(t, p)
    classes, inverse = np.unique(np.concatenate([t, p]), return_inverse=True)
    k = len(classes)
    ti, pi = inverse[: len(t)], inverse[len(t):]
    cm = np.zeros((k, k), dtype=np.float64)
    np.add.at(cm, (ti, pi), 1.0)
    t_sum = cm.sum(axis=1)  # true occurrences per class
    p_sum = cm.sum(axis=0)  # predicted occurrences per class
    n = cm.sum()
    correct = np.trace(cm)
    cov_ytyp = correct * n - np.dot(t_sum, p_sum)
    cov_ypyp = n * n - np.dot(p_sum, p_sum)
    cov_ytyt = n * n - np.dot(t_sum, t_sum)
    denom = math.sqrt(cov_ytyt * cov_ypyp)
    return 0.0 if denom == 0 else float(cov_ytyp / denom)


def pearson(x: Sequence, y: Sequence) -> float:
    """Pearson correlation; NaN when either input is constant."""
    a = _as_1d(x, "x").astype(np.float64)
    b = _as_1d(y, "y").astype(np.float64)
    _check_same_length(a, b)
    a = a - a.mean()
    b = b - b.mean()
    denom = math.sqrt(float(np.dot(a, a)) * float(np.dot(b, b)))
    if denom == 0:
        return float("nan")
    r = float(np.dot(a, b) / denom)
    return max(-1.0, min(1.0, r))


def rankdata_average(x: Sequence) -> np.ndarray:
    """1-based ranks; tied values get the average of the ranks they occupy."""
    a = _as_1d(x, "x")
    n = a.shape[0]
    order = np.argsort(a, kind="mergesort")
    sorted_a = a[order]
    # Start index of each run of equal values in sorted order.
    is_new = np.ones(n, dtype=bool)
    if n > 1:
        is_new[1:] = sorted_a[1:] != sorted_a[:-1]
    starts = np.flatnonzero(is_new)
    ends = np.append(starts[1:], n)  # exclusive
    # Average of 1-based ranks start+1 .. end is (start + 1 + end) / 2.
    run_rank = (starts + 1 + ends) / 2.0
    run_id = np.cumsum(is_new) - 1
    ranks = np.empty(n, dtype=np.float64)
    ranks[order] = run_rank[run_id]
    return ranks


def spearman(x: Sequence, y: Sequence) -> float:
    """Spearman rank correlation (Pearson of average ranks); NaN if constant."""
    a, b = _as_1d(x, "x"), _as_1d(y, "y")
    _check_same_length(a, b)
    return pearson(rankdata_average(a), rankdata_average(b))


# Metrics on class ids (classification) and on real values (regression).
METRIC_FUNCTIONS = {
    "accuracy": accuracy,
    "f1": f1_binary,
    "macro_f1": macro_f1,
    "mcc": matthews_corrcoef,
    "pearson": pearson,
    "spearman": spearman,
}
REGRESSION_METRICS = ("pearson", "spearman")


def compute_metrics(
    names: Sequence[str], y_true: Sequence, y_pred: Sequence
) -> Dict[str, float]:
    """Computes each named metric. For classification pass class ids, for
    regression pass real values."""
    out = {}
    for name in names:
        if name not in METRIC_FUNCTIONS:
            raise ValueError(
                f"Unknown metric {name!r}; known: {sorted(METRIC_FUNCTIONS)}."
            )
        out[name] = METRIC_FUNCTIONS[name](y_true, y_pred)
    return out


def is_better(new: float, old: float) -> bool:
    """Higher is better for every metric here; NaN is never better."""
    if new is None or (isinstance(new, float) and math.isnan(new)):
        return False
    if old is None or (isinstance(old, float) and math.isnan(old)):
        return True
    return new > old
