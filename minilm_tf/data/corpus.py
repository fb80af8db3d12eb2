"""Pre-training corpus pipeline: raw text -> packed, batched encoder inputs.

Reading happens on the host (`read_text_sources`, see `text_sources`);
tokenisation, packing, shuffling and batching run inside the `tf.data` graph
(`build_pretraining_dataset`, see `packing`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import tensorflow as tf

from minilm_tf.data.packing import (
    TOKENIZATIONS,
    SpecialTokens,
    document_stream,
    make_wordpiece_fn,
    pack_pair,
    pack_single,
    tokenize_batches,
)
from minilm_tf.data.text_sources import (
    CorpusStats,
    builtin_corpus,
    load_tfds_texts,
    read_text_sources,
    split_heldout,
)

__all__ = [
    "TOKENIZATIONS",
    "CorpusStats",
    "build_pretraining_dataset",
    "builtin_corpus",
    "count_tokens",
    "load_tfds_texts",
    "padding_fraction",
    "read_text_sources",
    "split_heldout",
]


def build_pretraining_dataset(
    texts: Sequence[str] | tf.data.Dataset,
    *,
    tokenizer=None,
    vocabulary: Sequence[str] | None = None,
    lowercase: bool = True,
    seq_length: int,
    batch_size: int,
    seed: int,
    shuffle_buffer: int = 10000,
    sentence_pairs: bool = False,
    repeat: bool = True,
    drop_remainder: bool = True,
    input_context: tf.distribute.InputContext | None = None,
    tokenization: str = "keras_hub",
    strip_accents: bool | None = None,
) -> tf.data.Dataset:
    """Builds batches of packed sequences for a BERT-style encoder.

    Documents are shuffled, tokenised, concatenated into one token stream
    (long documents spill over several sequences, short ones share one) and
    cut into `[CLS] ... [SEP]` sequences, so only a final remainder is padded.

    Args:
      texts: documents, as a list of strings or a dataset of scalar strings.
      tokenizer: the teacher's keras-hub tokenizer (any architecture: BERT
        WordPiece, RoBERTa BPE, XLM-R SentencePiece); its start/end/pad
        tokens frame the sequences. Alternatively give `vocabulary`.
      vocabulary: a WordPiece vocabulary (used when `tokenizer` is None).
      lowercase: casing for `vocabulary`.
      seq_length: tokens per sequence, including special tokens.
      batch_size: global batch size (divided per replica with `input_context`).
      seed: seed of the document and sequence shuffles.
      shuffle_buffer: buffer size of both shuffles; <= 1 disables shuffling.
      sentence_pairs: emit `[CLS] A [SEP] B [SEP]` with segment ids 0/1.
      repeat: repeat the documents forever (reshuffled every epoch).
      drop_remainder: drop a final partial batch (static batch dimension).
      input_context: shards documents per input pipeline and sets the
        per-replica batch size.
      tokenization: "keras_hub" or "hf"; see `packing.make_wordpiece_fn`.
      strip_accents: strip accents (keras_hub mode); defaults to `lowercase`,
        the BERT convention. Pass the teacher tokenizer's `strip_accents`.

    Returns:
      A dataset of dicts of int32 `[batch, seq_length]` tensors: "token_ids",
      "segment_ids" and "padding_mask" (1 on real tokens incl. [CLS]/[SEP]).
    """
    chunk_length = seq_length - (3 if sentence_pairs else 2)
    if chunk_length < (2 if sentence_pairs else 1):
        raise ValueError(f"seq_length={seq_length} leaves no room for text")
    if tokenizer is not None and tokenization == "keras_hub":
        special = SpecialTokens.from_tokenizer(tokenizer)
        wordpiece_fn = lambda texts: tf.cast(tokenizer(texts), tf.int32)  # noqa: E731
    else:
        if tokenizer is not None:
            vocabulary, lowercase = tokenizer.get_vocabulary(), tokenizer.lowercase
        if vocabulary is None:
            raise ValueError("Pass the teacher's `tokenizer` or a WordPiece `vocabulary`.")
        special = SpecialTokens.from_vocabulary(vocabulary)
        wordpiece_fn = make_wordpiece_fn(
            vocabulary, lowercase=lowercase, tokenization=tokenization, strip_accents=strip_accents
        )

    dataset = _as_dataset(texts)
    if input_context is not None:
        dataset = dataset.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
        batch_size = input_context.get_per_replica_batch_size(batch_size)
    if shuffle_buffer > 1:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    dataset = dataset.map(
        lambda doc: document_stream(doc, wordpiece_fn), num_parallel_calls=tf.data.AUTOTUNE
    )
    dataset = dataset.filter(lambda ids, _: tf.size(ids) > 0)
    dataset = _pack(dataset.rebatch(chunk_length), special, seq_length, sentence_pairs)
    if shuffle_buffer > 1:
        # Mixes the consecutive chunks of long documents across batches.
        dataset = dataset.shuffle(shuffle_buffer, seed=seed + 1, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    options = tf.data.Options()
    options.deterministic = True
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)


def _pack(
    chunks: tf.data.Dataset, special: SpecialTokens, seq_length: int, sentence_pairs: bool
) -> tf.data.Dataset:
    """Maps `(ids, sentence_starts)` chunks to padded feature dicts."""
    if sentence_pairs:
        # A pair needs a token on each side; only a final remainder can be shorter.
        pack = functools.partial(pack_pair, special=special, seq_length=seq_length)
        chunks = chunks.filter(lambda ids, _: tf.size(ids) >= 2)
        return chunks.map(pack, num_parallel_calls=tf.data.AUTOTUNE)
    return chunks.map(
        lambda ids, _: pack_single(ids, special, seq_length), num_parallel_calls=tf.data.AUTOTUNE
    )


def _as_dataset(texts: Sequence[str] | tf.data.Dataset) -> tf.data.Dataset:
    """Wraps a list of strings as a dataset; datasets pass through."""
    if isinstance(texts, tf.data.Dataset):
        return texts
    texts = list(texts)
    if not texts:
        raise ValueError("No texts to build a pre-training dataset from")
    return tf.data.Dataset.from_tensor_slices(tf.constant(texts, tf.string))


def count_tokens(texts: Sequence[str], tokenizer, batch_size: int = 512) -> int:
    """Tokens of `texts` under a keras-hub tokenizer (special tokens excluded)."""
    return sum(int(tf.reduce_sum(batch.row_lengths()))
               for batch in tokenize_batches(tokenizer, texts, batch_size))


def padding_fraction(dataset: tf.data.Dataset, num_batches: int) -> float:
    """Fraction of [PAD] positions over the first `num_batches` batches."""
    real = total = 0
    for batch in dataset.take(num_batches):
        mask = batch["padding_mask"]
        real += int(tf.reduce_sum(mask))
        total += int(tf.size(mask))
    if total == 0:
        raise ValueError("The dataset yielded no batches")
    return 1.0 - real / total
