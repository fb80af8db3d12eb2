"""Hugging Face / sentence-transformers export (minilm_tf/export/hf.py,
tools/export_hf.py, tools/check_hf_parity.py).

The unit tests run everywhere: config fields, weight names and shapes, the
inverse of keras-hub's own importer (keras-hub re-imports the export to the
same outputs), tokenizer and sentence-transformers files, refusals. The
parity tests load the export in the real torch libraries with the separate
environment .venv-torch (tools/make_torch_env.sh) and are skipped only when
it does not exist.
"""

import json
import os
import subprocess
import sys

import keras_hub
import numpy as np
import pytest

import minilm_tf
from minilm_tf.export import hf
import export_fixtures
from minilm_tf.models.encoders import LoadedEncoder, save_encoder, set_feedforward_activation
from locations import TOOLS_DIR
from torch_env import TORCH_PYTHON, check_parity, needs_torch_env



def _tiny_encoder(hidden_act="gelu_approximate", metadata=None, seed=0, tokenizer=None,
                  layers=2):
    tokenizer = tokenizer or export_fixtures.real_vocab_tokenizer()
    import keras

    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=tokenizer.vocabulary_size(), num_layers=layers, num_heads=2,
        hidden_dim=16, intermediate_dim=32, max_sequence_length=64)
    set_feedforward_activation(backbone, hidden_act)
    return LoadedEncoder(backbone, tokenizer, "tiny", hidden_act, metadata=dict(metadata or {}))


def _features(vocab=30522, batch=3, length=10, seed=0):
    rng = np.random.default_rng(seed)
    lengths = np.array([length, length - 4, 3])[:batch]
    mask = (np.arange(length)[None, :] < lengths[:, None]).astype("int32")
    ids = rng.integers(1000, vocab, size=(batch, length)).astype("int32") * mask
    ids[:, 0] = 101
    return {"token_ids": ids, "segment_ids": np.zeros_like(ids), "padding_mask": mask}


def _read(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
    encoder = _tiny_encoder(metadata={
        "pooling": {"word_embedding_dimension": 384, "pooling_mode_mean_tokens": True},
        "normalize": True,
        "init": {"mode": "teacher_layers", "copied": ["token_embedding"], "teacher_layers": [0, 5]},
    })
    path = str(tmp_path_factory.mktemp("hf") / "tiny")
    return encoder, path, hf.export_hf(encoder, path)


# --------------------------------------------------------------------------- files


def test_config_fields(tiny_export):
    encoder, path, summary = tiny_export
    config = _read(os.path.join(path, "config.json"))
    assert config["model_type"] == "bert" and config["architectures"] == ["BertModel"]
    expected = {"hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
                "intermediate_size": 32, "max_position_embeddings": 64, "type_vocab_size": 2,
                "vocab_size": 30522, "layer_norm_eps": 1e-12,
                "hidden_act": "gelu_pytorch_tanh"}
    assert {k: config[k] for k in expected} == expected
    assert summary["hidden_act"] == "gelu_pytorch_tanh"
    assert summary["parameters"] == minilm_tf.count_params(encoder.backbone)


@pytest.mark.parametrize("act, hf_act", [("gelu", "gelu"),
                                         ("gelu_approximate", "gelu_pytorch_tanh"),
                                         ("gelu_new", "gelu_new"), ("relu", "relu")])
def test_hidden_act_names_what_the_layers_compute(act, hf_act):
    assert hf.hf_config(_tiny_encoder(act, layers=1))["hidden_act"] == hf_act


def test_hidden_act_that_the_layers_do_not_compute_is_refused(tmp_path):
    encoder = _tiny_encoder("gelu_approximate")
    encoder.hidden_act = "gelu"  # says exact, computes tanh
    with pytest.raises(hf.ExportError, match="computes gelu_tanh"):
        hf.export_hf(encoder, str(tmp_path / "x"))
    assert not os.path.exists(tmp_path / "x")


def test_weight_names_and_shapes(tiny_export):
    from safetensors.numpy import load_file

    encoder, path, _ = tiny_export
    weights = load_file(os.path.join(path, "model.safetensors"))
    h, i, v = 16, 32, 30522
    expected = {
        "embeddings.word_embeddings.weight": (v, h),
        "embeddings.position_embeddings.weight": (64, h),
        "embeddings.token_type_embeddings.weight": (2, h),
        "embeddings.LayerNorm.weight": (h,), "embeddings.LayerNorm.bias": (h,),
        "pooler.dense.weight": (h, h), "pooler.dense.bias": (h,),
    }
    for n in range(2):
        p = f"encoder.layer.{n}."
        for name in ("query", "key", "value"):
            expected[f"{p}attention.self.{name}.weight"] = (h, h)
            expected[f"{p}attention.self.{name}.bias"] = (h,)
        expected.update({
            f"{p}attention.output.dense.weight": (h, h), f"{p}attention.output.dense.bias": (h,),
            f"{p}attention.output.LayerNorm.weight": (h,),
            f"{p}attention.output.LayerNorm.bias": (h,),
            f"{p}intermediate.dense.weight": (i, h), f"{p}intermediate.dense.bias": (i,),
            f"{p}output.dense.weight": (h, i), f"{p}output.dense.bias": (h,),
            f"{p}output.LayerNorm.weight": (h,), f"{p}output.LayerNorm.bias": (h,),
        })
    assert {k: tuple(w.shape) for k, w in weights.items()} == expected
    assert all(w.dtype == np.float32 for w in weights.values())
    # torch Linear weights are [out, in]: the transposed Keras kernel.
    block = encoder.backbone.transformer_layers[1]
    np.testing.assert_array_equal(weights["encoder.layer.1.intermediate.dense.weight"],
                                  np.asarray(block._feedforward_intermediate_dense.kernel).T)
    query = np.asarray(block._self_attention_layer.query_dense.kernel)  # [h, heads, head_dim]
    np.testing.assert_array_equal(weights["encoder.layer.1.attention.self.query.weight"],
                                  query.reshape(h, h).T)
    out = np.asarray(block._self_attention_layer.output_dense.kernel)  # [heads, head_dim, h]
    np.testing.assert_array_equal(weights["encoder.layer.1.attention.output.dense.weight"],
                                  out.reshape(h, h).T)


def test_tokenizer_files(tiny_export):
    encoder, path, _ = tiny_export
    with open(os.path.join(path, "vocab.txt"), encoding="utf-8") as f:
        assert f.read().split("\n")[:-1] == encoder.tokenizer.get_vocabulary()
    config = _read(os.path.join(path, "tokenizer_config.json"))
    assert config["do_lower_case"] is True and config["strip_accents"] is True
    assert config["tokenizer_class"] == "BertTokenizer"
    special = _read(os.path.join(path, "special_tokens_map.json"))
    assert special == {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]",
                       "cls_token": "[CLS]", "mask_token": "[MASK]"}


def test_tokenizer_config_follows_the_keras_hub_tokenizer():
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=export_fixtures.vocab_path(), lowercase=False,
                                               strip_accents=False)
    config = hf.tokenizer_config(tokenizer, 512)
    assert config["do_lower_case"] is False and config["strip_accents"] is False
    tokenizer.lowercase, tokenizer.strip_accents = True, False
    config = hf.tokenizer_config(tokenizer, 512)
    assert config["do_lower_case"] is True and config["strip_accents"] is False


def test_sentence_transformers_layout(tiny_export):
    _, path, summary = tiny_export
    modules = _read(os.path.join(path, "modules.json"))
    assert [m["type"].rsplit(".", 1)[1] for m in modules] == ["Transformer", "Pooling", "Normalize"]
    assert [m["path"] for m in modules] == ["", "1_Pooling", "2_Normalize"]
    assert os.path.isdir(os.path.join(path, "2_Normalize"))
    pooling = _read(os.path.join(path, "1_Pooling", "config.json"))
    assert pooling["word_embedding_dimension"] == 16  # this model's width, not the teacher's 384
    assert pooling["pooling_mode_mean_tokens"] is True
    assert pooling["pooling_mode_cls_token"] is False
    assert _read(os.path.join(path, "sentence_bert_config.json"))["max_seq_length"] == 64
    st = _read(os.path.join(path, "config_sentence_transformers.json"))
    assert st["model_type"] == "SentenceTransformer"
    assert summary["sentence_transformers"] and summary["pooling"] == ["mean"]
    assert summary["normalize"] is True


def test_plain_encoder_and_unnormalised_sentence_encoder(tmp_path):
    plain = hf.export_hf(_tiny_encoder(layers=1), str(tmp_path / "plain"))
    assert not plain["sentence_transformers"]
    assert not os.path.exists(tmp_path / "plain" / "modules.json")
    cls = _tiny_encoder(layers=1, metadata={"pooling": {"pooling_mode_cls_token": True},
                                            "normalize": False})
    summary = hf.export_hf(cls, str(tmp_path / "cls"), max_seq_length=32)
    assert summary["pooling"] == ["cls"] and summary["max_seq_length"] == 32
    assert len(_read(tmp_path / "cls" / "modules.json")) == 2
    assert not os.path.exists(tmp_path / "cls" / "2_Normalize")


def test_model_card(tiny_export):
    _, path, _ = tiny_export
    with open(os.path.join(path, "README.md"), encoding="utf-8") as f:
        card = f.read()
    for needle in ("library_name: sentence-transformers", "| layers | 2 |",
                   "`teacher_layers`", "teacher layers copied: [0, 5]", "Exported from: `tiny`",
                   "AutoModel.from_pretrained", "SentenceTransformer(", "minilm_tf.load_teacher",
                   "gelu_pytorch_tanh"):
        assert needle in card, needle


# --------------------------------------------------------------------------- round trips


@pytest.fixture(scope="module")
def exported_teacher(all_minilm, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("hf_teacher") / "all-minilm-l6-v2")
    return path, hf.export_hf(all_minilm, path)


def test_keras_hub_reimports_the_export_to_the_same_outputs(all_minilm, tmp_path):
    # keras-hub builds BERT with tanh GELU: compare a student that uses it.
    student = minilm_tf.build_student(all_minilm, 2, 384, 12, seed=3)
    assert student.hidden_act == "gelu_approximate"
    path = str(tmp_path / "student")
    hf.export_hf(student, path)
    reloaded = keras_hub.models.BertBackbone.from_preset(path)
    for a, b in zip(student.backbone.weights, reloaded.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)
    features = _features()
    expected = student.backbone(features)
    got = reloaded(features)
    for key in ("sequence_output", "pooled_output"):
        np.testing.assert_allclose(np.asarray(got[key]), np.asarray(expected[key]), atol=1e-5)


def test_load_teacher_reads_the_teacher_export_back(all_minilm, exported_teacher):
    path, summary = exported_teacher
    assert summary["hidden_act"] == "gelu" and summary["max_seq_length"] == 256
    again = minilm_tf.load_teacher(path)
    assert again.hidden_act == "gelu"
    assert again.metadata == all_minilm.metadata
    texts = list(hf.PARITY_TEXTS)
    assert again.tokenizer(texts) == all_minilm.tokenizer(texts)  # lists of ids
    features = _features()
    for key in ("sequence_output", "pooled_output"):
        np.testing.assert_allclose(np.asarray(again.backbone(features)[key]),
                                   np.asarray(all_minilm.backbone(features)[key]), atol=1e-6)


def test_teacher_export_has_the_original_weights(exported_teacher):
    # keras-hub's importer followed by its inverse gives back the checkpoint's
    # tensors bit for bit (the original also stores the position_ids buffer).
    from safetensors.numpy import load_file
    from minilm_tf.models.encoders import builtin_model_dir

    path, _ = exported_teacher
    original = load_file(os.path.join(builtin_model_dir("all-minilm-l6-v2"), "model.safetensors"))
    exported = load_file(os.path.join(path, "model.safetensors"))
    assert set(original) - set(exported) == {"embeddings.position_ids"}
    assert set(exported) <= set(original)
    for name, tensor in exported.items():
        np.testing.assert_array_equal(tensor, original[name], err_msg=name)


# --------------------------------------------------------------------------- refusals


def test_existing_directory(tmp_path):
    encoder = _tiny_encoder(layers=1)
    target = tmp_path / "out"
    target.mkdir()
    hf.export_hf(encoder, str(target))  # an existing empty directory is fine
    (target / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not empty"):
        hf.export_hf(encoder, str(target))
    assert (target / "keep.txt").exists()
    hf.export_hf(encoder, str(target), overwrite=True)
    assert not (target / "keep.txt").exists() and (target / "model.safetensors").exists()
    assert [p for p in os.listdir(tmp_path) if p != "out"] == []  # no temporary left behind
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="not a directory"):
        hf.export_hf(encoder, str(tmp_path / "file"), overwrite=True)


def test_an_architecture_without_a_mapping_is_refused(tmp_path):
    tokenizer = export_fixtures.real_vocab_tokenizer()
    backbone = keras_hub.models.AlbertBackbone(
        vocabulary_size=tokenizer.vocabulary_size(), num_layers=1, num_heads=2, hidden_dim=16,
        embedding_dim=16, intermediate_dim=32, max_sequence_length=32)
    encoder = LoadedEncoder(backbone, tokenizer, "albert", "gelu_approximate")
    with pytest.raises(hf.ExportError,
                       match=r"supports BERT, RoBERTa.*AlbertBackbone .*no Hugging Face mapping"):
        hf.export_hf(encoder, str(tmp_path / "x"))
    assert not os.path.exists(tmp_path / "x")


def test_vocabulary_mismatch_is_refused(tmp_path):
    backbone = keras_hub.models.BertBackbone(vocabulary_size=120, num_layers=1, num_heads=2,
                                             hidden_dim=16, intermediate_dim=32,
                                             max_sequence_length=32)
    encoder = LoadedEncoder(backbone, export_fixtures.real_vocab_tokenizer(), "tiny", "gelu_approximate")
    with pytest.raises(hf.ExportError, match="30522 tokens but the embedding table has 120 rows"):
        hf.export_hf(encoder, str(tmp_path / "x"))


def test_missing_tokenizer_is_refused(tmp_path):
    encoder = _tiny_encoder(layers=1)
    encoder.tokenizer = None
    with pytest.raises(hf.ExportError, match="no tokenizer"):
        hf.export_hf(encoder, str(tmp_path / "x"))


# --------------------------------------------------------------------------- tool


def _export_tool(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, os.path.join(TOOLS_DIR, "export_hf.py"), *args],
                          capture_output=True, text=True, timeout=600, env=env)


def test_export_tool(tmp_path):
    preset = export_fixtures.save_tiny_encoder_preset(str(tmp_path / "student"),
                                               export_fixtures.real_vocab_tokenizer())
    out = tmp_path / "hf"
    proc = _export_tool("--model", preset, "--output_dir", str(out),
                        "--reference", str(tmp_path / "ref.npz"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert summary["path"] == str(out) and "model.safetensors" in summary["files"]
    ref = np.load(tmp_path / "ref.npz")
    assert ref["last_hidden_state"].shape[:2] == ref["token_ids"].shape
    proc = _export_tool("--model", preset, "--output_dir", str(out))
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "not empty" in errors[0], proc.stderr[-2000:]


# --------------------------------------------------------------------------- parity in torch


def _assert_parity(proc, report):
    assert proc.returncode == 0, (proc.stdout[-4000:], proc.stderr[-3000:])
    assert report["ok"] and not report["tensorflow_imported"]
    assert report["token_ids"]["identical"] == report["texts"] == len(hf.PARITY_TEXTS)
    assert report["last_hidden_state_max_abs_diff"] <= 1e-5
    assert report["pooler_output_max_abs_diff"] <= 1e-5
    assert report["sentence_transformers"]["embedding_max_abs_diff"] <= 1e-5
    assert report["sentence_transformers"]["modules"] == ["Transformer", "Pooling", "Normalize"]
    print(json.dumps({k: report[k] for k in ("model_dir", "last_hidden_state_max_abs_diff",
                                              "pooler_output_max_abs_diff")}),
          report["sentence_transformers"]["embedding_max_abs_diff"])


@pytest.mark.slow
@needs_torch_env
def test_parity_real_teacher(all_minilm, exported_teacher, tmp_path):
    path, _ = exported_teacher
    reference = str(tmp_path / "keras_reference.npz")
    hf.keras_parity_reference(all_minilm, reference)
    proc, report = check_parity(path, reference)
    _assert_parity(proc, report)
    assert report["hf_classes"]["hidden_act"] == "gelu"
    assert report["sentence_transformers"]["max_seq_length"] == 256

    # The checker does catch a difference: hidden states off by 1e-4.
    data = dict(np.load(reference))
    data["last_hidden_state"] = data["last_hidden_state"] + 1e-4
    np.savez(tmp_path / "tampered.npz", **data)
    proc, report = check_parity(path, str(tmp_path / "tampered.npz"))
    assert proc.returncode == 1 and not report["ok"]
    assert any("last hidden states" in f for f in report["failures"])


@pytest.mark.slow
@needs_torch_env
def test_parity_distilled_like_student(all_minilm, tmp_path):
    student = minilm_tf.build_student(all_minilm, 3, 384, 12, init="teacher_layers")
    rng = np.random.default_rng(0)  # move it off the teacher's weights, as training would
    for w in student.backbone.transformer_layers[1].weights:
        w.assign(np.asarray(w) + rng.normal(0, 0.01, w.shape).astype("float32"))
    preset = str(tmp_path / "student_preset")
    save_encoder(student, preset)
    loaded = minilm_tf.load_teacher(preset)  # as a distillation run's student is read back
    assert loaded.hidden_act == "gelu" and loaded.metadata["init"]["teacher_layers"] == [0, 2, 5]
    path = str(tmp_path / "student_hf")
    summary = hf.export_hf(loaded, path, max_seq_length=256)
    with open(os.path.join(path, "README.md"), encoding="utf-8") as f:
        assert "teacher layers copied: [0, 2, 5]" in f.read()
    reference = str(tmp_path / "keras_reference.npz")
    hf.keras_parity_reference(loaded, reference, max_seq_length=summary["max_seq_length"])
    proc, report = check_parity(path, reference)
    _assert_parity(proc, report)


@pytest.mark.slow
@needs_torch_env
def test_known_tokenizer_differences_stay_true(all_minilm, exported_teacher, tmp_path):
    path, _ = exported_teacher
    texts = list(hf.KNOWN_TOKENIZER_DIFFERENCES) + list(hf.PARITY_TEXTS[:3])
    reference = str(tmp_path / "differences.npz")
    hf.keras_parity_reference(all_minilm, reference, texts=texts)
    proc, report = check_parity(path, reference)
    assert proc.returncode == 1
    differing = sorted(m["index"] for m in report["token_ids"]["mismatches"])
    assert differing == list(range(len(hf.KNOWN_TOKENIZER_DIFFERENCES))), \
        report["token_ids"]["mismatches"]
    # The exported tokenizer is the original checkpoint's, text for text.
    script = (
        "import json, sys\n"
        "from transformers import AutoTokenizer\n"
        "texts = json.loads(sys.argv[3])\n"
        "a = AutoTokenizer.from_pretrained(sys.argv[1])(texts)['input_ids']\n"
        "b = AutoTokenizer.from_pretrained(sys.argv[2])(texts)['input_ids']\n"
        "print(json.dumps([i for i, (x, y) in enumerate(zip(a, b)) if x != y]))\n"
    )
    from minilm_tf.models.encoders import builtin_model_dir

    proc = subprocess.run([TORCH_PYTHON, "-c", script, builtin_model_dir("all-minilm-l6-v2"),
                           path, json.dumps(texts + list(hf.PARITY_TEXTS))],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


@needs_torch_env
def test_check_tool_bad_input(tmp_path):
    proc, _ = check_parity(str(tmp_path / "missing"), str(tmp_path / "missing.npz"))
    assert proc.returncode == 2 and proc.stderr.startswith("error: ")


def test_model_card_of_a_distilled_student_keeps_its_distillation_facts(tmp_path):
    from minilm_tf.training.model_cards import distillation_card

    preset = export_fixtures.save_tiny_encoder_preset(str(tmp_path / "student"),
                                                      export_fixtures.real_vocab_tokenizer())
    report = {"config": {"teacher": "all-minilm-l6-v2", "objective": "minilm+300*embedding_mse",
                         "student": {"num_layers": 1}}, "steps": 7, "tokens_seen": 896,
              "heldout_loss_before": {"loss": 2.0}, "heldout_loss_after": {"loss": 1.5}}
    with open(os.path.join(preset, "README.md"), "w", encoding="utf-8") as f:
        f.write(distillation_card(report))
    out = tmp_path / "hf"
    hf.export_hf(minilm_tf.load_teacher(preset), str(out))
    card = (out / "README.md").read_text()
    assert "## Distillation" in card and "`minilm+300*embedding_mse`" in card
    assert "| loss | 2.0000 | 1.5000 |" in card and card.count("## Usage") == 1
