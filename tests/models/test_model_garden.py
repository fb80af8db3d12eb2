"""TF Model Garden BERT encoders (minilm_tf.models.model_garden) against the real library.

The fixtures under tests/fixtures/model_garden were written by
tools/make_model_garden_fixture.py in .venv-model-garden (tf-models-official,
TensorFlow 2.20): random `BertEncoder` and `BertEncoderV2` checkpoints with
their outputs on fixed inputs, and ALBERT, MobileBERT and EncoderScaffold
checkpoints that must be refused. The check that `BertEncoder` restores what
`save_model_garden_encoder` writes runs that environment and is skipped only
when it does not exist.
"""

import json
import os
import shutil
import subprocess

import numpy as np
import pytest
import tensorflow as tf

import minilm_tf
from minilm_tf.models import model_garden
from minilm_tf.layers import truncated_encoder
from minilm_tf.models.encoders import LoadedEncoder
from locations import FIXTURES_DIR, REPO_ROOT, TOOLS_DIR

FIXTURES = os.path.join(FIXTURES_DIR, "model_garden")
BERT_ENCODER = os.path.join(FIXTURES, "bert_encoder")
MODEL_GARDEN_PYTHON = os.path.join(REPO_ROOT, ".venv-model-garden", "bin", "python")
FIXTURE_TOOL = os.path.join(TOOLS_DIR, "make_model_garden_fixture.py")


def _inputs(directory):
    data = np.load(os.path.join(directory, "outputs.npz"))
    return data, {"token_ids": data["input_word_ids"], "segment_ids": data["input_type_ids"],
                  "padding_mask": data["input_mask"]}


def _outputs(encoder, inputs):
    out = encoder.backbone(inputs)
    return {k: np.asarray(out[k]) for k in ("sequence_output", "pooled_output")}


def _copy(tmp_path, name="bert_encoder"):
    directory = str(tmp_path / name)
    shutil.copytree(os.path.join(FIXTURES, name), directory)
    return directory


def _edit_config(directory, **changes):
    path = os.path.join(directory, model_garden.CONFIG_FILE)
    with open(path, encoding="utf-8") as f:
        config = json.load(f)
    config[config["type"]].update(changes)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(config, f)


@pytest.mark.parametrize("name,encoder_class", [("bert_encoder", "BertEncoder"),
                                                ("bert_encoder_v2", "BertEncoderV2")])
def test_load_teacher_matches_model_garden_outputs(name, encoder_class):
    directory = os.path.join(FIXTURES, name)
    data, inputs = _inputs(directory)
    assert str(data["encoder_class"]) == encoder_class
    teacher = minilm_tf.load_teacher(directory)
    assert isinstance(teacher, LoadedEncoder) and teacher.hidden_act == "gelu_approximate"
    assert teacher.backbone.num_layers == 2 and teacher.backbone.hidden_dim == 32
    out = _outputs(teacher, inputs)
    for key in ("sequence_output", "pooled_output"):
        np.testing.assert_allclose(out[key], data[key], atol=1e-5, rtol=0)
    # The first layer's output too: every layer is mapped, not only the last.
    first = np.asarray(truncated_encoder(teacher.backbone, 1)(inputs))
    np.testing.assert_allclose(first, data["encoder_output_0"], atol=1e-5, rtol=0)
    assert np.abs(data["sequence_output"]).max() > 0.1  # outputs that could differ


def test_exact_gelu_would_not_match():
    """The fixture can tell Model Garden's tanh GELU from the exact one."""
    data, inputs = _inputs(BERT_ENCODER)
    teacher = minilm_tf.load_teacher(BERT_ENCODER)
    minilm_tf.models.encoders.set_feedforward_activation(teacher.backbone, "gelu")
    diff = np.abs(_outputs(teacher, inputs)["sequence_output"] - data["sequence_output"]).max()
    assert diff > 5e-5  # several times the 1e-5 the fixture test allows


def test_tokenizer_reads_the_vocabulary():
    teacher = minilm_tf.load_teacher(BERT_ENCODER)
    with open(os.path.join(BERT_ENCODER, "vocab.txt"), encoding="utf-8") as f:
        vocab = f.read().split("\n")
    assert teacher.lowercase  # the vocabulary holds no upper-case piece
    want = [vocab.index(t) for t in ("the", "model", "garden", "teacher", "##s", "!")]
    assert np.asarray(teacher.tokenizer(["The Model garden teachers!"]))[0].tolist() == want
    assert teacher.tokenizer.vocabulary_size() == teacher.backbone.vocabulary_size


def test_original_bert_config_json_is_read(tmp_path):
    """Model Garden's pretrained BERT downloads carry bert_config.json."""
    directory = _copy(tmp_path)
    with open(os.path.join(directory, model_garden.CONFIG_FILE), encoding="utf-8") as f:
        config = json.load(f)["bert"]
    os.remove(os.path.join(directory, model_garden.CONFIG_FILE))
    with open(os.path.join(directory, model_garden.BERT_CONFIG_FILE), "w", encoding="utf-8") as f:
        json.dump({"vocab_size": config["vocab_size"], "hidden_size": 32,
                   "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64,
                   "hidden_act": "gelu", "max_position_embeddings": 32,
                   "type_vocab_size": 2}, f)
    data, inputs = _inputs(directory)
    out = _outputs(minilm_tf.load_teacher(directory), inputs)
    np.testing.assert_allclose(out["sequence_output"], data["sequence_output"], atol=1e-5,
                               rtol=0)


@pytest.mark.parametrize("name,match", [
    ("albert", r"'albert' encoder.*ALBERT shares one transformer layer"),
    ("mobilebert", r"'mobilebert' encoder.*MobileBERT's bottleneck blocks"),
    ("encoder_scaffold", r"not a BertEncoder checkpoint.*EncoderScaffold"),
])
def test_other_model_garden_encoders_are_refused(name, match):
    with pytest.raises(ValueError, match=match):
        minilm_tf.load_teacher(os.path.join(FIXTURES, name))


@pytest.mark.parametrize("name,match", [
    ("albert", r"not a BertEncoder checkpoint.*ALBERT shares one layer"),
    ("mobilebert", r"not a BertEncoder checkpoint.*MobileBERT"),
])
def test_a_bert_config_does_not_hide_another_encoder(tmp_path, name, match):
    """The checkpoint's own objects are checked, not only the config's word."""
    directory = _copy(tmp_path, name)
    shutil.copy(os.path.join(FIXTURES, "encoder_scaffold", model_garden.CONFIG_FILE), directory)
    with pytest.raises(ValueError, match=match):
        minilm_tf.load_teacher(directory)


@pytest.mark.parametrize("changes,error,match", [
    ({"norm_first": True}, ValueError, "norm_first=true"),
    ({"embedding_size": 16}, ValueError, "factorises the embeddings"),
    ({"hidden_activation": "swish"}, ValueError, "hidden_activation='swish'"),
    ({"num_layers": 3}, ValueError, "has 2 transformer layers but its config says num_layers=3"),
    ({"intermediate_size": 48}, ValueError, r"shape \(32, 64\).*implies \(32, 48\)"),
    ({"vocab_size": 50}, ValueError, r"shape \(47, 32\).*encoder_config.json implies \(50, 32\)"),
    ({"hidden_size": None}, ValueError, "lacks hidden_size"),
])
def test_config_refusals(tmp_path, changes, error, match):
    directory = _copy(tmp_path)
    _edit_config(directory, **changes)
    with pytest.raises(error, match=match):
        minilm_tf.load_teacher(directory)


def test_another_encoder_type_is_refused_with_its_reason(tmp_path):
    directory = _copy(tmp_path)
    with open(os.path.join(directory, model_garden.CONFIG_FILE), "w", encoding="utf-8") as f:
        json.dump({"type": "bigbird", "bigbird": {}}, f)
    with pytest.raises(ValueError, match="'bigbird' encoder.*block-sparse attention"):
        minilm_tf.load_teacher(directory)


def test_missing_pieces_are_named(tmp_path):
    directory = _copy(tmp_path)
    vocab = os.path.join(directory, "vocab.txt")
    with open(vocab, encoding="utf-8") as f:
        tokens = f.read().split()
    with open(vocab, "w", encoding="utf-8") as f:
        f.write("\n".join(tokens[:-1]) + "\n")
    with pytest.raises(ValueError, match="has 46 tokens but .* vocab_size=47 rows"):
        minilm_tf.load_teacher(directory)
    os.remove(vocab)
    with pytest.raises(FileNotFoundError, match="has no vocab.txt"):
        minilm_tf.load_teacher(directory)

    root = tmp_path / "other_root"
    root.mkdir()
    shutil.copy(os.path.join(BERT_ENCODER, model_garden.CONFIG_FILE), root)
    tf.train.Checkpoint(model=tf.Module()).save(str(root / "ckpt"))
    with pytest.raises(ValueError, match=r"no 'encoder' object.*tf.train.Checkpoint\(encoder="):
        minilm_tf.load_teacher(str(root))


def test_tf1_name_based_checkpoints_are_refused(tmp_path):
    """Original BERT's TF1 checkpoints sit beside a bert_config.json too."""
    directory = tmp_path / "tf1_bert"
    directory.mkdir()
    shutil.copy(os.path.join(BERT_ENCODER, "vocab.txt"), directory)
    with open(directory / model_garden.BERT_CONFIG_FILE, "w", encoding="utf-8") as f:
        json.dump({"vocab_size": 47, "hidden_size": 32, "num_hidden_layers": 2,
                   "num_attention_heads": 4, "intermediate_size": 64}, f)
    with tf.Graph().as_default():
        tf.compat.v1.get_variable("bert/embeddings/word_embeddings", shape=[47, 32])
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            tf.compat.v1.train.Saver().save(session, str(directory / "bert_model.ckpt"))
    with pytest.raises(ValueError, match="TF1 name-based checkpoint"):
        minilm_tf.load_teacher(str(directory))


def _student(seed=3):
    teacher = minilm_tf.load_teacher(BERT_ENCODER)
    return minilm_tf.build_student(teacher, num_layers=1, hidden_dim=16, num_heads=2,
                                   init="random", seed=seed)


def test_written_checkpoint_has_model_gardens_variable_names(tmp_path):
    """What we write for the V2 fixture's encoder holds exactly the variables,
    names and shapes that Model Garden's BertEncoderV2 saved (its checkpoint
    keys are the object paths BertEncoder and BertEncoderV2 both restore by)."""
    teacher = minilm_tf.load_teacher(os.path.join(FIXTURES, "bert_encoder_v2"))
    path = model_garden.save_model_garden_encoder(teacher, str(tmp_path / "written"))

    def encoder_variables(prefix):
        return {(n, tuple(s)) for n, s in tf.train.list_variables(prefix)
                if n.startswith(model_garden.ROOT + "/")}

    real = encoder_variables(model_garden.checkpoint_path(os.path.join(FIXTURES,
                                                                       "bert_encoder_v2")))
    assert encoder_variables(path) == real and len(real) == 5 + 16 * 2 + 2
    reader, original = tf.train.load_checkpoint(path), tf.train.load_checkpoint(
        model_garden.checkpoint_path(os.path.join(FIXTURES, "bert_encoder_v2")))
    for name, _ in real:
        np.testing.assert_array_equal(reader.get_tensor(name), original.get_tensor(name))


def test_student_round_trip(tmp_path):
    student = _student()
    directory = str(tmp_path / "student")
    model_garden.save_model_garden_encoder(student, directory)
    with open(os.path.join(directory, model_garden.CONFIG_FILE), encoding="utf-8") as f:
        config = json.load(f)
    assert config["type"] == "bert" and config["bert"]["hidden_size"] == 16
    assert config["bert"]["num_layers"] == 1 and config["bert"]["hidden_activation"] == "gelu"
    loaded = minilm_tf.load_teacher(directory)
    _, inputs = _inputs(BERT_ENCODER)
    want, got = _outputs(student, inputs), _outputs(loaded, inputs)
    for key in want:
        np.testing.assert_array_equal(got[key], want[key])
    assert loaded.tokenizer.get_vocabulary() == student.tokenizer.get_vocabulary()


def test_writer_refusals(tmp_path):
    student = _student()
    exact = LoadedEncoder(student.backbone, student.tokenizer, "s", "gelu")
    with pytest.raises(ValueError, match="exact GELU.*approximate_gelu=True"):
        model_garden.save_model_garden_encoder(exact, str(tmp_path / "exact"))
    model_garden.save_model_garden_encoder(exact, str(tmp_path / "exact"), approximate_gelu=True)
    with pytest.raises(FileExistsError, match="not empty"):
        model_garden.save_model_garden_encoder(student, str(tmp_path / "exact"))


@pytest.mark.skipif(not os.path.exists(MODEL_GARDEN_PYTHON),
                    reason=".venv-model-garden/bin/python does not exist: run "
                           "tools/make_model_garden_env.sh to create the Model Garden environment")
def test_model_garden_bert_encoder_restores_a_written_student(tmp_path):
    student = _student()
    directory = str(tmp_path / "student")
    model_garden.save_model_garden_encoder(student, directory)
    data, inputs = _inputs(BERT_ENCODER)
    out = _outputs(student, inputs)
    np.savez(os.path.join(directory, "outputs.npz"), input_word_ids=data["input_word_ids"],
             input_mask=data["input_mask"], input_type_ids=data["input_type_ids"], **out)
    result = subprocess.run([MODEL_GARDEN_PYTHON, FIXTURE_TOOL, "--check", directory],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "OK: BertEncoder restored" in result.stdout
    assert "OK: BertEncoderV2 restored" in result.stdout
