"""In-graph WordPiece tokenisation and packing of token streams into sequences.

All functions here are traced into the `tf.data` graph (no Python per
example). A document becomes a flat stream of token ids plus a flag marking the
first token of each sentence; streams are cut into fixed-size chunks and each
chunk becomes `[CLS] chunk [SEP]` or, for sentence pairs,
`[CLS] A [SEP] B [SEP]` with A/B split at the sentence start nearest the middle.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence

import keras_hub
import tensorflow as tf
import tensorflow_text as tf_text

TOKENIZATIONS = ("keras_hub", "hf")
# Sentence end: ., ! or ? (then optional closing quotes/brackets) before whitespace.
_SENTENCE_END = r"""([.!?]+["'”’)\]]*)\s+"""

WordpieceFn = Callable[[tf.Tensor], tf.RaggedTensor]


@dataclasses.dataclass(frozen=True)
class SpecialTokens:
    """Vocabulary ids of the special tokens used when packing."""

    pad_id: int
    cls_id: int
    sep_id: int

    @classmethod
    def from_vocabulary(cls, vocabulary: Sequence[str]) -> SpecialTokens:
        """Looks up [PAD], [CLS] and [SEP]; raises ValueError if one is missing."""
        index = {token: i for i, token in reversed(list(enumerate(vocabulary)))}
        missing = [t for t in ("[PAD]", "[CLS]", "[SEP]", "[UNK]") if t not in index]
        if missing:
            raise ValueError(f"Vocabulary lacks special tokens {missing}")
        return cls(pad_id=index["[PAD]"], cls_id=index["[CLS]"], sep_id=index["[SEP]"])

    @classmethod
    def from_tokenizer(cls, tokenizer) -> SpecialTokens:
        """Start/end/pad ids of any keras-hub tokenizer (BERT, RoBERTa, XLM-R...)."""
        ids = {
            name: getattr(tokenizer, f"{name}_token_id", None)
            for name in ("start", "end", "pad")
        }
        missing = [name for name, value in ids.items() if value is None]
        if missing:
            raise ValueError(
                f"{type(tokenizer).__name__} has no {', '.join(missing)} token; "
                "packing needs start, end and padding tokens."
            )
        return cls(pad_id=ids["pad"], cls_id=ids["start"], sep_id=ids["end"])


class FastWordpiece:
    """tensorflow-text's `FastBertNormalizer` + `FastWordpieceTokenizer`:
    1-D strings -> int32 ragged ids `[n, None]`.

    The original BERT / Hugging Face BasicTokenizer pipeline (Unicode
    whitespace, accents stripped when lowercasing); it uses no op beyond
    those two, so TFLite runs it too (`minilm_tf.export.tflite`).
    """

    def __init__(self, vocabulary: Sequence[str], lowercase: bool,
                 strip_accents: bool | None = None):
        strip_accents = lowercase if strip_accents is None else strip_accents
        if bool(lowercase) != bool(strip_accents):
            raise ValueError(
                "tf_text.FastBertNormalizer either lowercases and strips accents, or does "
                f"neither; got lowercase={lowercase}, strip_accents={strip_accents}.")
        self.vocabulary = list(vocabulary)
        self.special = SpecialTokens.from_vocabulary(self.vocabulary)
        self.normalizer = tf_text.FastBertNormalizer(lower_case_nfd_strip_accents=bool(lowercase))
        self.wordpiece = tf_text.FastWordpieceTokenizer(
            vocab=self.vocabulary,
            suffix_indicator="##",
            unknown_token="[UNK]",
            no_pretokenization=False,
            support_detokenization=False,
            token_out_type=tf.int32,
        )

    def __call__(self, texts: tf.Tensor) -> tf.RaggedTensor:
        return self.wordpiece.tokenize(self.normalizer.normalize(texts))


def make_wordpiece_fn(
    vocabulary: Sequence[str],
    *,
    lowercase: bool,
    tokenization: str = "keras_hub",
    strip_accents: bool | None = None,
) -> WordpieceFn:
    """Returns a traceable function: 1-D strings -> int32 ragged ids `[n, None]`.

    Args:
      vocabulary: WordPiece vocabulary (suffix indicator "##", "[UNK]").
      lowercase: the teacher's casing (True for uncased models).
      tokenization: "keras_hub" reproduces `keras_hub.models.BertTokenizer`
        exactly (it is that layer, on its tensorflow-text path), with
        `strip_accents` as given (default: the BERT convention, strip when
        lowercasing, which is what `minilm_tf.load_teacher` sets up for
        uncased checkpoints); only ASCII whitespace separates words. "hf" reproduces the original BERT / Hugging Face
        BasicTokenizer (accents stripped when lowercasing, Unicode whitespace)
        via `tf_text.FastBertNormalizer` + `FastWordpieceTokenizer`; it still
        differs from Hugging Face on "ß" (case-folded to "ss") and on control
        characters (treated as spaces instead of removed).
    """
    if tokenization not in TOKENIZATIONS:
        raise ValueError(f"tokenization must be one of {TOKENIZATIONS}, got {tokenization!r}")
    strip_accents = lowercase if strip_accents is None else strip_accents
    return _cached_wordpiece_fn(tuple(vocabulary), lowercase, tokenization, strip_accents)


@functools.lru_cache(maxsize=4)
def _cached_wordpiece_fn(
    vocabulary: tuple[str, ...], lowercase: bool, tokenization: str, strip_accents: bool
) -> WordpieceFn:
    """Builds the tokenizer once per vocabulary (building takes ~0.3 s)."""
    vocabulary = list(vocabulary)
    if tokenization == "keras_hub":
        tokenizer = keras_hub.models.BertTokenizer(
            vocabulary=vocabulary, lowercase=lowercase, strip_accents=strip_accents, dtype="int32"
        )
        return lambda texts: tf.cast(tokenizer(texts), tf.int32)
    return FastWordpiece(vocabulary, lowercase, strip_accents)


def tokenize_batches(tokenizer, texts: Sequence[str], batch_size: int = 512):
    """Yields the token ids of `texts` (no special tokens), `batch_size` texts
    at a time, as int32 RaggedTensors in order.

    keras-hub tokenizers called eagerly run a pure-Python path (about 8x
    slower for WordPiece over a corpus); inside `tf.data` they run their
    TensorFlow ops, which is what this does.
    """
    texts = list(texts)
    if not texts:
        return
    dataset = tf.data.Dataset.from_tensor_slices(tf.constant(texts, tf.string))
    dataset = dataset.batch(batch_size).map(lambda x: tf.cast(tokenizer(x), tf.int32))
    yield from dataset


def split_sentences(document: tf.Tensor) -> tf.Tensor:
    """Splits a scalar string at sentence ends and newlines (1-D strings).

    Cuts only replace whitespace, which WordPiece treats as a word boundary
    anyway, so tokenising the pieces gives the tokens of the whole document.
    Each piece after a sentence end keeps one leading space, so byte-level BPE
    tokenizers (RoBERTa) still see its first word as space-prefixed.
    """
    marked = tf.strings.regex_replace(document, _SENTENCE_END, "\\1\n ")
    return tf.strings.split(marked, "\n")


def document_stream(document: tf.Tensor, wordpiece_fn: WordpieceFn) -> tuple[tf.Tensor, tf.Tensor]:
    """Tokenises one document into `(ids [n] int32, sentence_starts [n] bool)`.

    Invalid UTF-8 (possible in TFDS text) is replaced by U+FFFD first.
    """
    document = tf.strings.unicode_transcode(document, "UTF-8", "UTF-8", errors="replace")
    ids = wordpiece_fn(split_sentences(document))
    positions = tf.ragged.range(ids.row_lengths())
    return ids.flat_values, tf.equal(positions.flat_values, 0)


def pack_single(ids: tf.Tensor, special: SpecialTokens, seq_length: int) -> dict[str, tf.Tensor]:
    """Packs a chunk of at most `seq_length - 2` ids as `[CLS] ids [SEP]`."""
    tokens = tf.concat([[special.cls_id], ids, [special.sep_id]], axis=0)
    return _pad_features(tokens, tf.zeros_like(tokens), special, seq_length)


def pack_pair(
    ids: tf.Tensor, sentence_starts: tf.Tensor, special: SpecialTokens, seq_length: int
) -> dict[str, tf.Tensor]:
    """Packs a chunk of 2..`seq_length - 3` ids as `[CLS] A [SEP] B [SEP]`.

    Segment ids are 0 for `[CLS] A [SEP]` and 1 for `B [SEP]`.
    """
    length = tf.shape(ids)[0]
    split = _pair_split_point(sentence_starts, length)
    cls, sep = [special.cls_id], [special.sep_id]
    tokens = tf.concat([cls, ids[:split], sep, ids[split:], sep], axis=0)
    segments = tf.concat(
        [tf.zeros([split + 2], tf.int32), tf.ones([length - split + 1], tf.int32)], axis=0
    )
    return _pad_features(tokens, segments, special, seq_length)


def _pair_split_point(sentence_starts: tf.Tensor, length: tf.Tensor) -> tf.Tensor:
    """Sentence start in [1, length) nearest the middle, else `length // 2`."""
    positions = tf.range(length)
    candidates = sentence_starts & (positions > 0)
    distance = tf.where(candidates, tf.abs(2 * positions - length), 2 * length + 1)
    nearest = tf.argmin(distance, output_type=tf.int32)
    return tf.where(tf.reduce_any(candidates), nearest, length // 2)


def _pad_features(
    tokens: tf.Tensor, segments: tf.Tensor, special: SpecialTokens, seq_length: int
) -> dict[str, tf.Tensor]:
    """Right-pads to `seq_length` and builds the encoder feature dict."""
    padding = [[0, seq_length - tf.shape(tokens)[0]]]
    features = {
        "token_ids": tf.pad(tokens, padding, constant_values=special.pad_id),
        "segment_ids": tf.pad(segments, padding),
        "padding_mask": tf.pad(tf.ones_like(tokens), padding),
    }
    return {name: tf.ensure_shape(value, [seq_length]) for name, value in features.items()}
