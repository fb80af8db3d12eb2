"""SavedModel export (in process): signatures, agreement with Keras, bad
input, version directories, PredictRequest validation.

The fresh-process round trip and saved_model_cli are in
test_export_savedmodel_subprocess.py; the tools end to end in
test_export_tools.py (slow)."""

import json
import os
import types

import numpy as np
import pytest
import keras
import keras_hub
import tensorflow as tf
import tensorflow_text  # noqa: F401

from export_fixtures import (  # noqa: E402
    LABELS,
    SEQ_LEN,
    make_encoder_source,
    make_finetune_workdir,
    real_vocab_tokenizer,
)

from minilm_tf.export import data as export_data  # noqa: E402
from minilm_tf.export import savedmodel  # noqa: E402
from minilm_tf.export import source as src  # noqa: E402


@pytest.fixture(scope="module")
def tokenizer():
    return real_vocab_tokenizer()


@pytest.fixture(scope="module")
def exports(tmp_path_factory, tokenizer):
    root = tmp_path_factory.mktemp("sm")
    wd = make_finetune_workdir(str(root / "run"), tokenizer, pair=False)
    cls = src.load_source(wd)
    wd_pair = make_finetune_workdir(str(root / "run_pair"), tokenizer, pair=True)
    pair = src.load_source(wd_pair)
    wd_mean = make_finetune_workdir(str(root / "run_mean"), tokenizer, pooling="mean")
    mean = src.load_source(wd_mean)
    enc = make_encoder_source(tokenizer)
    out = {}
    for key, source in (("cls", cls), ("pair", pair), ("mean", mean), ("enc", enc)):
        result = savedmodel.export_saved_model(source, str(root / "exports"), key)
        out[key] = types.SimpleNamespace(source=source, result=result,
                                         loaded=savedmodel.load(result["path"]))
    return out


def _sig(path, name):
    return savedmodel.read_signature_defs(path)[name]


def _shape(info):
    return [d.size for d in info.tensor_shape.dim]


def test_load_source_from_finetune_workdir(exports):
    source = exports["cls"].source
    assert source.kind == src.CLASSIFICATION
    assert source.labels == [str(v) for v in LABELS]
    assert source.sequence_length == SEQ_LEN and not source.is_pair
    assert exports["pair"].source.is_pair
    assert type(exports["mean"].source.model).__name__ == "PooledTextClassifier"
    with pytest.raises(ValueError, match="max_sequence_length"):
        src.load_source(source.spec, sequence_length=10_000)
    with pytest.raises(ValueError, match="encoders"):
        src.load_source(source.spec, pooling="mean")


def test_signature_names_dtypes_and_shapes(exports):
    path = exports["cls"].result["path"]
    sigs = savedmodel.read_signature_defs(path)
    assert {savedmodel.SERVING_DEFAULT, savedmodel.TOKEN_IDS_SIGNATURE, savedmodel.TOKENIZE_SIGNATURE} <= set(sigs)
    default = sigs[savedmodel.SERVING_DEFAULT]
    assert set(default.inputs) == {"text"}
    assert default.inputs["text"].dtype == tf.string.as_datatype_enum
    assert _shape(default.inputs["text"]) == [-1]
    outputs = default.outputs
    assert set(outputs) == {"logits", "probabilities", "label", "label_id"}
    assert outputs["logits"].dtype == tf.float32.as_datatype_enum
    assert _shape(outputs["logits"]) == [-1, len(LABELS)]
    assert outputs["label"].dtype == tf.string.as_datatype_enum
    assert outputs["label_id"].dtype == tf.int64.as_datatype_enum
    ids = sigs[savedmodel.TOKEN_IDS_SIGNATURE]
    assert set(ids.inputs) == set(src.ID_INPUTS)
    for info in ids.inputs.values():
        assert info.dtype == tf.int32.as_datatype_enum and _shape(info) == [-1, -1]
    assert set(ids.outputs) == set(outputs)
    tok = sigs[savedmodel.TOKENIZE_SIGNATURE]
    assert {k: _shape(v) for k, v in tok.outputs.items()} == {
        k: [-1, SEQ_LEN] for k in src.ID_INPUTS}
    pair = savedmodel.read_signature_defs(exports["pair"].result["path"])[savedmodel.SERVING_DEFAULT]
    assert set(pair.inputs) == {"text", "text_pair"}
    enc = savedmodel.read_signature_defs(exports["enc"].result["path"])[savedmodel.SERVING_DEFAULT]
    assert set(enc.outputs) == {"embedding"}
    assert _shape(enc.outputs["embedding"]) == [-1, exports["enc"].source.embedding_dim]


@pytest.mark.parametrize("key", ["cls", "pair", "mean", "enc"])
def test_string_and_id_signatures_agree_with_keras(exports, key):
    ex = exports[key]
    texts = list(export_data.EDGE_CASE_TEXTS)
    pairs = list(reversed(texts)) if ex.source.is_pair else None
    ref = src.keras_reference(ex.source, texts, pairs)
    by_text = savedmodel.run_signature(ex.loaded, savedmodel.text_inputs(texts, pairs))
    by_ids = savedmodel.run_signature(ex.loaded, ref["_features"], savedmodel.TOKEN_IDS_SIGNATURE)
    ids = savedmodel.run_signature(ex.loaded, savedmodel.text_inputs(texts, pairs), savedmodel.TOKENIZE_SIGNATURE)
    for k in src.ID_INPUTS:
        np.testing.assert_array_equal(ids[k], ref["_features"][k])
    for out in (by_text, by_ids):
        for name, value in out.items():
            if value.dtype.kind == "f":
                np.testing.assert_allclose(value, ref[name], atol=1e-5)
            else:
                np.testing.assert_array_equal(value, ref[name])
    if key == "pair":
        assert ids["segment_ids"].max() == 1  # text_pair is segment 1
    if key == "enc":
        norms = np.linalg.norm(by_text["embedding"], axis=-1)
        np.testing.assert_allclose(norms, 1.0, atol=1e-5)  # normalize=True


def test_labels_are_strings(exports):
    out = savedmodel.run_signature(exports["cls"].loaded, {"text": [b"a good film", b"bad"]})
    assert out["label"].dtype == object
    assert [v.decode() for v in out["label"]] == [
        str(LABELS[i]) for i in out["label_id"]]


def test_bad_input(exports):
    ex = exports["cls"]
    loaded, length = ex.loaded, ex.source.sequence_length
    texts = [b"", b" ", b"\t\n", export_data.LONG_TEXT.encode(), b"short one",
             b"\xff\xfe broken \xc3"]
    out = savedmodel.run_signature(loaded, {"text": texts})
    assert out["logits"].shape == (len(texts), len(LABELS))
    assert np.all(np.isfinite(out["logits"]))
    ids = savedmodel.run_signature(loaded, {"text": texts}, savedmodel.TOKENIZE_SIGNATURE)
    cls_id, sep_id = 101, 102
    # empty / whitespace-only: [CLS] [SEP]
    for row in range(3):
        assert ids["padding_mask"][row].sum() == 2
        assert list(ids["token_ids"][row, :2]) == [cls_id, sep_id]
    # 100k characters: truncated to the sequence length, not an error
    assert ids["padding_mask"][3].sum() == length and ids["token_ids"][3, -1] == sep_id
    # invalid UTF-8 -> U+FFFD -> [UNK], same as Keras on the replaced text
    expected = src.keras_tokenize(ex.source, [texts[5].decode("utf-8", errors="replace")])
    np.testing.assert_array_equal(ids["token_ids"][5], expected["token_ids"][0])
    assert 100 in ids["token_ids"][5]  # [UNK]
    # a batch mixing lengths gives each text what it gets alone
    for i, t in enumerate(texts):
        alone = savedmodel.run_signature(loaded, {"text": [t]})
        np.testing.assert_allclose(alone["logits"][0], out["logits"][i], atol=1e-5)
    # an empty batch gives empty outputs
    empty = savedmodel.run_signature(loaded, {"text": np.array([], dtype=object)})
    assert empty["logits"].shape == (0, len(LABELS)) and empty["label"].shape == (0,)
    # a scalar is a batch of one; a 2-D array is flattened into a batch
    fn = loaded.signatures[savedmodel.SERVING_DEFAULT]
    scalar = fn(text=tf.constant(texts[4]))["logits"].numpy()
    np.testing.assert_allclose(scalar, out["logits"][4:5], atol=1e-5)
    grid = fn(text=tf.constant([texts[4:6], texts[0:2]]))["logits"].numpy()
    np.testing.assert_allclose(grid, out["logits"][[4, 5, 0, 1]], atol=1e-5)


def test_pair_batch_size_mismatch_is_an_error(exports):
    fn = exports["pair"].loaded.signatures[savedmodel.SERVING_DEFAULT]
    with pytest.raises(tf.errors.InvalidArgumentError, match="same batch size"):
        fn(text=tf.constant([b"a", b"b"]), text_pair=tf.constant([b"c"]))


@pytest.mark.parametrize("key", ["enc", "cls"])
def test_out_of_range_ids_are_an_error(exports, key):
    ex = exports[key]
    fn = ex.loaded.signatures[savedmodel.TOKEN_IDS_SIGNATURE]
    ids = savedmodel.run_signature(ex.loaded, {"text": [b"a good film", b"bad"]}, savedmodel.TOKENIZE_SIGNATURE)
    vocab = ex.source.tokenizer.vocabulary_size()
    fn(**{k: tf.constant(v) for k, v in ids.items()})  # in range: fine

    def call(name, row, col, value):
        bad = {k: v.copy() for k, v in ids.items()}
        bad[name][row, col] = value
        return fn(**{k: tf.constant(v) for k, v in bad.items()})

    with pytest.raises(tf.errors.InvalidArgumentError, match="token_ids must be non-negative"):
        call("token_ids", 1, 1, -1)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=rf"token_ids must be less than the vocabulary size \({vocab}\)"):
        call("token_ids", 0, 2, vocab)
    with pytest.raises(tf.errors.InvalidArgumentError, match="segment_ids must be non-negative"):
        call("segment_ids", 0, 0, -1)


def test_encoder_mean_pooling_over_real_tokens(exports):
    ex = exports["enc"]
    texts = ["a short text", "a much longer text " * 5]
    out = savedmodel.run_signature(ex.loaded, savedmodel.text_inputs(texts))["embedding"]
    feats = src.keras_tokenize(ex.source, texts)
    seq = ex.source.backbone(feats, training=False)["sequence_output"].numpy()
    mask = feats["padding_mask"][:, :, None].astype(np.float32)
    mean = (seq * mask).sum(1) / mask.sum(1)
    mean /= np.linalg.norm(mean, axis=-1, keepdims=True)
    np.testing.assert_allclose(out, mean, atol=1e-5)
    assert ex.source.pooling == ("mean",) and ex.source.normalize


def test_metadata_and_warmup_requests(exports):
    path = exports["cls"].result["path"]
    meta = savedmodel.read_metadata(path)
    assert meta["labels"] == [str(v) for v in LABELS]
    assert meta["sequence_length"] == SEQ_LEN and meta["kind"] == "classification"
    assert set(meta["signatures"]) == {savedmodel.SERVING_DEFAULT, savedmodel.TOKEN_IDS_SIGNATURE,
                                       savedmodel.TOKENIZE_SIGNATURE}
    json.dumps(meta)
    import tensorflow_serving  # noqa: F401
    from tensorflow_serving.apis import prediction_log_pb2

    records = list(tf.data.TFRecordDataset(os.path.join(path, savedmodel.EXTRA_DIR, savedmodel.WARMUP_FILE)))
    assert records
    log = prediction_log_pb2.PredictionLog.FromString(records[0].numpy())
    assert set(log.predict_log.request.inputs) == {"text"}


def test_predict_request_validates_against_signature(exports):
    import tensorflow_serving  # noqa: F401
    ex = exports["pair"]
    path = ex.result["path"]
    sigs = savedmodel.read_signature_defs(path)
    good = savedmodel.make_predict_request("pair", {"text": ["a", "b"], "text_pair": ["c", ""]})
    assert savedmodel.validate_predict_request(sigs[savedmodel.SERVING_DEFAULT], good) == []
    response = savedmodel.predict(ex.loaded, good)
    direct = savedmodel.run_signature(ex.loaded, {"text": [b"a", b"b"], "text_pair": [b"c", b""]})
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["logits"]), direct["logits"])
    ids = src.keras_tokenize(ex.source, ["a"], ["c"])
    ids_req = savedmodel.make_predict_request("pair", ids, savedmodel.TOKEN_IDS_SIGNATURE)
    assert savedmodel.validate_predict_request(sigs[savedmodel.TOKEN_IDS_SIGNATURE], ids_req) == []
    missing = savedmodel.make_predict_request("pair", {"text": ["a"]})
    assert any("missing ['text_pair']" in p for p in
               savedmodel.validate_predict_request(sigs[savedmodel.SERVING_DEFAULT], missing))
    wrong_type = savedmodel.make_predict_request("pair", {"text": [1], "text_pair": [2]})
    assert any("dtype" in p for p in
               savedmodel.validate_predict_request(sigs[savedmodel.SERVING_DEFAULT], wrong_type))
    wrong_rank = savedmodel.make_predict_request(
        "pair", {k: v[0] for k, v in ids.items()}, savedmodel.TOKEN_IDS_SIGNATURE)
    assert any("shape" in p for p in
               savedmodel.validate_predict_request(sigs[savedmodel.TOKEN_IDS_SIGNATURE], wrong_rank))


# --------------------------------------------------------------------------
# Version directories (a trivial SavedModel stands in for the real one)


class _TrivialArchive:
    def write_out(self, path, verbose=False):
        module = tf.Module()
        module.f = tf.function(lambda text: {"n": tf.strings.length(text)},
                               input_signature=[tf.TensorSpec([None], tf.string)])
        tf.saved_model.save(module, path, signatures={"serving_default": module.f})


@pytest.fixture
def trivial_archive(monkeypatch):
    monkeypatch.setattr(savedmodel, "build_archive", lambda source, trim_padding=True: _TrivialArchive())


def _fake_source():
    return types.SimpleNamespace(metadata=lambda: {"kind": "test"}, is_pair=False)


def test_versions_are_never_overwritten(tmp_path, trivial_archive):
    export_dir, source = str(tmp_path), _fake_source()
    first = savedmodel.export_saved_model(source, export_dir, "m", warmup_texts=None)
    second = savedmodel.export_saved_model(source, export_dir, "m", warmup_texts=None)
    assert (first["version"], second["version"]) == (1, 2)
    stamp = os.path.getmtime(os.path.join(first["path"], "saved_model.pb"))
    with pytest.raises(FileExistsError, match="never overwritten"):
        savedmodel.export_saved_model(source, export_dir, "m", version=1, warmup_texts=None)
    assert os.path.getmtime(os.path.join(first["path"], "saved_model.pb")) == stamp
    explicit = savedmodel.export_saved_model(source, export_dir, "m", version=7, warmup_texts=None)
    assert explicit["version"] == 7
    assert savedmodel.export_saved_model(source, export_dir, "m", warmup_texts=None)["version"] == 8
    assert savedmodel.list_versions(os.path.join(export_dir, "m")) == [1, 2, 7, 8]
    assert sorted(os.listdir(os.path.join(export_dir, "m"))) == ["1", "2", "7", "8"]


def test_failed_verification_publishes_nothing(tmp_path, trivial_archive):
    export_dir, source = str(tmp_path), _fake_source()
    with pytest.raises(savedmodel.VerificationError):
        savedmodel.export_saved_model(source, export_dir, "m", warmup_texts=None,
                              verify=lambda path: {"ok": False, "failures": ["boom"]})

    def crash(path):
        raise RuntimeError("checker crashed")

    with pytest.raises(RuntimeError, match="crashed"):
        savedmodel.export_saved_model(source, export_dir, "m", warmup_texts=None, verify=crash)
    assert os.listdir(os.path.join(export_dir, "m")) == []  # no version, no temp dir
    ok = savedmodel.export_saved_model(source, export_dir, "m", warmup_texts=None,
                               verify=lambda path: {"ok": True})
    assert ok["version"] == 1
    assert os.path.exists(os.path.join(ok["path"], savedmodel.EXTRA_DIR, savedmodel.VERIFICATION_FILE))


def test_publish_race_takes_next_version_or_refuses(tmp_path):
    model_dir = str(tmp_path)
    os.makedirs(os.path.join(model_dir, "3"))
    open(os.path.join(model_dir, "3", "saved_model.pb"), "w").close()
    tmp = os.path.join(model_dir, ".tmp-3-x")
    os.makedirs(tmp)
    path, version = savedmodel._publish(tmp, model_dir, 3, auto=True)  # someone took 3 meanwhile
    assert version == 4 and os.path.isdir(path) and not os.path.exists(tmp)
    os.makedirs(tmp)
    with pytest.raises(FileExistsError):
        savedmodel._publish(tmp, model_dir, 3, auto=False)
    assert os.path.exists(os.path.join(model_dir, "3", "saved_model.pb"))
    # hidden temp dirs and files are not versions (TF Serving ignores them too)
    open(os.path.join(model_dir, "9"), "w").close()
    assert savedmodel.list_versions(model_dir) == [3, 4]
    assert savedmodel.resolve_version(model_dir) == 5


def test_invalid_names_and_versions(tmp_path, trivial_archive):
    for bad in ("", "a/b", ".hidden"):
        with pytest.raises(ValueError):
            savedmodel.export_saved_model(_fake_source(), str(tmp_path), bad)
    with pytest.raises(ValueError):
        savedmodel.resolve_version(str(tmp_path), -1)
