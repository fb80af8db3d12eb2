"""The real pretrained all-MiniLM-L6-v2 exported as a sentence encoder:
SavedModel and TFLite (tokenizer inside) embeddings equal the Hugging Face /
sentence-transformers reference in tests/fixtures (slow: loads and converts
the 22.7M-parameter model)."""

import os

import numpy as np
import pytest
import keras_hub  # noqa: F401
import tensorflow_text  # noqa: F401
from locations import FIXTURES_DIR

FIXTURE = os.path.join(FIXTURES_DIR, "all_minilm_l6_v2_reference.npz")


@pytest.fixture(scope="module")
def reference():
    data = np.load(FIXTURE)
    pooled = data["mean_pooled"]  # sentence-transformers Normalize comes after pooling
    return data, pooled / np.linalg.norm(pooled, axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def source(all_minilm):
    from minilm_tf.export import source as src

    return src.encoder_source(all_minilm)


@pytest.mark.slow
def test_savedmodel_embedding_equals_sentence_transformers(source, reference, tmp_path):
    from minilm_tf.export import savedmodel

    data, expected = reference
    assert source.pooling == ("mean",) and source.normalize and source.sequence_length == 256
    result = savedmodel.export_saved_model(source, str(tmp_path), "all_minilm_l6_v2")
    loaded = savedmodel.load(result["path"])
    texts = [str(s) for s in data["sentences"]]
    ids = savedmodel.run_signature(loaded, savedmodel.text_inputs(texts), savedmodel.TOKENIZE_SIGNATURE)
    width = data["token_ids"].shape[1]
    np.testing.assert_array_equal(ids["token_ids"][:, :width], data["token_ids"])
    out = savedmodel.run_signature(loaded, savedmodel.text_inputs(texts))["embedding"]
    np.testing.assert_allclose(out, expected, atol=1e-5)
    size = sum(os.path.getsize(os.path.join(d, f))
               for d, _, files in os.walk(result["path"]) for f in files)
    assert size < 100 * 2**20  # each weight saved once (~87 MB of float32)


@pytest.mark.slow
def test_tflite_with_tokenizer_embedding_equals_sentence_transformers(source, reference):
    from minilm_tf.export import tflite as tl

    data, expected = reference
    conv = tl.convert(source, "float32", with_tokenizer=True)
    out = tl.TFLiteRunner(conv.content)(text=[str(s) for s in data["sentences"]])
    np.testing.assert_allclose(out["embedding"], expected, atol=1e-5)
