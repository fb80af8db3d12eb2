"""Generation metrics from the reference libraries.

- ROUGE-1/2/L: Google's `rouge-score` (`rouge_scorer.RougeScorer`, Porter
  stemming on, as in the UniLM/s2s-ft and PEGASUS evaluations), the mean F1
  over examples, times 100. `rougeL` is sentence-level LCS (not `rougeLsum`).
- BLEU-4: `sacrebleu.corpus_bleu` with its defaults (13a tokenisation,
  case-sensitive, sacrebleu's default exponential smoothing), 0-100.

Predictions and references should be in the same normal form (see
`Seq2SeqPacker.normalise`).
"""

from __future__ import annotations

from typing import Dict, Sequence

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


def rouge(predictions: Sequence[str], references: Sequence[str]) -> Dict[str, float]:
    """Mean ROUGE-1/2/L F1 (x100) of `predictions` against `references`."""
    from rouge_score import rouge_scorer

    _check(predictions, references)
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    for prediction, reference in zip(predictions, references):
        scores = scorer.score(reference, prediction)  # (target, prediction)
        for name in ROUGE_TYPES:
            totals[name] += scores[name].fmeasure
    return {name: 100.0 * total / len(predictions) for name, total in totals.items()}


def bleu(predictions: Sequence[str], references: Sequence[str]) -> float:
    """sacrebleu corpus BLEU-4 (0-100), one reference per prediction."""
    import sacrebleu

    _check(predictions, references)
    return float(sacrebleu.corpus_bleu(list(predictions), [list(references)]).score)


def generation_metrics(predictions: Sequence[str], references: Sequence[str]) -> Dict[str, float]:
    """{"rouge1", "rouge2", "rougeL", "bleu"}."""
    return {**rouge(predictions, references), "bleu": bleu(predictions, references)}


def _check(predictions, references) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references.")
    if not predictions:
        raise ValueError("No predictions to score.")
