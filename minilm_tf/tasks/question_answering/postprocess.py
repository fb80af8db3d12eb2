"""From start/end logits of all windows back to one answer string per
question: n-best search over all windows, v2.0 null-answer handling."""

from __future__ import annotations

import collections
import math
from typing import Sequence

import numpy as np


from minilm_tf.tasks.question_answering.examples import SquadExample
from minilm_tf.tasks.question_answering.features import SquadFeatureMeta


def postprocess(
    examples: Sequence[SquadExample],
    feature_meta: SquadFeatureMeta,
    start_logits,
    end_logits,
    n_best: int = 20,
    max_answer_length: int = 30,
    version_2: bool = False,
    null_threshold: float = 0.0,
    return_nbest: bool = False,
):
    """Turns per-feature start/end logits into one answer string per question.

    For every example, the ``n_best`` highest start and end logits of each of
    its windows are paired; a pair is valid when both tokens are context
    tokens (question, special and padding tokens are masked), ``end >=
    start``, ``end - start + 1 <= max_answer_length`` and the start token has
    its maximal context in that window. The best valid span (score = start +
    end logit) over all windows is mapped back to the original context
    characters through the offsets. For ``version_2``, the null score is the
    smallest ``start_logits[0] + end_logits[0]`` ([CLS]) over the windows and
    the prediction is "" when ``null_score - best_span_score >
    null_threshold`` (or when there is no valid span).

    Args:
      examples: the list given to :func:`prepare_squad`.
      feature_meta: its metadata; ``start_logits``/``end_logits``: [N, L].

    Returns:
      dict question id -> answer text; with ``return_nbest`` also a dict
      question id -> {"nbest": [{"text", "score", "probability",
      "start_char", "end_char"}], "null_score", "score_diff"}.
    """
    start_logits = np.asarray(start_logits, np.float32)
    end_logits = np.asarray(end_logits, np.float32)
    n_feat = len(feature_meta)
    if start_logits.shape != end_logits.shape or start_logits.shape[0] != n_feat:
        raise ValueError(
            f"logits shapes {start_logits.shape}/{end_logits.shape} do not match "
            f"{n_feat} features"
        )
    by_example = collections.defaultdict(list)
    for f, ei in enumerate(feature_meta.example_index):
        ei = int(ei)
        if ei >= len(examples) or examples[ei].qas_id != feature_meta.example_ids[f]:
            raise ValueError(
                "feature_meta does not belong to these examples "
                f"(feature {f} has id {feature_meta.example_ids[f]!r})"
            )
        by_example[ei].append(f)

    predictions: dict[str, str] = {}
    details: dict[str, dict] = {}
    for ei, ex in enumerate(examples):
        candidates = []  # (score, start_char, end_char)
        null_score = math.inf
        for f in by_example.get(ei, []):
            s_log, e_log = start_logits[f], end_logits[f]
            off = feature_meta.offsets[f]
            null_score = min(null_score, float(s_log[0] + e_log[0]))
            k = min(n_best, len(s_log))
            s_idx = np.argsort(-s_log, kind="stable")[:k]
            e_idx = np.argsort(-e_log, kind="stable")[:k]
            S, E = np.meshgrid(s_idx, e_idx, indexing="ij")
            valid = (
                (off[S, 0] >= 0)
                & (off[E, 0] >= 0)
                & (E >= S)
                & (E - S + 1 <= max_answer_length)
                & feature_meta.token_is_max_context[f][S]
            )
            for si, ej in zip(S[valid], E[valid]):
                candidates.append(
                    (float(s_log[si] + e_log[ej]), int(off[si, 0]), int(off[ej, 1]))
                )
        candidates.sort(key=lambda c: -c[0])
        nbest, seen = [], set()
        for score, cs, ce in candidates:
            text = ex.context[cs:ce]
            if text in seen:
                continue
            seen.add(text)
            nbest.append({"text": text, "score": score, "start_char": cs, "end_char": ce})
            if len(nbest) >= n_best:
                break
        best = nbest[0] if nbest else None
        if version_2:
            if best is None:
                answer, diff = "", math.inf
            else:
                diff = null_score - best["score"]
                answer = "" if diff > null_threshold else best["text"]
        else:
            answer, diff = (best["text"] if best else ""), None
        predictions[ex.qas_id] = answer
        if return_nbest:
            if nbest:
                scores = np.array([c["score"] for c in nbest])
                probs = np.exp(scores - scores.max())
                probs /= probs.sum()
                for c, p in zip(nbest, probs):
                    c["probability"] = float(p)
            details[ex.qas_id] = {
                "nbest": nbest,
                "null_score": null_score if by_example.get(ei) else None,
                "score_diff": diff,
            }
    if return_nbest:
        return predictions, details
    return predictions
