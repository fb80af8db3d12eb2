"""SQuAD v1.1 / v2.0 examples: `read_squad_json` (SQuAD-format JSON) and
`load_squad_tfds` (TFDS `squad/v1.1`, `squad/v2.0`), as `SquadExample`s."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Any, Iterable, Mapping

import numpy as np

logger = logging.getLogger(__name__)


MISMATCH_MODES = ("error", "skip", "keep")


# =============================================================================
# Examples
# =============================================================================
class AnswerAlignmentError(ValueError):
    """A gold answer's ``answer_start`` does not match its context."""


@dataclasses.dataclass
class SquadExample:
    """One question.

    Attributes:
      qas_id: question id.
      question, context, title: text.
      answers: all gold answers, ``[{"text": str, "answer_start": int}]``
        (used for evaluation; empty for unanswerable questions).
      is_impossible: SQuAD v2.0 unanswerable question.
      answer_text, start_char: the training target (first gold answer whose
        offset matches the context), or ``None`` when the question is
        unanswerable or no answer could be aligned (``on_mismatch="keep"``);
        features then point at ``[CLS]``.
      plausible_answers: v2.0 plausible answers of unanswerable questions.
    """

    qas_id: str
    question: str
    context: str
    answers: list = dataclasses.field(default_factory=list)
    is_impossible: bool = False
    title: str = ""
    answer_text: str | None = None
    start_char: int | None = None
    plausible_answers: list = dataclasses.field(default_factory=list)


class SquadExamples(list):
    """A list of :class:`SquadExample` that also records reading problems.

    Attributes:
      num_skipped / skipped_ids: questions dropped (``on_mismatch="skip"``).
      num_mismatched / mismatched_ids: questions with at least one answer
        whose ``answer_start`` does not match the context (kept or skipped).
    """

    def __init__(self, items=()):
        super().__init__(items)
        self.skipped_ids: list[str] = []
        self.mismatched_ids: list[str] = []

    @property
    def num_skipped(self) -> int:
        return len(self.skipped_ids)

    @property
    def num_mismatched(self) -> int:
        return len(self.mismatched_ids)


def _to_str(x) -> str:
    if isinstance(x, bytes):
        return x.decode("utf-8")
    if isinstance(x, np.ndarray) and x.ndim == 0:
        return _to_str(x.item())
    return str(x)


def _answer_list(answers) -> list[dict]:
    """Accepts [{"text", "answer_start"}] or TFDS {"text": [...], "answer_start": [...]}."""
    if answers is None:
        return []
    if isinstance(answers, Mapping):
        texts = list(answers.get("text", []))
        starts = list(answers.get("answer_start", []))
        # Mock TFDS data can have different lengths; extra entries are dropped.
        return [
            {"text": _to_str(t), "answer_start": int(s)} for t, s in zip(texts, starts)
        ]
    return [{"text": _to_str(a["text"]), "answer_start": int(a["answer_start"])} for a in answers]


def _answer_matches(context: str, answer: Mapping) -> bool:
    start = answer["answer_start"]
    text = answer["text"]
    return 0 <= start and bool(text) and context[start : start + len(text)] == text


def examples_from_records(
    records: Iterable[Mapping[str, Any]],
    is_training: bool = True,
    on_mismatch: str | None = None,
    version_2: bool | None = None,
) -> SquadExamples:
    """Builds examples from flat records.

    A record has ``id``, ``question``, ``context``, ``answers`` (list of
    ``{"text", "answer_start"}`` or the TFDS dict of lists) and optionally
    ``title``, ``is_impossible``, ``plausible_answers``. Strings may be bytes.

    Args:
      is_training: only changes the default of ``on_mismatch``.
      on_mismatch: what to do with an answer whose ``answer_start`` does not
        point at its text in the context: ``"error"`` raises
        :class:`AnswerAlignmentError` naming the question id (default when
        ``is_training``), ``"skip"`` drops the question (counted in
        ``SquadExamples.skipped_ids``), ``"keep"`` keeps the question with its
        gold answers for evaluation but without a training target if no
        answer aligns (default for evaluation data). An answerable question
        without any answer is treated as a mismatch.
      version_2: if False, ``is_impossible`` is ignored (v1.1 has none).
    """
    if on_mismatch is None:
        on_mismatch = "error" if is_training else "keep"
    if on_mismatch not in MISMATCH_MODES:
        raise ValueError(f"on_mismatch must be one of {MISMATCH_MODES}, got {on_mismatch!r}")
    out = SquadExamples()
    for rec in records:
        qid = _to_str(rec["id"])
        context = _to_str(rec["context"])
        answers = _answer_list(rec.get("answers"))
        impossible = bool(rec.get("is_impossible", False)) and version_2 is not False
        ex = SquadExample(
            qas_id=qid,
            question=_to_str(rec["question"]),
            context=context,
            answers=[] if impossible else answers,
            is_impossible=impossible,
            title=_to_str(rec.get("title", "")),
            plausible_answers=_answer_list(rec.get("plausible_answers")),
        )
        if not impossible:
            bad = [a for a in answers if not _answer_matches(context, a)]
            good = [a for a in answers if _answer_matches(context, a)]
            if bad or not answers:
                out.mismatched_ids.append(qid)
                if on_mismatch == "error":
                    if not answers:
                        raise AnswerAlignmentError(
                            f"SQuAD question id={qid!r} is answerable but has no answer."
                        )
                    a = bad[0]
                    s = a["answer_start"]
                    found = context[max(s, 0) : max(s, 0) + len(a["text"])]
                    raise AnswerAlignmentError(
                        f"SQuAD question id={qid!r}: answer {a['text']!r} does not match "
                        f"its context at answer_start={s} (context has {found!r} there). "
                        "Fix the data or read it with on_mismatch='skip'/'keep'."
                    )
                if on_mismatch == "skip":
                    out.skipped_ids.append(qid)
                    continue
            if good:
                ex.answer_text = good[0]["text"]
                ex.start_char = good[0]["answer_start"]
        out.append(ex)
    if out.mismatched_ids:
        logger.warning(
            "%d SQuAD question(s) with answers not matching their context (%s); "
            "on_mismatch=%r, %d skipped. First ids: %s",
            len(out.mismatched_ids),
            "skipped" if on_mismatch == "skip" else "kept without a training target",
            on_mismatch,
            out.num_skipped,
            out.mismatched_ids[:5],
        )
    return out


def read_squad_json(
    path_or_data: Any,
    is_training: bool = True,
    on_mismatch: str | None = None,
    version_2: bool | None = None,
) -> SquadExamples:
    """Reads a SQuAD-format file (or its parsed JSON) into examples.

    ``data -> paragraphs -> {context, qas -> {id, question, answers,
    is_impossible?, plausible_answers?}}``. See :func:`examples_from_records`
    for ``is_training`` / ``on_mismatch`` / ``version_2``.
    """
    if isinstance(path_or_data, (str, os.PathLike)):
        with open(path_or_data, "r", encoding="utf-8") as f:
            data = json.load(f)
    else:
        data = path_or_data
    articles = data["data"] if isinstance(data, Mapping) else data

    def records():
        for article in articles:
            title = article.get("title", "")
            for paragraph in article["paragraphs"]:
                for qa in paragraph["qas"]:
                    yield {
                        "id": qa["id"],
                        "title": title,
                        "context": paragraph["context"],
                        "question": qa["question"],
                        "answers": qa.get("answers", []),
                        "is_impossible": qa.get("is_impossible", False),
                        "plausible_answers": qa.get("plausible_answers"),
                    }

    return examples_from_records(records(), is_training, on_mismatch, version_2)


def load_squad_tfds(
    name: str = "squad/v1.1",
    split: str = "train",
    is_training: bool | None = None,
    on_mismatch: str | None = None,
    data_dir: str | None = None,
    download: bool = True,
    max_examples: int | None = None,
) -> SquadExamples:
    """Reads ``squad/v1.1`` or ``squad/v2.0`` through the TFDS builder.

    ``is_training`` defaults to ``split`` starting with "train". Note that
    ``tfds.testing.mock_data`` produces random strings whose answers never
    align with the context; read them with ``on_mismatch="keep"`` (features
    then point at [CLS]) or ``"skip"``.
    """
    import tensorflow_datasets as tfds  # heavy; imported lazily

    if is_training is None:
        is_training = split.startswith("train")
    ds = tfds.load(name, split=split, data_dir=data_dir, download=download)
    if max_examples is not None:
        ds = ds.take(max_examples)
    version_2 = name.rstrip("/").endswith("v2.0")
    return examples_from_records(tfds.as_numpy(ds), is_training, on_mismatch, version_2)


# =============================================================================
# Tokenizer with character offsets
# =============================================================================
# Same character classes as keras_hub.src.tokenizers.word_piece_tokenizer
# (Python path, which mirrors the tf-text path). RE2's `\s` is ASCII only.
