"""Seq2seq generation: the UniLM mask, the model, the cache, decoding, metrics."""

import itertools
import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from minilm_tf.tasks.generation import decoding, metrics  # noqa: E402
from minilm_tf.tasks.generation.losses import SmoothedTokenCrossEntropy  # noqa: E402
from minilm_tf.tasks.generation.mask import (  # noqa: E402
    seq2seq_attention_mask,
    seq2seq_position_ids,
)
from minilm_tf.tasks.generation.model import IGNORE_LABEL, Seq2SeqLM  # noqa: E402

VOCAB = 40


def tiny_bert(seed=0, dropout=0.0, layers=2):
    keras.utils.set_random_seed(seed)
    return keras_hub.models.BertBackbone(
        vocabulary_size=VOCAB, num_layers=layers, num_heads=4, hidden_dim=32,
        intermediate_dim=64, max_sequence_length=48, dropout=dropout)


def tiny_roberta(seed=0):
    keras.utils.set_random_seed(seed)
    return keras_hub.models.RobertaBackbone(
        vocabulary_size=VOCAB, num_layers=2, num_heads=4, hidden_dim=32,
        intermediate_dim=64, max_sequence_length=48, dropout=0.0)


def batch(seed=0):
    """Two examples with source and target padding (lengths differ)."""
    rng = np.random.default_rng(seed)
    src = rng.integers(5, VOCAB, size=(2, 6)).astype(np.int32)
    tgt = rng.integers(5, VOCAB, size=(2, 5)).astype(np.int32)
    sm = np.array([[1] * 6, [1] * 4 + [0] * 2], np.int32)
    tm = np.array([[1] * 5, [1] * 3 + [0] * 2], np.int32)
    return {"source_ids": src * sm, "source_mask": sm, "target_ids": tgt * tm,
            "target_mask": tm}


# --- the mask -------------------------------------------------------------


def reference_mask(sm, tm):
    """The UniLM seq2seq mask, entry by entry from its definition."""
    b, s = sm.shape
    t = tm.shape[1]
    out = np.zeros([b, s + t, s + t], np.int32)
    for n in range(b):
        for i in range(s + t):
            for j in range(s + t):
                qi_real = sm[n, i] if i < s else tm[n, i - s]
                kj_real = sm[n, j] if j < s else tm[n, j - s]
                if not (qi_real and kj_real):
                    continue
                if j < s:  # every real source key
                    out[n, i, j] = 1
                elif i >= s and j <= i:  # target keys at or before the query
                    out[n, i, j] = 1
    return out


def test_mask_matches_hand_built_matrix():
    sm = np.array([[1, 1, 1, 0], [1, 1, 0, 0]], np.int32)
    tm = np.array([[1, 1, 0], [1, 1, 1]], np.int32)
    got = seq2seq_attention_mask(sm, tm).numpy()
    np.testing.assert_array_equal(got, reference_mask(sm, tm))
    # One matrix written out by hand: example 0 (3 source, 2 target tokens).
    expected = np.array([
        [1, 1, 1, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 0],  # source padding
        [1, 1, 1, 0, 1, 0, 0],
        [1, 1, 1, 0, 1, 1, 0],
        [0, 0, 0, 0, 0, 0, 0],  # target padding
    ])
    np.testing.assert_array_equal(got[0], expected)


def test_position_ids_continue_after_the_real_source():
    sm = np.array([[1, 1, 1, 0], [1, 1, 0, 0]], np.int32)
    got = seq2seq_position_ids(sm, 3).numpy()
    np.testing.assert_array_equal(got, [[0, 1, 2, 3, 3, 4, 5], [0, 1, 2, 3, 2, 3, 4]])


# --- the model ------------------------------------------------------------


@pytest.fixture(scope="module")
def bert_model():
    return Seq2SeqLM(tiny_bert(), hidden_act="gelu")


def test_target_logits_are_causal(bert_model):
    x = batch()
    base = bert_model(x).numpy()
    later = dict(x, target_ids=x["target_ids"].copy())
    later["target_ids"][0, 3] = (later["target_ids"][0, 3] + 1 - 5) % (VOCAB - 5) + 5
    changed = bert_model(later).numpy()
    # Positions before the changed one cannot see it; it and later ones can.
    np.testing.assert_allclose(changed[0, :3], base[0, :3], atol=1e-5)
    assert np.abs(changed[0, 3:] - base[0, 3:]).max() > 1e-3
    np.testing.assert_allclose(changed[1], base[1], atol=1e-5)  # other example untouched
    earlier = dict(x, target_ids=x["target_ids"].copy())
    earlier["target_ids"][0, 1] = (earlier["target_ids"][0, 1] + 1 - 5) % (VOCAB - 5) + 5
    moved = bert_model(earlier).numpy()
    np.testing.assert_allclose(moved[0, 0], base[0, 0], atol=1e-5)
    assert np.abs(moved[0, 1:] - base[0, 1:]).max(axis=-1).min() > 1e-4


def test_source_never_sees_the_target(bert_model):
    x = batch()
    other = dict(x, target_ids=np.where(x["target_mask"] > 0, 7, 0).astype(np.int32))
    a = bert_model.sequence_output(x).numpy()
    b = bert_model.sequence_output(other).numpy()
    np.testing.assert_allclose(a[:, :6], b[:, :6], atol=1e-5)
    assert np.abs(a[0, 6:] - b[0, 6:]).max() > 1e-3


def test_padding_does_not_leak(bert_model):
    """Changing padded tokens (source or target) changes no real position."""
    x = batch()
    noisy = {k: v.copy() for k, v in x.items()}
    noisy["source_ids"][1, 4:] = 9
    noisy["target_ids"][1, 3:] = 11
    a, b = bert_model(x).numpy(), bert_model(noisy).numpy()
    np.testing.assert_allclose(a[1, :3], b[1, :3], atol=1e-5)
    assert not np.isnan(a).any()


@pytest.mark.parametrize("make", [tiny_bert, tiny_roberta], ids=["bert", "roberta"])
def test_embeddings_and_layers_are_the_backbones_own(make):
    """With an all-source input, the model's path equals the backbone's output."""
    backbone = make()
    model = Seq2SeqLM(backbone, hidden_act="gelu_approximate")
    ids = np.array([[2, 7, 8, 9, 3, 0]], np.int32)
    mask = (ids > 0).astype(np.int32)
    inputs = {"token_ids": ids, "padding_mask": mask}
    if "segment_ids" in [i.name for i in backbone.inputs]:
        inputs["segment_ids"] = np.zeros_like(ids)
    expected = backbone(inputs)
    expected = expected["sequence_output"] if isinstance(expected, dict) else expected
    positions = np.arange(6)[None].astype(np.int32)
    x = model.embed(ids, positions, np.zeros_like(ids))
    pair = mask[:, None, :] * mask[:, :, None]
    for block in backbone.transformer_layers:
        x = block(x, attention_mask=pair)
    np.testing.assert_allclose(x.numpy()[0, :5], np.asarray(expected)[0, :5], atol=1e-5)


@pytest.mark.parametrize("make", [tiny_bert, tiny_roberta], ids=["bert", "roberta"])
def test_cached_decoding_equals_full_forward(make):
    model = Seq2SeqLM(make(seed=1), hidden_act="gelu")
    x = batch(seed=3)
    full = model(x).numpy()
    source_cache = model.encode_source(x["source_ids"], x["source_mask"])
    cache = model.init_target_cache(2, 5)
    lengths = x["source_mask"].sum(1)
    for j in range(5):
        logits, cache = model.decode_step(tf.constant(x["target_ids"][:, j]),
                                          tf.constant(lengths + j), tf.constant(j),
                                          source_cache, x["source_mask"], cache)
        real = x["target_mask"][:, j] > 0
        np.testing.assert_allclose(logits.numpy()[real], full[real, j], atol=1e-4)


def test_save_and_load_round_trip(bert_model, tmp_path):
    x = batch()
    path = str(tmp_path / "m.keras")
    bert_model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, Seq2SeqLM) and loaded.hidden_act == "gelu"
    np.testing.assert_allclose(loaded(x).numpy(), bert_model(x).numpy(), atol=1e-6)
    config = decoding.DecodingConfig(max_length=6, beam_size=2)
    a = decoding.decode(bert_model, x["source_ids"], x["source_mask"], config,
                        start_id=2, end_id=3, pad_id=0)[0]
    b = decoding.decode(loaded, x["source_ids"], x["source_mask"], config,
                        start_id=2, end_id=3, pad_id=0)[0]
    np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize("make", [tiny_bert, tiny_roberta])
def test_every_trainable_weight_gets_a_gradient(make):
    """The seq2seq loss reaches every trainable weight; BERT's pooler, off the
    generation path, is frozen rather than left without a gradient."""
    model = Seq2SeqLM(make(), hidden_act="gelu")
    x = batch()
    labels = np.where(x["target_mask"] > 0, x["target_ids"], IGNORE_LABEL)
    with tf.GradientTape() as tape:
        loss = SmoothedTokenCrossEntropy(0.1)(labels, model(x))
    grads = tape.gradient(loss, model.trainable_weights)
    missing = [w.path for w, g in zip(model.trainable_weights, grads) if g is None]
    assert not missing, missing
    frozen = [w.path for w in model.non_trainable_weights]
    assert all("pooled_dense" in p for p in frozen)
    assert bool(frozen) == (make is tiny_bert)


def test_unsupported_backbone_is_refused():
    inputs = keras.Input((None,), dtype="int32")
    plain = keras.Model(inputs, keras.layers.Embedding(10, 4)(inputs))
    with pytest.raises(ValueError, match="not supported for generation"):
        Seq2SeqLM(plain)


# --- the loss -------------------------------------------------------------


def test_label_smoothed_loss_matches_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 3, 7)).astype(np.float32)
    labels = np.array([[1, 4, IGNORE_LABEL], [6, IGNORE_LABEL, IGNORE_LABEL]], np.int32)
    e = 0.1
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    per_example = []
    for b in range(2):
        terms = []
        for t in range(3):
            if labels[b, t] == IGNORE_LABEL:
                continue
            q = np.full(7, e / 7)
            q[labels[b, t]] += 1 - e
            terms.append(-(q * logp[b, t]).sum())
        per_example.append(np.mean(terms))
    got = SmoothedTokenCrossEntropy(e)(labels, logits)
    np.testing.assert_allclose(float(got), np.mean(per_example), rtol=1e-5)


# --- decoding -------------------------------------------------------------


class MarkovToy:
    """A toy 'model' whose next-token distribution depends only on the
    previous token (a fixed table), with the Seq2SeqLM decoding interface."""

    def __init__(self, table):
        self.log_table = tf.constant(np.log(table), tf.float32)

    def encode_source(self, source_ids, source_mask):
        return ()

    def init_target_cache(self, batch, max_length):
        return ()

    def decode_step(self, token, position, step, source_cache, source_mask, cache):
        return tf.gather(self.log_table, token), cache


# tokens: 0 pad, 1 start, 2 end, 3 "a", 4 "b"
TOY = np.array([
    [1e-9, 1e-9, 1e-9, 1e-9, 1e-9],  # pad (never expanded)
    [1e-9, 1e-9, 1e-9, 0.6, 0.4],  # start: a is likelier than b...
    [1e-9, 1e-9, 1.0, 1e-9, 1e-9],
    [1e-9, 1e-9, 0.35, 0.33, 0.32],  # ...but a is followed by a flat spread
    [1e-9, 1e-9, 0.95, 0.03, 0.02],  # while b -> end is almost certain
]) + 0.0
TOY = TOY / TOY.sum(axis=1, keepdims=True)


def brute_force_best(table, max_length, alpha):
    """Highest length-normalised log-probability over every sequence."""
    best, best_seq = -np.inf, None
    for length in range(1, max_length + 1):
        for body in itertools.product([3, 4], repeat=length - 1):
            seq = [*body, 2]
            prev, lp = 1, 0.0
            for tok in seq:
                lp += np.log(table[prev, tok])
                prev = tok
            score = lp / (length ** alpha if alpha else 1)
            if score > best:
                best, best_seq = score, seq
    for body in itertools.product([3, 4], repeat=max_length):  # never ending
        prev, lp = 1, 0.0
        for tok in body:
            lp += np.log(table[prev, tok])
            prev = tok
        if lp / (max_length ** alpha if alpha else 1) > best:
            best, best_seq = lp / (max_length ** alpha if alpha else 1), list(body)
    return best_seq, best


def _toy_decode(config):
    src = tf.ones([1, 1], tf.int32)
    out, lengths, scores = decoding.decode(MarkovToy(TOY), src, src, config, start_id=1,
                                           end_id=2, pad_id=0)
    return out.numpy()[0, :lengths.numpy()[0]].tolist(), float(scores.numpy()[0])


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_beam_search_finds_what_greedy_misses(alpha):
    greedy, greedy_lp = _toy_decode(decoding.DecodingConfig(max_length=4))
    beam, beam_lp = _toy_decode(decoding.DecodingConfig(max_length=4, beam_size=3,
                                                        length_penalty=alpha))
    best_seq, _ = brute_force_best(TOY, 4, alpha)
    assert greedy[0] == 3  # greedy commits to "a"
    assert beam == best_seq and beam[0] == 4
    assert beam_lp > greedy_lp


def test_beam_size_one_equals_greedy(bert_model):
    x = batch(seed=5)
    for ngram in (0, 2):
        g = decoding.DecodingConfig(max_length=7, no_repeat_ngram_size=ngram, min_length=2)
        b = decoding.DecodingConfig(max_length=7, no_repeat_ngram_size=ngram, min_length=2,
                                    beam_size=1)
        greedy = decoding.greedy_decode(bert_model, x["source_ids"], x["source_mask"], g,
                                        start_id=2, end_id=3, pad_id=0)
        beam = decoding.beam_search(bert_model, x["source_ids"], x["source_mask"], b,
                                    start_id=2, end_id=3, pad_id=0)
        for a, c in zip(greedy, beam):
            np.testing.assert_allclose(a.numpy(), c.numpy(), atol=1e-5)


def test_greedy_equals_step_by_step_argmax_of_full_forward(bert_model):
    """Greedy (cached) against argmax over the uncached model, recomputed."""
    x = batch(seed=2)
    config = decoding.DecodingConfig(max_length=5)
    out = decoding.greedy_decode(bert_model, x["source_ids"], x["source_mask"], config,
                                 start_id=2, end_id=3, pad_id=0)[0].numpy()
    for row in range(2):
        tokens = [2]
        for _ in range(5):
            inputs = {"source_ids": x["source_ids"][row:row + 1],
                      "source_mask": x["source_mask"][row:row + 1],
                      "target_ids": np.array([tokens], np.int32),
                      "target_mask": np.ones([1, len(tokens)], np.int32)}
            nxt = int(np.argmax(bert_model(inputs).numpy()[0, -1]))
            tokens.append(nxt)
            if nxt == 3:
                break
        np.testing.assert_array_equal(out[row, :len(tokens) - 1], tokens[1:])


def python_banned(history, n):
    banned = set()
    if len(history) < n - 1 or n < 1:
        return banned
    prefix = tuple(history[len(history) - n + 1:]) if n > 1 else ()
    for p in range(len(history) - n + 1):
        if tuple(history[p:p + n - 1]) == prefix:
            banned.add(history[p + n - 1])
    return banned


@pytest.mark.parametrize("n", [1, 2, 3])
def test_banned_ngrams_match_python(n):
    rng = np.random.default_rng(n)
    hist = rng.integers(0, 4, size=(6, 10)).astype(np.int32)
    for step in range(11):
        got = decoding.banned_ngram_tokens(tf.constant(hist), tf.constant(step), n, 4).numpy()
        for row in range(6):
            expected = python_banned(hist[row, :step].tolist(), n)
            assert set(np.flatnonzero(got[row]).tolist()) == expected, (row, step)


def test_no_repeat_ngram_and_min_length_hold():
    # A toy that always prefers "a" then end: without the constraints: "a a a ...".
    table = np.full((5, 5), 1e-3)
    table[:, 3] = 0.9
    table[:, 2] = 0.05
    table = table / table.sum(1, keepdims=True)
    src = tf.ones([1, 1], tf.int32)
    config = decoding.DecodingConfig(max_length=6, no_repeat_ngram_size=1, min_length=3)
    out, lengths, _ = decoding.greedy_decode(MarkovToy(table), src, src, config, start_id=1,
                                             end_id=2, pad_id=0)
    seq = out.numpy()[0, :lengths.numpy()[0]].tolist()
    body = [t for t in seq if t != 2]
    assert len(body) == len(set(body))  # no unigram twice
    assert seq.index(2) >= 3 if 2 in seq else True
    assert len(body) >= 3


def test_decoding_config_refuses_bad_values():
    with pytest.raises(ValueError, match="min_length"):
        decoding.DecodingConfig(max_length=4, min_length=4)
    with pytest.raises(ValueError, match="beam_size"):
        decoding.DecodingConfig(beam_size=0)


# --- metrics --------------------------------------------------------------


def test_rouge_matches_the_rouge_score_readme():
    # rouge-score's README: RougeScorer(['rouge1', 'rougeL'], use_stemmer=True)
    # .score('The quick brown fox jumps over the lazy dog',
    #        'The quick brown dog jumps on the log.')
    got = metrics.rouge(["The quick brown dog jumps on the log."],
                        ["The quick brown fox jumps over the lazy dog"])
    assert got["rouge1"] == pytest.approx(70.588, abs=1e-3)
    assert got["rougeL"] == pytest.approx(58.824, abs=1e-3)
    # ROUGE-2 by hand: 2 of 7 predicted and of 8 reference bigrams match
    # ("the quick", "quick brown").
    p, r = 2 / 7, 2 / 8
    assert got["rouge2"] == pytest.approx(100 * 2 * p * r / (p + r), abs=1e-6)


def test_bleu_matches_a_hand_computed_value():
    # 7 predicted tokens, 6 reference tokens: clipped n-gram precisions
    # 6/7, 5/6, 4/5, 3/4, brevity penalty 1 (prediction longer).
    got = metrics.bleu(["the cat sat on the mat today"], ["the cat sat on the mat"])
    expected = 100 * math.exp(np.mean(np.log([6 / 7, 5 / 6, 4 / 5, 3 / 4])))
    assert got == pytest.approx(expected, abs=1e-6)
    assert metrics.bleu(["a b c d e"], ["a b c d e"]) == pytest.approx(100.0)


def test_metrics_refuse_mismatched_lists():
    with pytest.raises(ValueError, match="references"):
        metrics.generation_metrics(["a"], ["a", "b"])
