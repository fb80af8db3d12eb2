"""Official SQuAD v1.1 / v2.0 evaluation (exact match and token F1).

This is a faithful port of the two official evaluation scripts
(``evaluate-v1.1.py`` and ``evaluate-v2.0.py``), without the ``na_prob``
threshold search of the v2.0 script:

* answers are normalised by lower-casing, removing ASCII punctuation
  (``string.punctuation``), removing the articles ``a``/``an``/``the`` and
  collapsing whitespace;
* EM and F1 of a prediction are the maximum over the gold answers;
* v1.1: ``f1 = 0`` when prediction and gold share no token (so two answers that
  both normalise to nothing score F1 0, EM 1);
* v2.0: gold answers normalising to "" are dropped and a question without
  gold answers (unanswerable) has the single gold answer ``""``: EM = F1 = 1
  iff the prediction normalises to "" (token F1 of two empty token lists is
  ``int(gold == pred)``); results are also broken down into ``HasAns_*`` and
  ``NoAns_*``.

All scores are percentages (0..100), like the official scripts.

Difference from the official scripts (documented, deliberate): a question with
no prediction scores 0 and is counted in ``total`` in both versions (the v1.1
script does this; the v2.0 script skips it in ``total`` but then crashes in
the HasAns/NoAns breakdown). The number is reported as ``missing``.
"""

from __future__ import annotations

import collections
import json
import os
import re
import string
from typing import Any, Iterable, Mapping

__all__ = [
    "normalize_answer",
    "get_tokens",
    "exact_match_score",
    "f1_score_v1",
    "compute_exact",
    "compute_f1",
    "squad_evaluate",
]

_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def normalize_answer(s: str) -> str:
    """Lower text and remove punctuation, articles and extra whitespace."""

    def remove_articles(text):
        return _ARTICLES.sub(" ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        return "".join(ch for ch in text if ch not in _PUNCTUATION)

    return white_space_fix(remove_articles(remove_punc(s.lower())))


def get_tokens(s: str) -> list[str]:
    if not s:
        return []
    return normalize_answer(s).split()


# ----------------------------------------------------------------- v1.1 script
def exact_match_score(prediction: str, ground_truth: str) -> int:
    """Official v1.1 (and v2.0) exact match of one prediction / gold pair."""
    return int(normalize_answer(prediction) == normalize_answer(ground_truth))


def token_f1(prediction_tokens: list[str], ground_truth_tokens: list[str]) -> float:
    """The v1.1 scripts' token F1 of two normalised token lists (0 when they
    share no token)."""
    common = collections.Counter(prediction_tokens) & collections.Counter(
        ground_truth_tokens
    )
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(prediction_tokens)
    recall = num_same / len(ground_truth_tokens)
    return (2 * precision * recall) / (precision + recall)


def f1_score_v1(prediction: str, ground_truth: str) -> float:
    """Official v1.1 token F1 (0 when there is no common token)."""
    return token_f1(normalize_answer(prediction).split(), normalize_answer(ground_truth).split())


# ----------------------------------------------------------------- v2.0 script
def compute_exact(a_gold: str, a_pred: str) -> int:
    return int(normalize_answer(a_gold) == normalize_answer(a_pred))


def compute_f1(a_gold: str, a_pred: str) -> float:
    """Official v2.0 token F1 (two empty answers score 1)."""
    gold_toks = get_tokens(a_gold)
    pred_toks = get_tokens(a_pred)
    common = collections.Counter(gold_toks) & collections.Counter(pred_toks)
    num_same = sum(common.values())
    if len(gold_toks) == 0 or len(pred_toks) == 0:
        # If either is no-answer, then F1 is 1 if they agree, 0 otherwise.
        return float(gold_toks == pred_toks)
    if num_same == 0:
        return 0.0
    precision = num_same / len(pred_toks)
    recall = num_same / len(gold_toks)
    return (2 * precision * recall) / (precision + recall)


# ------------------------------------------------------------------- datasets
def _iter_gold(dataset_examples: Any) -> Iterable[tuple[str, list[str]]]:
    """Yields (question id, list of gold answer texts).

    Accepts: a path to a SQuAD JSON file, the parsed JSON (dict with "data"),
    its "data" list (what the official scripts take), or an iterable of
    objects with ``qas_id`` and ``answers`` (``squad.SquadExample``) or dicts
    with ``id`` and ``answers`` (list of {"text": ...} or TFDS-style
    {"text": [...]}). Unanswerable questions must have no gold answers (the
    v2.0 convention; ``is_impossible`` examples are treated that way).
    """
    if isinstance(dataset_examples, (str, os.PathLike)):
        with open(dataset_examples, "r", encoding="utf-8") as f:
            dataset_examples = json.load(f)
    if isinstance(dataset_examples, Mapping) and "data" in dataset_examples:
        dataset_examples = dataset_examples["data"]
    for item in dataset_examples:
        if isinstance(item, Mapping) and "paragraphs" in item:  # article
            for paragraph in item["paragraphs"]:
                for qa in paragraph["qas"]:
                    impossible = bool(qa.get("is_impossible", False))
                    texts = [] if impossible else [a["text"] for a in qa["answers"]]
                    yield qa["id"], texts
        elif isinstance(item, Mapping):
            answers = item.get("answers", [])
            if isinstance(answers, Mapping):  # TFDS layout
                texts = list(answers.get("text", []))
            else:
                texts = [a["text"] if isinstance(a, Mapping) else a for a in answers]
            if item.get("is_impossible", False):
                texts = []
            texts = [t.decode("utf-8") if isinstance(t, bytes) else t for t in texts]
            qid = item["id"]
            yield (qid.decode("utf-8") if isinstance(qid, bytes) else qid), texts
        else:  # SquadExample-like
            texts = [] if getattr(item, "is_impossible", False) else [
                a["text"] for a in item.answers
            ]
            yield item.qas_id, texts


def squad_evaluate(
    dataset_examples: Any,
    predictions: Mapping[str, str],
    version_2: bool | None = None,
) -> dict[str, float]:
    """Official SQuAD evaluation.

    Args:
      dataset_examples: gold data (see ``_iter_gold`` for accepted forms).
      predictions: question id -> predicted answer text ("" = no answer).
      version_2: use the v2.0 rules; ``None`` infers v2.0 when any question
        has no gold answer.

    Returns:
      ``{"exact_match", "exact" (same value), "f1", "total", "missing",
      "version"}`` plus, for v2.0, ``HasAns_exact/f1/total`` and
      ``NoAns_exact/f1/total`` (breakdowns omitted when a group is empty).
    """
    gold = list(_iter_gold(dataset_examples))
    if version_2 is None:
        version_2 = any(not texts for _, texts in gold)
    exact, f1, has_ans = {}, {}, {}
    missing = 0
    for qid, texts in gold:
        if version_2:
            gold_answers = [t for t in texts if normalize_answer(t)]
            has_ans[qid] = bool(texts)
            if not gold_answers:
                gold_answers = [""]
        else:
            gold_answers = texts
        if qid not in predictions:
            missing += 1
            exact[qid], f1[qid] = 0.0, 0.0
            continue
        pred = predictions[qid]
        if not gold_answers:  # v1 question without gold answers
            exact[qid], f1[qid] = 0.0, 0.0
        elif version_2:
            exact[qid] = float(max(compute_exact(a, pred) for a in gold_answers))
            f1[qid] = max(compute_f1(a, pred) for a in gold_answers)
        else:
            exact[qid] = float(max(exact_match_score(pred, a) for a in gold_answers))
            f1[qid] = max(f1_score_v1(pred, a) for a in gold_answers)

    def summary(qids):
        n = len(qids)
        if n == 0:
            return 0.0, 0.0, 0
        return (
            100.0 * sum(exact[q] for q in qids) / n,
            100.0 * sum(f1[q] for q in qids) / n,
            n,
        )

    all_qids = list(exact)
    em, f, n = summary(all_qids)
    result = {
        "exact_match": em,
        "exact": em,
        "f1": f,
        "total": n,
        "missing": missing,
        "version": "v2.0" if version_2 else "v1.1",
    }
    if version_2:
        for prefix, qids in (
            ("HasAns", [q for q in all_qids if has_ans[q]]),
            ("NoAns", [q for q in all_qids if not has_ans[q]]),
        ):
            if qids:
                e, f_, n_ = summary(qids)
                result[f"{prefix}_exact"] = e
                result[f"{prefix}_f1"] = f_
                result[f"{prefix}_total"] = n_
    return result
