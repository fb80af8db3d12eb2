"""Hugging Face export beyond BERT: RoBERTa, XLM-RoBERTa, DistilBERT, ELECTRA.

Independent checks: keras-hub's own Hugging Face importers read the export
back (weights and tokenizer equal the original; ELECTRA has no
such importer, so its names, shapes and projection are checked directly),
and, where the PyTorch environment exists (tools/make_torch_env.sh),
transformers and sentence-transformers load it with parity <= 1e-5.
"""

import json
import os

import keras_hub
import numpy as np
import pytest

import export_fixtures
import minilm_tf
from minilm_tf.export import hf, hf_weights
from minilm_tf.models.encoders import LoadedEncoder
from torch_env import check_parity, needs_torch_env

ARCHITECTURES = ["bert", "roberta", "xlm_roberta", "distil_bert", "electra"]
REIMPORTABLE = ["bert", "roberta", "xlm_roberta", "distil_bert"]  # keras-hub has importers
TEXTS = list(hf.PARITY_TEXTS) + list(export_fixtures.ARCHITECTURE_TEXTS)


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf_architectures")
    out = {}
    for name in ARCHITECTURES:
        encoder = export_fixtures.architecture_encoder(name)
        path = str(root / name)
        out[name] = (encoder, path, hf.export_hf(encoder, path))
    return out


def _read(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _ids(tokenizer, texts):
    return [np.asarray(t).tolist() for t in tokenizer(texts)]


@pytest.mark.parametrize("name", REIMPORTABLE)
def test_keras_hub_reimports_the_export(exports, name):
    encoder, path, _ = exports[name]
    reloaded = keras_hub.models.Backbone.from_preset(path)
    assert type(reloaded) is type(encoder.backbone)
    for a, b in zip(encoder.backbone.weights, reloaded.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)
    # The tokenizer files read back through keras-hub's own importer. Its
    # WordPiece importer reads `do_lower_case` but not `strip_accents`, so
    # WordPiece is compared by vocabulary (the parity test compares ids).
    tokenizer = keras_hub.models.Tokenizer.from_preset(path)
    assert type(tokenizer) is type(encoder.tokenizer)
    assert tokenizer.get_vocabulary() == encoder.tokenizer.get_vocabulary()
    if name in ("roberta", "xlm_roberta"):
        assert _ids(tokenizer, TEXTS) == _ids(encoder.tokenizer, TEXTS)
    # minilm_tf reads it back as a teacher, sentence-transformers pooling included.
    teacher = minilm_tf.load_teacher(path)
    assert type(teacher.backbone) is type(encoder.backbone)
    family = lambda act: hf.HF_ACTIVATIONS[act][1]  # noqa: E731 (tanh GELU has two names)
    assert family(teacher.hidden_act) == family(encoder.hidden_act)
    assert teacher.metadata["pooling"]["pooling_mode_mean_tokens"] is True


@pytest.mark.parametrize("name,model_type,architecture", [
    ("bert", "bert", "BertModel"), ("roberta", "roberta", "RobertaModel"),
    ("xlm_roberta", "xlm-roberta", "XLMRobertaModel"),
    ("distil_bert", "distilbert", "DistilBertModel"), ("electra", "electra", "ElectraModel")])
def test_config_names_the_architecture(exports, name, model_type, architecture):
    encoder, path, summary = exports[name]
    config = _read(os.path.join(path, "config.json"))
    assert config["model_type"] == summary["model_type"] == model_type
    assert config["architectures"] == [architecture]
    assert config["pad_token_id"] == encoder.tokenizer.pad_token_id
    if name == "distil_bert":
        assert (config["dim"], config["n_layers"], config["n_heads"], config["hidden_dim"]) == (
            16, 2, 2, 32)
        assert config["activation"] == "gelu" and "hidden_act" not in config
    else:
        assert config["hidden_size"] == 16 and config["num_hidden_layers"] == 2
    if name in ("roberta", "xlm_roberta"):
        assert config["max_position_embeddings"] == 64 + 2 and config["type_vocab_size"] == 1
    if name == "electra":
        assert config["embedding_size"] == 8
    with open(os.path.join(path, "README.md"), encoding="utf-8") as f:
        card = f.read()
    assert f"`{architecture}`" in card and f"- {model_type}" in card


def test_roberta_positions_are_offset_by_two(exports):
    from safetensors.numpy import load_file

    encoder, path, _ = exports["roberta"]
    weights = load_file(os.path.join(path, "model.safetensors"))
    table = weights["roberta.embeddings.position_embeddings.weight"]
    keras_table = np.asarray(encoder.backbone.get_layer("embeddings")
                             .position_embedding.position_embeddings)
    np.testing.assert_array_equal(table[2:], keras_table)
    assert not table[:2].any()
    assert not weights["roberta.embeddings.token_type_embeddings.weight"].any()


def test_electra_weights(exports):
    from safetensors.numpy import load_file

    encoder, path, summary = exports["electra"]
    weights = load_file(os.path.join(path, "model.safetensors"))
    backbone = encoder.backbone
    assert weights["embeddings.word_embeddings.weight"].shape == (backbone.vocab_size, 8)
    np.testing.assert_array_equal(weights["embeddings_project.weight"],
                                  np.asarray(backbone.embeddings_projection.kernel).T)
    assert not any(k.startswith("pooler") for k in weights)  # ElectraModel has no pooler
    pooled = backbone.get_layer("pooled_dense").count_params()
    assert summary["parameters"] == backbone.count_params() - pooled
    assert sum(int(w.size) for w in weights.values()) == summary["parameters"]


def test_distilbert_weight_names(exports):
    from safetensors.numpy import load_file

    encoder, path, _ = exports["distil_bert"]
    weights = load_file(os.path.join(path, "model.safetensors"))
    layer = encoder.backbone.transformer_layers[1]
    np.testing.assert_array_equal(weights["distilbert.transformer.layer.1.ffn.lin1.weight"],
                                  np.asarray(layer._feedforward_intermediate_dense.kernel).T)
    assert "distilbert.transformer.layer.1.sa_layer_norm.weight" in weights
    assert sum(int(w.size) for w in weights.values()) == encoder.backbone.count_params()


def test_tokenizer_files_per_family(exports):
    encoder, path, _ = exports["roberta"]
    assert _read(os.path.join(path, "vocab.json")) == dict(encoder.tokenizer.vocabulary)
    with open(os.path.join(path, "merges.txt"), encoding="utf-8") as f:
        assert f.read().splitlines() == ["#version: 0.2"] + list(encoder.tokenizer.merges)
    assert _read(os.path.join(path, "tokenizer_config.json"))["tokenizer_class"] == (
        "RobertaTokenizer")
    encoder, path, _ = exports["xlm_roberta"]
    with open(os.path.join(path, "sentencepiece.bpe.model"), "rb") as f:
        assert f.read() == bytes(encoder.tokenizer.proto)
    special = _read(os.path.join(path, "special_tokens_map.json"))
    assert special["mask_token"] == "<mask>" and special["pad_token"] == "<pad>"
    encoder, path, _ = exports["electra"]
    assert _read(os.path.join(path, "tokenizer_config.json"))["tokenizer_class"] == (
        "ElectraTokenizer")


def test_a_tokenizer_of_another_architecture_is_refused(tmp_path):
    roberta = export_fixtures.architecture_encoder("roberta")
    bert_tokenizer = export_fixtures.real_vocab_tokenizer()
    encoder = LoadedEncoder(roberta.backbone, bert_tokenizer, "mixed", "gelu")
    with pytest.raises(hf.ExportError, match="RobertaBackbone is exported with a "
                                             "RobertaTokenizer; the tokenizer is a BertTokenizer"):
        hf.export_hf(encoder, str(tmp_path / "x"))
    assert not os.path.exists(tmp_path / "x")


def test_a_mapping_that_misses_a_weight_is_an_error(monkeypatch):
    encoder = export_fixtures.architecture_encoder("distil_bert", sentence=False)

    def forgetful(read, backbone):
        weights = hf_weights._distilbert(read, backbone)
        read.read_ids.discard(id(backbone.get_layer("embeddings_layer_norm").gamma))
        return weights

    monkeypatch.setitem(hf_weights.MAPPINGS, "DistilBertBackbone", forgetful)
    with pytest.raises(ValueError, match="did not export.*embeddings_layer_norm/gamma"):
        hf_weights.hf_state_dict(encoder.backbone)


@needs_torch_env
@pytest.mark.parametrize("name", ARCHITECTURES)
def test_parity_in_transformers_and_sentence_transformers(exports, name, tmp_path):
    encoder, path, _ = exports[name]
    reference = str(tmp_path / "reference.npz")
    hf.keras_parity_reference(encoder, reference, texts=TEXTS)
    proc, report = check_parity(path, reference)
    assert proc.returncode == 0, (proc.stdout[-4000:], proc.stderr[-3000:])
    assert report["ok"] and report["token_ids"]["identical"] == len(TEXTS)
    assert report["last_hidden_state_max_abs_diff"] <= 1e-5
    assert report["sentence_transformers"]["embedding_max_abs_diff"] <= 1e-5
    assert report["sentence_transformers"]["modules"] == ["Transformer", "Pooling", "Normalize"]
    with open(os.path.join(path, "README.md"), encoding="utf-8") as f:
        assert (f"| last hidden state, max abs difference | "
                f"{report['last_hidden_state_max_abs_diff']:.2g} ") in f.read()
    if name == "bert":
        assert report["pooler_output_max_abs_diff"] <= 1e-5
