"""In-graph tokenisation and packing for the exports.

Two tokenisers:

* SavedModel: the model's own keras-hub preprocessor (tensorflow-text ops:
  `NormalizeUTF8`, `CaseFoldUTF8`, `RegexSplitWithOffsets`,
  `FastWordpieceTokenizeWithOffsets`), so served token ids are exactly the
  ones the model was trained and evaluated with. The TF Serving model server
  links these tensorflow-text ops.
* TFLite: `tf_text.FastBertNormalizer(lower_case_nfd_strip_accents=True)` +
  `tf_text.FastWordpieceTokenizer(no_pretokenization=False)`, which convert
  to the tensorflow-text TFLite custom ops `FastBertNormalize` and
  `FastWordpieceTokenize` (run with
  `InterpreterWithCustomOps(custom_op_registerers=tf_text.tflite_registrar.SELECT_TFTEXT_OPS)`);
  the keras-hub ops have no TFLite kernels (they would need Flex ops, which no
  pip LiteRT interpreter ships). The tokenizer is `minilm_tf.data.packing.
  FastWordpiece`, the corpus pipeline's `tokenization="hf"`. Packing here
  (`pack_single`, `pack_pair`: whole batches, round-robin truncation of
  pairs, like keras-hub's packer) uses only TFLite builtin ops (gather,
  select, arithmetic); the corpus packer packs one chunk of running text at
  a time, split at a sentence start, which is a different job.

Known differences of the TFLite tokeniser from keras-hub's `BertTokenizer`
(the same ids on ASCII, accents, Chinese / Japanese, emoji, very long
words, empty and whitespace-only strings, control characters, full-width
forms, "ß"; see `KNOWN_TFLITE_DIFFERENCES`, checked by
tests/export/test_export_tflite.py). On rotten_tomatoes 34 of 10,662 texts differ,
all because of "…"; on the 2,225 BBC News articles none:

* "…" (U+2026): keras-hub case-folds it (NFKC) into the single token
  "..."; the TFLite normaliser into three "." tokens (Hugging Face keeps
  "…", a third behaviour);
* Hangul syllables: keras-hub's NFD accent stripping splits them into
  conjoining jamo, then its NFKC case folding recomposes them, so a Korean
  word is usually `[UNK]`; the TFLite tokenizer (like Hugging Face) keeps
  the jamo, which are in the vocabulary;
* non-ASCII whitespace (U+00A0 no-break space, U+3000 ideographic space and
  the other Unicode `Zs` characters) separates words in TFLite (as in Hugging
  Face's BertTokenizer); keras-hub splits only on ASCII whitespace, so
  "non\u00a0breaking" is one word there (usually `[UNK]`);
* format characters (Unicode `Cf`: U+200B zero-width space, U+00AD soft
  hyphen, ...) are deleted in TFLite (as in Hugging Face) but are word
  boundaries in keras-hub.

Invalid UTF-8 bytes: the SavedModel replaces them with U+FFFD before
tokenising (`sanitize_utf8`); the TFLite normaliser does the equivalent
internally. Either way a word holding one becomes `[UNK]`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf

from minilm_tf.data.packing import FastWordpiece, SpecialTokens

# (text, what keras-hub does, what the TFLite tokenizer does): documented
# differences, asserted by the tests so the doc stays true.
KNOWN_TFLITE_DIFFERENCES = (
    ("wait for it\u2026 yes", "'...' (one token)", "'.', '.', '.' (three tokens)"),
    ("non\u00a0breaking", "one word (no split on U+00A0)", "two words"),
    ("\u3000ideographic space", "one word (no split on U+3000)", "two words"),
    ("zero\u200bwidth", "two words (U+200B splits)", "one word (U+200B deleted)"),
    ("soft\u00adhyphen", "two words (U+00AD splits)", "one word (U+00AD deleted)"),
    ("\ud55c\uad6d\uc5b4", "[UNK] (syllables recomposed)", "conjoining jamo pieces"),
)


def as_batch(text):
    """Flattens to a 1-D batch: a scalar string is a batch of one, a `[n, m]`
    array is n*m texts (row-major). A loaded SavedModel signature does not
    enforce its `[None]` input shape (TF Serving neither), so this makes the
    behaviour on other shapes defined instead of accidental."""
    return tf.reshape(text, [-1])


def sanitize_utf8(text):
    """Invalid UTF-8 sequences -> U+FFFD (tensorflow-text's normalisers would
    otherwise fail the whole request)."""
    return tf.strings.unicode_transcode(text, input_encoding="UTF-8", output_encoding="UTF-8",
                                        errors="replace", replacement_char=0xFFFD)


def tflite_tokenizer(tokenizer, vocabulary: Sequence[str]) -> FastWordpiece:
    """The TFLite-runnable tokenizer equal to keras-hub `tokenizer` (see module doc)."""
    lowercase = bool(getattr(tokenizer, "lowercase", False))
    strip_accents = bool(getattr(tokenizer, "strip_accents", lowercase))
    try:
        return FastWordpiece(vocabulary, lowercase, strip_accents)
    except ValueError as e:
        raise ValueError(f"{e} Export without the tokenizer (token ids in) instead.") from e


def _ragged_parts(ragged):
    values = tf.concat([tf.cast(ragged.flat_values, tf.int32), tf.zeros([1], tf.int32)], axis=0)
    splits = tf.cast(ragged.row_splits, tf.int32)
    starts = splits[:-1]
    lengths = splits[1:] - starts
    return values, starts, lengths


def _take(values, starts, offsets):
    """values[starts[b] + offsets[b, p]] with indices clipped into range."""
    index = tf.clip_by_value(starts[:, None] + offsets, 0, tf.shape(values)[0] - 1)
    return tf.gather(values, index)


def pack_single(ragged, sequence_length: int, special: SpecialTokens) -> dict:
    """`[CLS] a [SEP]` padded to `sequence_length`, truncating `a` at the end
    (like keras-hub's `MultiSegmentPacker`), with builtin TFLite ops only."""
    values, starts, lengths = _ragged_parts(ragged)
    n = tf.minimum(lengths, sequence_length - 2)[:, None]
    p = tf.range(sequence_length, dtype=tf.int32)[None, :]
    tokens = _take(values, starts, p - 1)
    ids = tf.where(p == 0, special.cls_id,
                   tf.where(p <= n, tokens, tf.where(p == n + 1, special.sep_id, special.pad_id)))
    mask = _indicator(n + 2 - p)  # p <= n + 1
    return {"token_ids": ids, "segment_ids": tf.zeros_like(ids), "padding_mask": mask}


def _indicator(x):
    """1 where the int tensor x >= 1, else 0, without a bool cast (the TFLite
    converter folds cast(bool) into ops that reject bool operands)."""
    return tf.clip_by_value(x, 0, 1)


def round_robin_lengths(len_a, len_b, budget: int):
    """Lengths kept by round-robin truncation of two segments to `budget`
    tokens (one token from each in turn; what keras-hub's
    `RoundRobinTrimmer` keeps)."""
    half = (budget + 1) // 2
    keep_a = tf.minimum(len_a, tf.maximum(half, budget - len_b))
    keep_b = tf.minimum(len_b, budget - keep_a)
    return keep_a, keep_b


def pack_pair(ragged_a, ragged_b, sequence_length: int, special: SpecialTokens) -> dict:
    """`[CLS] a [SEP] b [SEP]` (segment ids 0 then 1), round-robin truncation."""
    values_a, starts_a, len_a = _ragged_parts(ragged_a)
    values_b, starts_b, len_b = _ragged_parts(ragged_b)
    na, nb = round_robin_lengths(len_a, len_b, sequence_length - 3)
    na, nb = na[:, None], nb[:, None]
    p = tf.range(sequence_length, dtype=tf.int32)[None, :]
    tok_a = _take(values_a, starts_a, p - 1)
    tok_b = _take(values_b, starts_b, p - na - 2)
    end_b = na + nb + 2  # position of the final [SEP]
    ids = tf.where(
        p == 0, special.cls_id,
        tf.where(p <= na, tok_a,
                 tf.where(p == na + 1, special.sep_id,
                          tf.where(p < end_b, tok_b,
                                   tf.where(p == end_b, special.sep_id, special.pad_id)))))
    segments = _indicator(p - na - 1) * _indicator(end_b + 1 - p)  # na + 1 < p <= end_b
    mask = _indicator(end_b + 1 - p)  # p <= end_b
    return {"token_ids": ids, "segment_ids": segments, "padding_mask": mask}


def trim_to_longest(features: dict) -> dict:
    """Drops the padding columns no example in the batch uses (at least 1):
    attention is masked, so outputs are unchanged up to float rounding."""
    lengths = tf.reduce_sum(tf.cast(features["padding_mask"], tf.int32), axis=1)
    longest = tf.reduce_max(tf.concat([lengths, [1]], axis=0))  # empty batch: 1
    return {k: v[:, :longest] for k, v in features.items()}


def tflite_token_ids(tokenizer: FastWordpiece, texts, text_pairs, sequence_length: int) -> dict:
    """Convenience (eager TF): the ids the TFLite tokeniser packs, as numpy."""
    ragged = tokenizer(tf.constant(list(texts), tf.string))
    if text_pairs is None:
        out = pack_single(ragged, sequence_length, tokenizer.special)
    else:
        out = pack_pair(ragged, tokenizer(tf.constant(list(text_pairs), tf.string)),
                        sequence_length, tokenizer.special)
    return {k: np.asarray(v) for k, v in out.items()}
