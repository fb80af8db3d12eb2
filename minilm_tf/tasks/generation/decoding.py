"""Batched greedy and beam-search decoding, in-graph (tf.function / SavedModel).

Both decoders drive a model with the incremental interface of `Seq2SeqLM`:
`encode_source(source_ids, source_mask)` (once), `init_target_cache(n,
max_length)` and `decode_step(token, position, step, source_cache,
source_mask, target_cache) -> (logits, target_cache)` (one target token per
step, keys/values of earlier steps cached). Every tensor has a static shape
across steps (`tf.while_loop`), the loop stops when every sequence has ended.

Settings (`DecodingConfig`): `max_length` generated tokens (the end token
included), `min_length` tokens before the end token may be chosen,
`beam_size`, `length_penalty` (beam hypotheses are ranked by
`log p / length ** length_penalty`, Hugging Face's convention; 0 ranks by
log-probability alone) and `no_repeat_ngram_size` (no n-gram of the output
occurs twice; 0: off).
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

NEG_INF = -1e9


@dataclasses.dataclass(frozen=True)
class DecodingConfig:
    """How to decode; see the module docstring."""

    max_length: int = 32
    min_length: int = 0
    beam_size: int = 1
    length_penalty: float = 1.0
    no_repeat_ngram_size: int = 0

    def __post_init__(self):
        if self.max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {self.max_length}.")
        if not 0 <= self.min_length < self.max_length:
            raise ValueError(f"min_length must be in [0, max_length), got {self.min_length}.")
        if self.beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {self.beam_size}.")
        if self.no_repeat_ngram_size < 0:
            raise ValueError("no_repeat_ngram_size must be >= 0.")


def banned_ngram_tokens(history, step, n: int, vocabulary_size: int):
    """[N, V] bool: tokens that would repeat an n-gram of `history[:, :step]`.

    `history` [N, L] holds the generated tokens (positions >= step unused);
    the next token would be position `step`.
    """
    rows, length = tf.shape(history)[0], history.shape[1]
    windows = length - n + 1
    if windows <= 0:
        return tf.zeros([rows, vocabulary_size], tf.bool)
    starts = tf.range(windows)
    # The n-1 tokens that end at step - 1, and every earlier (n-1)-gram.
    prefix_index = tf.maximum(step - (n - 1) + tf.range(n - 1), 0)
    prefix = tf.gather(history, prefix_index, axis=1)  # [N, n-1]
    match = tf.ones([rows, windows], tf.bool)
    for o in range(n - 1):
        match &= history[:, o:o + windows] == prefix[:, o:o + 1]
    match &= (starts <= step - n)[None, :]  # the whole n-gram lies before `step`
    following = history[:, n - 1:n - 1 + windows]
    row_ids = tf.tile(tf.range(rows)[:, None], [1, windows])
    indices = tf.reshape(tf.stack([row_ids, following], axis=-1), [-1, 2])
    updates = tf.reshape(tf.cast(match, tf.int32), [-1])
    banned = tf.tensor_scatter_nd_max(tf.zeros([rows, vocabulary_size], tf.int32),
                                      indices, updates)
    return banned > 0


def _constrain(log_probs, history, step, config: DecodingConfig, end_id: int):
    """Applies min_length and no-repeat-n-gram to [N, V] log-probabilities."""
    vocabulary_size = log_probs.shape[-1] or tf.shape(log_probs)[-1]
    end = tf.one_hot(end_id, vocabulary_size, on_value=True, off_value=False)
    log_probs = tf.where(tf.logical_and(step < config.min_length, end)[None], NEG_INF, log_probs)
    if config.no_repeat_ngram_size:
        banned = banned_ngram_tokens(history, step, config.no_repeat_ngram_size,
                                     vocabulary_size)
        log_probs = tf.where(banned, NEG_INF, log_probs)
    return log_probs


def _source_lengths(source_mask):
    return tf.reduce_sum(tf.cast(source_mask, tf.int32), axis=1)


def greedy_decode(model, source_ids, source_mask, config: DecodingConfig, *,
                  start_id: int, end_id: int, pad_id: int):
    """Greedy decoding. Returns (token ids [B, max_length] padded with
    `pad_id` after the end token, lengths [B] (end token included), sum of
    log-probabilities [B])."""
    source_mask = tf.cast(source_mask, tf.int32)
    batch = tf.shape(source_ids)[0]
    max_length = config.max_length
    source_cache = model.encode_source(source_ids, source_mask)
    target_cache = model.init_target_cache(batch, max_length)
    lengths0 = _source_lengths(source_mask)

    def cond(step, token, out, finished, scores, cache):
        return tf.logical_and(step < max_length, tf.logical_not(tf.reduce_all(finished)))

    def body(step, token, out, finished, scores, cache):
        logits, cache = model.decode_step(token, lengths0 + step, step, source_cache,
                                          source_mask, cache)
        log_probs = _constrain(tf.nn.log_softmax(logits), out, step, config, end_id)
        best = tf.argmax(log_probs, axis=-1, output_type=tf.int32)
        best_lp = tf.reduce_max(log_probs, axis=-1)
        best = tf.where(finished, pad_id, best)
        scores += tf.where(finished, 0.0, best_lp)
        write = tf.one_hot(step, max_length, dtype=tf.int32)[None]
        out = out * (1 - write) + best[:, None] * write
        finished |= best == end_id
        return step + 1, best, out, finished, scores, cache

    out0 = tf.fill([batch, max_length], tf.constant(pad_id, tf.int32))
    state = (tf.constant(0), tf.fill([batch], tf.constant(start_id, tf.int32)), out0,
             tf.zeros([batch], tf.bool), tf.zeros([batch], tf.float32), target_cache)
    _, _, out, _, scores, _ = tf.while_loop(cond, body, state, maximum_iterations=max_length)
    return out, _output_lengths(out, end_id, pad_id), scores


def _output_lengths(out, end_id, pad_id):
    """Generated length of each row: up to and including its end token."""
    is_end = tf.cast(out == end_id, tf.int32)
    has_end = tf.reduce_any(out == end_id, axis=-1)
    first_end = tf.argmax(is_end, axis=-1, output_type=tf.int32) + 1
    non_pad = tf.reduce_sum(tf.cast(out != pad_id, tf.int32), axis=-1)
    return tf.where(has_end, first_end, non_pad)


def _length_normalised(scores, lengths, alpha: float):
    if alpha == 0:
        return scores
    return scores / tf.pow(tf.cast(tf.maximum(lengths, 1), tf.float32), alpha)


def beam_search(model, source_ids, source_mask, config: DecodingConfig, *,
                start_id: int, end_id: int, pad_id: int):
    """Beam search. Returns the best hypothesis of each example as
    (token ids [B, max_length], lengths [B], sum of log-probabilities [B]).

    K = `beam_size` hypotheses per example; each step extends each live one
    by every token and keeps the K best of the K * V candidates, ranked by
    length-normalised log-probability. A hypothesis that emitted the end
    token stays in the beam, unchanged (it competes with its final score).
    """
    k = config.beam_size
    max_length = config.max_length
    source_mask = tf.cast(source_mask, tf.int32)
    batch = tf.shape(source_ids)[0]
    n = batch * k
    # Each example's source, once per beam (rows b*K .. b*K + K - 1).
    source_mask_k = tf.repeat(source_mask, k, axis=0)
    source_cache = tf.nest.map_structure(lambda t: tf.repeat(t, k, axis=0),
                                         model.encode_source(source_ids, source_mask))
    target_cache = model.init_target_cache(n, max_length)
    lengths0 = _source_lengths(source_mask_k)

    def cond(step, token, out, finished, scores, lengths, cache):
        return tf.logical_and(step < max_length, tf.logical_not(tf.reduce_all(finished)))

    def body(step, token, out, finished, scores, lengths, cache):
        logits, cache = model.decode_step(token, lengths0 + step, step, source_cache,
                                          source_mask_k, cache)
        vocab = tf.shape(logits)[-1]
        log_probs = _constrain(tf.nn.log_softmax(logits), tf.reshape(out, [n, max_length]),
                               step, config, end_id)
        # A finished hypothesis continues only with padding, at no cost.
        pad_only = tf.where(tf.one_hot(pad_id, vocab, on_value=True, off_value=False),
                            0.0, NEG_INF)
        flat_finished = tf.reshape(finished, [n])
        log_probs = tf.where(flat_finished[:, None], pad_only[None], log_probs)
        candidates = scores[:, :, None] + tf.reshape(log_probs, [batch, k, vocab])
        cand_lengths = tf.where(finished, lengths, step + 1)[:, :, None]
        cand_lengths = tf.broadcast_to(cand_lengths, tf.shape(candidates))
        ranked = _length_normalised(candidates, cand_lengths, config.length_penalty)
        _, top = tf.math.top_k(tf.reshape(ranked, [batch, k * vocab]), k=k)
        beam = top // vocab
        new_token = top % vocab
        gather_rows = tf.reshape(beam + tf.range(batch)[:, None] * k, [n])
        scores = tf.gather(tf.reshape(candidates, [batch, k * vocab]), top, batch_dims=1)
        lengths = tf.gather(tf.reshape(cand_lengths, [batch, k * vocab]), top, batch_dims=1)
        was_finished = tf.gather(finished, beam, batch_dims=1)
        out = tf.gather(out, beam, batch_dims=1)
        write = tf.one_hot(step, max_length, dtype=tf.int32)[None, None]
        out = out * (1 - write) + new_token[:, :, None] * write
        finished = was_finished | (new_token == end_id)
        cache = tf.nest.map_structure(lambda t: tf.gather(t, gather_rows), cache)
        return step + 1, tf.reshape(new_token, [n]), out, finished, scores, lengths, cache

    # Only the first beam is live at the start (the others would duplicate it).
    scores0 = tf.tile(tf.concat([[0.0], tf.fill([k - 1], NEG_INF)], 0)[None], [batch, 1])
    state = (tf.constant(0), tf.fill([n], tf.constant(start_id, tf.int32)),
             tf.fill([batch, k, max_length], tf.constant(pad_id, tf.int32)),
             tf.zeros([batch, k], tf.bool), scores0, tf.zeros([batch, k], tf.int32),
             target_cache)
    _, _, out, _, scores, lengths, _ = tf.while_loop(cond, body, state,
                                                     maximum_iterations=max_length)
    best = tf.argmax(_length_normalised(scores, lengths, config.length_penalty), axis=-1,
                     output_type=tf.int32)
    out = tf.gather(out, best, batch_dims=1)
    return out, _output_lengths(out, end_id, pad_id), tf.gather(scores, best, batch_dims=1)


def decode(model, source_ids, source_mask, config: DecodingConfig, *, start_id: int,
           end_id: int, pad_id: int):
    """Greedy decoding when `beam_size` is 1, beam search otherwise."""
    fn = greedy_decode if config.beam_size == 1 else beam_search
    return fn(model, source_ids, source_mask, config, start_id=start_id, end_id=end_id,
              pad_id=pad_id)


def make_generate_fn(model, config: DecodingConfig, *, start_id: int, end_id: int,
                     pad_id: int, jit_compile: bool = False):
    """A `tf.function(source_ids, source_mask) -> (ids, lengths, scores)`."""

    def generate(source_ids, source_mask):
        return decode(model, source_ids, source_mask, config, start_id=start_id,
                      end_id=end_id, pad_id=pad_id)

    spec = tf.TensorSpec([None, None], tf.int32)
    return tf.function(generate, input_signature=[spec, spec], jit_compile=jit_compile)


@dataclasses.dataclass
class GenerationResult:
    """Generated texts and how fast they came."""

    texts: list
    generated_tokens: int  # end tokens included
    seconds: float  # decoding only (tokenisation and detokenisation excluded)
    compile_seconds: float  # the first batch (tracing) is timed separately

    @property
    def tokens_per_second(self) -> float:
        return self.generated_tokens / self.seconds if self.seconds > 0 else float("nan")


def generate_texts(model, packer, sources, config: DecodingConfig,
                   batch_size: int = 32, generate_fn=None) -> GenerationResult:
    """Decodes `sources` in batches with `packer`'s tokenizer; times decoding.

    The first batch also traces the function; it is decoded twice so the
    timing excludes tracing (its second run is the one counted).
    """
    import time

    import numpy as np

    fn = generate_fn or make_generate_fn(model, config, start_id=packer.start_id,
                                         end_id=packer.end_id, pad_id=packer.pad_id)
    texts, tokens, seconds, compile_seconds = [], 0, 0.0, 0.0
    for first in range(0, len(sources), batch_size):
        ids, mask, _ = packer.pack_sources(sources[first:first + batch_size])
        width = max(int(mask.sum(axis=1).max()), 1)  # trim padding columns
        ids, mask = tf.constant(ids[:, :width]), tf.constant(mask[:, :width])
        if first == 0:
            t0 = time.perf_counter()
            fn(ids, mask)[0].numpy()
            compile_seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        out, lengths, _ = fn(ids, mask)
        out = out.numpy()
        seconds += time.perf_counter() - t0
        tokens += int(np.sum(lengths.numpy()))
        texts += packer.ids_to_texts(out)
    return GenerationResult(texts, tokens, seconds, compile_seconds)
