"""Extractive question answering data: SQuAD v1.1 / v2.0.

Pipeline (host-side Python, run once before training/eval):

1. Read examples: :func:`read_squad_json` (SQuAD-format JSON) or
   :func:`load_squad_tfds` (TFDS ``squad/v1.1`` / ``squad/v2.0``), giving a
   list of :class:`SquadExample`.
2. :func:`prepare_squad` tokenises question and context with
   :class:`OffsetWordPieceTokenizer` (a pure-Python BERT basic + WordPiece
   tokenizer that reproduces the ids of keras-hub's ``BertTokenizer`` /
   ``WordPieceTokenizer`` and additionally returns the character span of every
   token in the *original* text), splits long contexts into overlapping
   windows and returns model features (keras-hub ``BertBackbone`` inputs plus
   start/end labels) and per-feature metadata used to decode predictions.
3. :func:`postprocess` turns start/end logits of all features back into an
   answer string per question (n-best search over all windows, v2.0 null
   answer handling); evaluate with
   :func:`minilm_tf.tasks.squad_metrics.squad_evaluate`.

Window layout: ``[CLS] question [SEP] context-window [SEP] [PAD]...`` with
segment ids 0 for ``[CLS] question [SEP]`` and 1 for the context window and
the final ``[SEP]``. ``doc_stride`` follows the original BERT ``run_squad.py``
meaning: the distance, in tokens, between the starts of consecutive windows.
The label of a window that does not fully contain the gold answer (and of an
unanswerable question) is the ``[CLS]`` position 0.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import math
import os
import unicodedata
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

logger = logging.getLogger(__name__)

__all__ = [
    "AnswerAlignmentError",
    "OffsetWordPieceTokenizer",
    "SquadExample",
    "SquadExamples",
    "SquadFeatureMeta",
    "examples_from_records",
    "get_offset_tokenizer",
    "load_squad_tfds",
    "model_inputs",
    "postprocess",
    "prepare_squad",
    "read_squad_json",
]

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
_WHITESPACE = r"[ \t\n\r\f]|\p{Cc}|\p{Cf}"
_PUNCTUATION = r"[!-/]|[:-@]|[\[-`]|[{-~]|[\p{P}]"
_CJK = (
    r"[\u4E00-\u9FFF]|[\u3400-\u4DBF]|[\U00020000-\U0002A6DF]|[\U0002A700-\U0002B73F]"
    r"|[\U0002B740-\U0002B81F]|[\U0002B820-\U0002CEAF]|[\uF900-\uFAFF]|[\U0002F800-\U0002FA1F]"
)
# Unicode Default_Ignorable_Code_Point ranges, dropped by NFKC_Casefold.
_DEFAULT_IGNORABLE_RANGES = (
    (0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160),
    (0x17B4, 0x17B5), (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E),
    (0x2060, 0x206F), (0x3164, 0x3164), (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)
_MAX_BYTES_PER_WORD = 100  # tf_text.FastWordpieceTokenizer: longer -> [UNK]


def _is_default_ignorable(ch: str) -> bool:
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in _DEFAULT_IGNORABLE_RANGES)


def _casefold(text: str) -> str:
    """NFKC_Casefold, as ``tf_text.case_fold_utf8``."""
    if text.isascii():
        return text.lower()
    text = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    return "".join(c for c in text if not _is_default_ignorable(c))


class OffsetWordPieceTokenizer:
    """BERT basic + WordPiece tokenizer returning original-text char offsets.

    Reproduces ``keras_hub.tokenizers.WordPieceTokenizer`` (and therefore
    ``keras_hub.models.BertTokenizer``) with ``split=True``: optional NFD +
    removal of Mn accents, split on ASCII whitespace / control / format
    characters (dropped) and punctuation / CJK characters (kept), NFKC
    case-folding of each word, greedy longest-match WordPiece with ``##``
    continuation and ``[UNK]`` for words that cannot be covered or are longer
    than 100 UTF-8 bytes.

    ``tokenize_with_offsets`` also returns, for every token, the
    ``[start, end)`` character span in the original (un-normalised) string.
    Pieces of a word get their own sub-spans; when normalisation of a word
    is not character-wise (rare NFKC compositions) or the word is ``[UNK]``,
    all its pieces get the span of the whole word.

    Args:
      vocabulary: path to a ``vocab.txt`` or list of tokens.
      lowercase: case-fold words (uncased models).
      strip_accents: remove accents; ``None`` follows ``lowercase`` (the
        original BERT / Hugging Face uncased behaviour). Note keras-hub's own
        default is ``strip_accents=False``; :meth:`from_keras_hub` copies the
        setting of a given keras-hub tokenizer.
    """

    def __init__(
        self,
        vocabulary,
        lowercase: bool = True,
        strip_accents: bool | None = None,
        split_on_cjk: bool = True,
        suffix_indicator: str = "##",
        oov_token: str = "[UNK]",
        special_tokens: Sequence[str] | None = None,
        cls_token: str = "[CLS]",
        sep_token: str = "[SEP]",
        pad_token: str = "[PAD]",
    ):
        import regex  # dependency of keras-hub; needed for \p{..} classes

        if isinstance(vocabulary, (str, os.PathLike)):
            with open(vocabulary, "r", encoding="utf-8") as f:
                vocabulary = [line.rstrip() for line in f]
        self.vocabulary = list(vocabulary)
        self.token_to_id = {t: i for i, t in enumerate(self.vocabulary)}
        self.lowercase = bool(lowercase)
        self.strip_accents = self.lowercase if strip_accents is None else bool(strip_accents)
        self.split_on_cjk = split_on_cjk
        self.suffix_indicator = suffix_indicator
        self.oov_token = oov_token
        self.special_tokens = tuple(special_tokens or ())
        for tok in (oov_token, cls_token, sep_token, pad_token):
            if tok not in self.token_to_id:
                raise ValueError(f"Token {tok!r} is not in the vocabulary.")
        self.oov_id = self.token_to_id[oov_token]
        self.cls_id = self.token_to_id[cls_token]
        self.sep_id = self.token_to_id[sep_token]
        self.pad_id = self.token_to_id[pad_token]
        split = [_WHITESPACE, _PUNCTUATION] + ([_CJK] if split_on_cjk else [])
        keep = [_PUNCTUATION] + ([_CJK] if split_on_cjk else [])
        if self.special_tokens:
            special = "|".join(regex.escape(t) for t in self.special_tokens)
            split.insert(0, special)
            keep.insert(0, special)
        self._split_re = regex.compile("|".join(split))
        self._keep_re = regex.compile("|".join(keep))
        self._word_cache: dict[str, list[tuple[int, int, int]]] = {}

    @classmethod
    def from_keras_hub(cls, tokenizer) -> "OffsetWordPieceTokenizer":
        """Mirrors the settings of a keras-hub ``WordPieceTokenizer``/``BertTokenizer``."""
        if not getattr(tokenizer, "split", True):
            raise NotImplementedError("keras-hub tokenizers with split=False are not supported")
        special = None
        if getattr(tokenizer, "special_tokens_in_strings", False):
            special = list(getattr(tokenizer, "special_tokens", []) or [])
            special += list(getattr(tokenizer, "_init_special_tokens", None) or [])
        return cls(
            tokenizer.get_vocabulary(),
            lowercase=tokenizer.lowercase,
            strip_accents=bool(tokenizer.strip_accents),
            split_on_cjk=tokenizer.split_on_cjk,
            suffix_indicator=tokenizer.suffix_indicator,
            oov_token=tokenizer.oov_token,
            special_tokens=special,
            cls_token=getattr(tokenizer, "cls_token", "[CLS]"),
            sep_token=getattr(tokenizer, "sep_token", "[SEP]"),
            pad_token=getattr(tokenizer, "pad_token", "[PAD]"),
        )

    # -- word piece ------------------------------------------------------------
    def _wordpiece(self, word: str) -> list[tuple[int, int, int]]:
        """[(id, start, end)] over `word`; [(oov, 0, len)] when not coverable."""
        cached = self._word_cache.get(word)
        if cached is not None:
            return cached
        if len(word.encode("utf-8")) > _MAX_BYTES_PER_WORD:
            pieces = [(self.oov_id, 0, len(word))]
        else:
            pieces = []
            start = 0
            while start < len(word):
                end = len(word)
                current = None
                while start < end:
                    sub = word[start:end]
                    if start > 0:
                        sub = self.suffix_indicator + sub
                    if sub in self.token_to_id:
                        current = self.token_to_id[sub]
                        break
                    end -= 1
                if current is None:
                    pieces = [(self.oov_id, 0, len(word))]
                    break
                pieces.append((current, start, end))
                start = end
        if len(self._word_cache) < 200_000:
            self._word_cache[word] = pieces
        return pieces

    # -- public ----------------------------------------------------------------
    def tokenize_with_offsets(self, text: str) -> tuple[list[int], list[int], list[int]]:
        """Returns (token ids, start chars, end chars) for `text`."""
        # 1. Optional accent stripping, keeping norm-char -> orig-char index.
        if self.strip_accents and not text.isascii():
            chars, cmap = [], []
            for i, c in enumerate(text):
                for d in unicodedata.normalize("NFD", c):
                    if unicodedata.category(d) != "Mn":
                        chars.append(d)
                        cmap.append(i)
            norm = "".join(chars)
        else:
            norm = text
            cmap = range(len(text))
        # 2. Split into words (same semantics as tf_text.regex_split).
        spans = []
        pos = 0
        for m in self._split_re.finditer(norm):
            if m.start() > pos:
                spans.append((pos, m.start()))
            if self._keep_re.fullmatch(m.group()):
                spans.append((m.start(), m.end()))
            pos = m.end()
        if pos < len(norm):
            spans.append((pos, len(norm)))
        # 3. Case fold each word and word-piece it.
        ids, starts, ends = [], [], []
        for a, b in spans:
            word = norm[a:b]
            fmap = None  # folded-char -> orig-char index, when char-wise
            if self.lowercase and word not in self.special_tokens:
                folded = _casefold(word)
                if word.isascii():
                    fmap = cmap[a:b]
                else:
                    per_char = [_casefold(c) for c in word]
                    if "".join(per_char) == folded:
                        fmap = [cmap[a + j] for j, p in enumerate(per_char) for _ in p]
            else:
                folded = word
                fmap = cmap[a:b]
            if not folded:
                continue
            w_start, w_end = cmap[a], cmap[b - 1] + 1
            for tid, s, e in self._wordpiece(folded):
                ids.append(tid)
                if fmap is None or tid == self.oov_id:
                    starts.append(w_start)
                    ends.append(w_end)
                else:
                    starts.append(fmap[s])
                    ends.append(fmap[e - 1] + 1)
        return ids, starts, ends

    def tokenize(self, text: str) -> list[int]:
        return self.tokenize_with_offsets(text)[0]

    def __call__(self, text: str) -> list[int]:
        return self.tokenize(text)


def get_offset_tokenizer(tokenizer_or_vocab, lowercase: bool = True) -> OffsetWordPieceTokenizer:
    """An :class:`OffsetWordPieceTokenizer` from a keras-hub tokenizer, an
    ``OffsetWordPieceTokenizer``, a vocab path or a token list (then
    ``lowercase`` applies, accents stripped iff lowercase)."""
    if isinstance(tokenizer_or_vocab, OffsetWordPieceTokenizer):
        return tokenizer_or_vocab
    if hasattr(tokenizer_or_vocab, "get_vocabulary") and hasattr(tokenizer_or_vocab, "lowercase"):
        return OffsetWordPieceTokenizer.from_keras_hub(tokenizer_or_vocab)
    return OffsetWordPieceTokenizer(tokenizer_or_vocab, lowercase=lowercase)


# =============================================================================
# Features
# =============================================================================
@dataclasses.dataclass
class SquadFeatureMeta:
    """Per-feature data needed to decode predictions.

    Attributes:
      example_ids: [N] question id of each feature.
      example_index: [N] int32 index of the example in the list given to
        :func:`prepare_squad`.
      offsets: [N, L, 2] int32 ``[start, end)`` character span in the
        example's context of each token; ``-1`` for non-context tokens
        ([CLS], question, [SEP], padding).
      token_is_max_context: [N, L] bool, True where this window gives the
        token its maximal context among the windows containing it (original
        BERT rule); decoding only starts answers at such tokens.
    """

    example_ids: np.ndarray
    example_index: np.ndarray
    offsets: np.ndarray
    token_is_max_context: np.ndarray

    def __len__(self) -> int:
        return len(self.example_index)


def _char_span_to_tokens(starts, ends, char_start, char_end):
    """First token ending after char_start, last token starting before char_end."""
    tok_start = tok_end = None
    for i, (s, e) in enumerate(zip(starts, ends)):
        if tok_start is None and e > char_start:
            tok_start = i
        if s < char_end:
            tok_end = i
    if tok_start is None or tok_end is None or tok_end < tok_start:
        return None
    return tok_start, tok_end


def prepare_squad(
    examples: Sequence[SquadExample],
    tokenizer_or_vocab,
    lowercase: bool = True,
    max_seq_length: int = 384,
    doc_stride: int = 128,
    max_query_length: int = 64,
) -> tuple[dict[str, np.ndarray], SquadFeatureMeta]:
    """Tokenises examples into (possibly several) fixed-length features each.

    Args:
      examples: list of :class:`SquadExample`.
      tokenizer_or_vocab: keras-hub ``BertTokenizer``/``WordPieceTokenizer``,
        :class:`OffsetWordPieceTokenizer`, vocab file path or token list.
      lowercase: only used when a vocabulary is given.
      max_seq_length: feature length L.
      doc_stride: step in tokens between the starts of consecutive windows.
      max_query_length: questions are truncated to this many tokens.

    Returns:
      ``features``: dict of numpy int32 arrays, ``token_ids``,
      ``segment_ids``, ``padding_mask`` [N, L] (the keras-hub ``BertBackbone``
      inputs, see :func:`model_inputs`) and ``start_positions``,
      ``end_positions`` [N] (0 = [CLS] when the window does not contain the
      whole answer, or the question has none); and :class:`SquadFeatureMeta`.
    """
    if doc_stride <= 0:
        raise ValueError("doc_stride must be positive")
    tok = get_offset_tokenizer(tokenizer_or_vocab, lowercase)
    L = max_seq_length
    context_cache: dict[str, tuple[list[int], list[int], list[int]]] = {}
    token_ids, segment_ids, padding_mask, start_pos, end_pos = [], [], [], [], []
    ex_ids, ex_index, offsets, max_ctx = [], [], [], []
    num_unlocatable = 0

    for ei, ex in enumerate(examples):
        q_ids = tok.tokenize(ex.question)[:max_query_length]
        if ex.context not in context_cache:
            if len(context_cache) > 64:
                context_cache.clear()
            context_cache[ex.context] = tok.tokenize_with_offsets(ex.context)
        c_ids, c_starts, c_ends = context_cache[ex.context]
        max_tokens_for_doc = L - len(q_ids) - 3
        if max_tokens_for_doc <= 0:
            raise ValueError(
                f"max_seq_length={L} leaves no room for the context after a "
                f"{len(q_ids)}-token question (id={ex.qas_id!r}); lower max_query_length."
            )

        answer_tokens = None
        if not ex.is_impossible and ex.start_char is not None and ex.answer_text:
            answer_tokens = _char_span_to_tokens(
                c_starts, c_ends, ex.start_char, ex.start_char + len(ex.answer_text)
            )
            if answer_tokens is None:
                num_unlocatable += 1

        # Sliding windows (original BERT semantics).
        doc_spans = []
        start_offset = 0
        while start_offset < len(c_ids):
            length = min(len(c_ids) - start_offset, max_tokens_for_doc)
            doc_spans.append((start_offset, length))
            if start_offset + length == len(c_ids):
                break
            start_offset += min(length, doc_stride)

        for span_index, (span_start, span_len) in enumerate(doc_spans):
            ids = [tok.cls_id] + q_ids + [tok.sep_id]
            ctx_offset = len(ids)
            ids += c_ids[span_start : span_start + span_len] + [tok.sep_id]
            n = len(ids)
            seg = np.zeros(L, np.int32)
            seg[ctx_offset:n] = 1
            mask = np.zeros(L, np.int32)
            mask[:n] = 1
            row = np.full(L, tok.pad_id, np.int32)
            row[:n] = ids
            off = np.full((L, 2), -1, np.int32)
            off[ctx_offset : ctx_offset + span_len, 0] = c_starts[span_start : span_start + span_len]
            off[ctx_offset : ctx_offset + span_len, 1] = c_ends[span_start : span_start + span_len]
            is_max = np.zeros(L, bool)
            for j in range(span_len):
                is_max[ctx_offset + j] = _is_max_context(doc_spans, span_index, span_start + j)
            s = e = 0
            if answer_tokens is not None:
                a_s, a_e = answer_tokens
                if span_start <= a_s and a_e < span_start + span_len:
                    s = a_s - span_start + ctx_offset
                    e = a_e - span_start + ctx_offset
            token_ids.append(row)
            segment_ids.append(seg)
            padding_mask.append(mask)
            start_pos.append(s)
            end_pos.append(e)
            ex_ids.append(ex.qas_id)
            ex_index.append(ei)
            offsets.append(off)
            max_ctx.append(is_max)

    if num_unlocatable:
        logger.warning("%d answer(s) could not be mapped to context tokens.", num_unlocatable)

    def stack(rows, shape, dtype):
        return np.stack(rows).astype(dtype) if rows else np.zeros((0,) + shape, dtype)

    features = {
        "token_ids": stack(token_ids, (L,), np.int32),
        "segment_ids": stack(segment_ids, (L,), np.int32),
        "padding_mask": stack(padding_mask, (L,), np.int32),
        "start_positions": np.asarray(start_pos, np.int32),
        "end_positions": np.asarray(end_pos, np.int32),
    }
    meta = SquadFeatureMeta(
        example_ids=np.asarray(ex_ids, dtype=object),
        example_index=np.asarray(ex_index, np.int32),
        offsets=stack(offsets, (L, 2), np.int32),
        token_is_max_context=stack(max_ctx, (L,), bool),
    )
    return features, meta


def _is_max_context(doc_spans, cur_span_index, position) -> bool:
    """Original BERT: is `position` best centred in span `cur_span_index`?"""
    best_score, best_index = None, None
    for span_index, (start, length) in enumerate(doc_spans):
        end = start + length - 1
        if position < start or position > end:
            continue
        score = min(position - start, end - position) + 0.01 * length
        if best_score is None or score > best_score:
            best_score, best_index = score, span_index
    return cur_span_index == best_index


def model_inputs(features: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The keras-hub ``BertBackbone`` input dict (int32) from ``features``."""
    return {k: np.asarray(features[k], np.int32) for k in ("token_ids", "segment_ids", "padding_mask")}


# =============================================================================
# Decoding
# =============================================================================
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
