"""TFLite: the in-model tokenizer's ids equal keras-hub's, pair packing,
float32 within 1e-4 of Keras, dynamic-range within its documented tolerance,
bad input on the LiteRT interpreter."""

import numpy as np
import pytest
import keras_hub  # noqa: F401
import tensorflow_text  # noqa: F401
import ai_edge_litert  # noqa: F401

from minilm_tf.export import data as export_data  # noqa: E402
from minilm_tf.export import source as src  # noqa: E402
import export_fixtures  # noqa: E402
from minilm_tf.export import tflite as tl  # noqa: E402
from minilm_tf.data.packing import FastWordpiece
from minilm_tf.export import tokenization  # noqa: E402

# Documented in docs/export.md: dynamic-range int8 vs float32 Keras.
DYNAMIC_MAX_REL_DIFF = 0.05  # max |diff| / max |logit|
DYNAMIC_MIN_AGREEMENT = 0.9

VARIED = list(export_data.EDGE_CASE_TEXTS) + [
    "Crème brûlée à la française: déjà vu!",
    "Ça va? Ñandú, façade, jalapeño, smörgåsbord, Øresund, Łódź, İstanbul.",
    "東京タワーは高い。北京欢迎你！",
    "emoji only 🤖🚀✨",
    "antidisestablishmentarianism " * 3,
    "a" * 99, "b" * 100, "c" * 101,  # around FastWordpiece's 100-byte word limit
    "UPPER lower MiXeD 123 4.56 $7,890 #hashtag @user",
    "tabs\tand\nnewlines\r\nand  double  spaces",
    "quotes ‘single’ “double” «guillemets» — dashes – ...",
]


@pytest.fixture(scope="module")
def tokenizer():
    return export_fixtures.real_vocab_tokenizer()


@pytest.fixture(scope="module")
def classifier(tmp_path_factory, tokenizer):
    workdir = export_fixtures.make_finetune_workdir(
        str(tmp_path_factory.mktemp("tfl") / "run"), tokenizer, head_scale=30.0)
    return src.load_source(workdir)


@pytest.fixture(scope="module")
def pair_classifier(tmp_path_factory, tokenizer):
    workdir = export_fixtures.make_finetune_workdir(
        str(tmp_path_factory.mktemp("tflp") / "run"), tokenizer, pair=True)
    return src.load_source(workdir)


@pytest.fixture(scope="module")
def reference(classifier):
    return src.keras_reference(classifier, VARIED)


def test_tokenizer_in_model_ids_equal_keras_tokenizer(classifier):
    runner = tl.TFLiteRunner(tl.convert_tokenizer_only(classifier))
    ids = runner.run_batched({"text": VARIED}, batch_size=8)
    expected = src.keras_tokenize(classifier, VARIED)
    for i, text in enumerate(VARIED):
        assert list(ids["token_ids"][i]) == list(expected["token_ids"][i]), text[:50]
        assert list(ids["padding_mask"][i]) == list(expected["padding_mask"][i]), text[:50]
    # and keras-hub's eager (pure Python) path agrees too
    assert [list(x) for x in classifier.tokenizer(["Crème brûlée 東京 🤖"])] == [
        list(x) for x in classifier.tokenizer.tokenize(["Crème brûlée 東京 🤖"])]


def test_known_tokenizer_differences_are_as_documented(classifier):
    texts = [t for t, _, _ in tokenization.KNOWN_TFLITE_DIFFERENCES]
    runner = tl.TFLiteRunner(tl.convert_tokenizer_only(classifier))
    ids = runner(text=texts)["token_ids"]
    expected = src.keras_tokenize(classifier, texts)["token_ids"]
    for i, text in enumerate(texts):
        assert list(ids[i]) != list(expected[i]), f"{text!r} now tokenizes the same: update docs"
    vocab = classifier.vocabulary
    assert [vocab[t] for t in expected[0][4:7]] == ["...", "yes", "[SEP]"]
    assert [vocab[t] for t in ids[0][4:8]] == [".", ".", ".", "yes"]
    assert list(expected[1][:3]) == [101, 100, 102]  # non-breaking space: one [UNK] word


def test_pair_packing_matches_keras_round_robin(pair_classifier):
    tok = FastWordpiece(pair_classifier.vocabulary, True, True)
    short, mid, long = "a b", "one two three four five six", "word " * 40
    firsts = [short, long, mid, long, "", short, export_data.LONG_TEXT, "é" * 3]
    seconds = [long, short, mid, long, "", "", "x", mid]
    got = tokenization.tflite_token_ids(tok, firsts, seconds, pair_classifier.sequence_length)
    expected = src.keras_tokenize(pair_classifier, firsts, seconds)
    for k in src.ID_INPUTS:
        np.testing.assert_array_equal(got[k], expected[k])


def test_float32_matches_keras(classifier, reference):
    conv = tl.convert(classifier, "float32")
    report = tl.check_tflite(classifier, conv.content, VARIED, reference=reference,
                             latency_examples=3)
    assert report["max_abs_diff"] < 1e-4
    assert report["label_agreement"] == 1.0
    runner = tl.TFLiteRunner(conv.content)
    assert not runner.takes_text and runner.sequence_length == classifier.sequence_length
    out = runner(**{k: v[:2] for k, v in reference["_features"].items()})
    assert set(out) == {"logits", "probabilities", "label_id"}
    np.testing.assert_allclose(out["probabilities"].sum(-1), 1.0, atol=1e-5)
    assert report["latency_batch1"]["median_ms"] > 0


def test_dynamic_range_within_documented_tolerance(classifier, reference):
    conv = tl.convert(classifier, "dynamic")
    report = tl.check_tflite(classifier, conv.content, VARIED, reference=reference,
                             latency_examples=0)
    scale = float(np.max(np.abs(reference["logits"])))
    assert report["max_abs_diff"] <= DYNAMIC_MAX_REL_DIFF * scale, (report, scale)
    assert report["label_agreement"] >= DYNAMIC_MIN_AGREEMENT


def test_tokenizer_model_bad_input(classifier):
    conv = tl.convert(classifier, "float32", with_tokenizer=True)
    runner = tl.TFLiteRunner(conv.content)
    assert runner.takes_text
    texts = [b"", b" ", b"\t\n", export_data.LONG_TEXT.encode(), b"a short text",
             b"\xff\xfe broken \xc3", "Café 東京 🤖".encode()]
    out = runner(text=texts)
    assert out["logits"].shape == (len(texts), len(export_fixtures.LABELS))
    assert np.all(np.isfinite(out["logits"]))
    for i, t in enumerate(texts):  # mixed lengths: same as alone
        np.testing.assert_allclose(runner(text=[t])["logits"][0], out["logits"][i], atol=1e-5)
    valid = [t.decode("utf-8") for t in texts if t != texts[5]]
    ref = src.keras_reference(classifier, valid)
    got = runner(text=valid)
    np.testing.assert_allclose(got["logits"], ref["logits"], atol=1e-4)
    # invalid UTF-8: the same ids as keras-hub on the U+FFFD-replaced text
    ids = tl.TFLiteRunner(tl.convert_tokenizer_only(classifier))(text=[texts[5]])
    expected = src.keras_tokenize(classifier, [texts[5].decode("utf-8", errors="replace")])
    np.testing.assert_array_equal(ids["token_ids"], expected["token_ids"])
    empty = runner(text=np.array([], dtype=object))
    assert empty["logits"].shape[0] == 0


def test_int8_with_tokenizer_is_refused(classifier):
    with pytest.raises(ValueError, match="int8"):
        tl.convert(classifier, "int8", with_tokenizer=True, representative_texts=["a"])
    with pytest.raises(ValueError, match="representative"):
        tl.convert(classifier, "int8")


@pytest.mark.parametrize("mode", ["float16", "int8"])
def test_float16_and_full_integer(classifier, reference, mode):
    conv = tl.convert(classifier, mode, representative_texts=VARIED * 3)
    report = tl.check_tflite(classifier, conv.content, VARIED, reference=reference,
                             latency_examples=0)
    scale = float(np.max(np.abs(reference["logits"])))
    assert report["max_abs_diff"] <= (0.01 if mode == "float16" else 0.1) * scale
    assert report["label_agreement"] >= 0.85
    if mode == "int8":
        assert conv.integer_only is not None


def test_pair_task_with_tokenizer_matches_keras(pair_classifier):
    conv = tl.convert(pair_classifier, "float32", with_tokenizer=True)
    runner = tl.TFLiteRunner(conv.content)
    assert set(runner.input_names) == {"text", "text_pair"}
    firsts = ["a fine film", "", "word " * 40, "Café 東京"]
    seconds = ["the worst", "only the pair", "short", "word " * 40]
    got = runner(text=firsts, text_pair=seconds)
    ref = src.keras_reference(pair_classifier, firsts, seconds)
    np.testing.assert_allclose(got["logits"], ref["logits"], atol=1e-4)


def test_mean_pooling_classifier_float32_matches_keras(tmp_path, tokenizer):
    """A PooledTextClassifier run (mean over real tokens) converts, and its
    logits agree with Keras on texts of every length (padding included)."""
    workdir = export_fixtures.make_finetune_workdir(str(tmp_path / "run"), tokenizer,
                                                    head_scale=30.0, pooling="mean")
    source = src.load_source(workdir)
    assert type(source.model).__name__ == "PooledTextClassifier"
    report = tl.check_tflite(source, tl.convert(source, "float32").content, VARIED,
                             latency_examples=0)
    assert report["max_abs_diff"] < 1e-4 and report["label_agreement"] == 1.0
