"""SQuAD features: question + context windows for the model, and their labels.

Window layout: `[CLS] question [SEP] context-window [SEP] [PAD]...` with
segment ids 0 for `[CLS] question [SEP]` and 1 for the context window and
the final `[SEP]` (BERT); XLM-R's is `<s> question </s></s> context-window
</s> <pad>...` (the tokenizer's `pair_separator`; its backbone takes no
segment ids). `doc_stride` follows BERT's `run_squad.py`: the
distance, in tokens, between the starts of consecutive windows. The label of
a window that does not fully contain the gold answer (and of an unanswerable
question) is the `[CLS]` position 0."""

from __future__ import annotations

import dataclasses
import logging
from typing import Mapping, Sequence

import numpy as np


from minilm_tf.tasks.question_answering.examples import SquadExample
from minilm_tf.tasks.question_answering.tokenizer import get_offset_tokenizer

logger = logging.getLogger(__name__)


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
      tokenizer_or_vocab: keras-hub ``BertTokenizer``/``WordPieceTokenizer``
        or ``XLMRobertaTokenizer``, an offset tokenizer, a vocab file path or
        a token list.
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
    pair_separator = list(tok.pair_separator)
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
        max_tokens_for_doc = L - len(q_ids) - 2 - len(pair_separator)
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
            ids = [tok.cls_id] + q_ids + pair_separator
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


def model_inputs(features: Mapping[str, np.ndarray],
                 names: Sequence[str] = ("token_ids", "segment_ids", "padding_mask"),
                 ) -> dict[str, np.ndarray]:
    """The model's input dict (int32) from ``features``: ``names``, by default
    the keras-hub ``BertBackbone`` inputs (see ``model.input_names``)."""
    return {k: np.asarray(features[k], np.int32) for k in names}


# =============================================================================
# Decoding
# =============================================================================
