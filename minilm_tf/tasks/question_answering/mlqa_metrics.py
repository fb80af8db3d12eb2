"""Official MLQA evaluation (exact match and token F1 per language).

A port of MLQA's `mlqa_evaluation_v1.py`: SQuAD v1.1 scoring (the maximum
over the gold answers, F1 0 without a common token) with a language-aware
answer normalisation:

1. lower-case;
2. remove every Unicode punctuation character (categories P*) and ASCII
   punctuation;
3. remove the language's articles: en a/an/the; es un/una/unos/unas/el/la/
   los/las; de ein/eine/einen/einem/eines/einer/der/die/das/den/dem/des;
   vi của/là/cái/chiếc/những; ar the prefix ال; none for hi and zh;
4. tokenise on whitespace, and for zh also split every CJK character
   (U+4E00-U+9FA5) into its own token (MLQA's mixed segmentation).

Scores are percentages; a question without a prediction scores 0 and is
counted (reported as ``missing``), as in the official script.
"""

from __future__ import annotations

import functools
import re
import string
import sys
import unicodedata
from typing import Any, Mapping

from minilm_tf.tasks.question_answering.metrics import _iter_gold, token_f1

MLQA_LANGUAGES = ("ar", "de", "en", "es", "hi", "vi", "zh")
_WHITESPACE_LANGUAGES = ("en", "es", "hi", "vi", "de", "ar")
_ARTICLES = {
    "en": re.compile(r"\b(a|an|the)\b"),
    "es": re.compile(r"\b(un|una|unos|unas|el|la|los|las)\b"),
    "vi": re.compile(r"\b(của|là|cái|chiếc|những)\b"),
    "de": re.compile(r"\b(ein|eine|einen|einem|eines|einer|der|die|das|den|dem|des)\b"),
    "ar": re.compile(r"\sال^|ال"),
}
_CJK = re.compile(r"[\u4e00-\u9fa5]")


@functools.lru_cache(maxsize=1)
def _punctuation() -> frozenset:
    return frozenset(chr(i) for i in range(sys.maxunicode)
                     if unicodedata.category(chr(i)).startswith("P")) | set(string.punctuation)


def _check_language(language: str) -> None:
    if language not in MLQA_LANGUAGES:
        raise ValueError(f"MLQA has no language {language!r}; its languages are "
                         f"{', '.join(MLQA_LANGUAGES)}.")


def _mixed_segmentation(text: str) -> list[str]:
    punctuation = _punctuation()
    tokens, run = [], ""
    for ch in text:
        if _CJK.search(ch) or ch in punctuation:
            tokens.extend(run.split())
            run = ""
            tokens.append(ch)
        else:
            run += ch
    tokens.extend(run.split())
    return tokens


def normalize_answer(s: str, language: str) -> str:
    """MLQA's normalisation of an answer in `language` (see the module doc)."""
    _check_language(language)
    punctuation = _punctuation()
    text = "".join(ch for ch in s.lower() if ch not in punctuation)
    if language in _ARTICLES:
        text = _ARTICLES[language].sub(" ", text)
    tokens = (text.split() if language in _WHITESPACE_LANGUAGES
              else _mixed_segmentation(text))
    return " ".join(t for t in tokens if t.strip())


def exact_match_score(prediction: str, ground_truth: str, language: str) -> int:
    return int(normalize_answer(prediction, language) == normalize_answer(ground_truth, language))


def f1_score(prediction: str, ground_truth: str, language: str) -> float:
    return token_f1(normalize_answer(prediction, language).split(),
                    normalize_answer(ground_truth, language).split())


def mlqa_evaluate(dataset_examples: Any, predictions: Mapping[str, str],
                  language: str) -> dict:
    """Official MLQA EM / F1 of `predictions` ({question id: answer}) against
    the gold answers (any form `metrics.squad_evaluate` accepts) in
    `language`."""
    _check_language(language)
    exact = f1 = 0.0
    total = missing = 0
    for qid, answers in _iter_gold(dataset_examples):
        total += 1
        if qid not in predictions:
            missing += 1
            continue
        if not answers:
            continue
        pred = predictions[qid]
        exact += max(exact_match_score(pred, a, language) for a in answers)
        f1 += max(f1_score(pred, a, language) for a in answers)
    n = max(total, 1)
    return {"exact_match": 100.0 * exact / n, "exact": 100.0 * exact / n,
            "f1": 100.0 * f1 / n, "total": total, "missing": missing,
            "version": "mlqa", "language": language}
