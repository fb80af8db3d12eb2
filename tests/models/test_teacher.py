"""Teacher loading: parity with Hugging Face transformers, and bad input."""

import json
import os
import shutil

import numpy as np
import pytest

from minilm_tf import load_teacher
from minilm_tf.models.encoders import builtin_model_dir, save_encoder
from locations import FIXTURES_DIR

FIXTURE = os.path.join(FIXTURES_DIR, "all_minilm_l6_v2_reference.npz")


def test_parity_with_hugging_face_reference(all_minilm):
    """Fixture made by tools/make_parity_fixture.py with transformers on PyTorch."""
    ref = np.load(FIXTURE)
    inputs = {k: ref[k] for k in ("token_ids", "segment_ids", "padding_mask")}
    out = all_minilm.backbone(inputs)["sequence_output"].numpy()
    mask = ref["padding_mask"].astype(bool)
    assert np.abs(out[mask] - ref["last_hidden_state"][mask]).max() <= 1e-5
    pooled = (out * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    assert np.abs(pooled - ref["mean_pooled"]).max() <= 1e-5
    # The tokenizer gives the same ids as Hugging Face's.
    ids = all_minilm.tokenizer(list(ref["sentences"]))
    ids = ids.to_list() if hasattr(ids, "to_list") else ids
    for row, real, want in zip(ids, mask, ref["token_ids"]):
        assert [101, *row, 102] == list(want[real])


def test_exact_gelu_matters(all_minilm):
    """With keras-hub's approximate GELU the parity would fail: the test can fail."""
    from minilm_tf.models.encoders import set_feedforward_activation

    ref = np.load(FIXTURE)
    inputs = {k: ref[k] for k in ("token_ids", "segment_ids", "padding_mask")}
    set_feedforward_activation(all_minilm.backbone, "gelu_approximate")
    try:
        out = all_minilm.backbone(inputs)["sequence_output"].numpy()
    finally:
        set_feedforward_activation(all_minilm.backbone, "gelu")
    mask = ref["padding_mask"].astype(bool)
    assert np.abs(out[mask] - ref["last_hidden_state"][mask]).max() > 1e-4


def test_metadata_from_sentence_transformers(all_minilm):
    assert all_minilm.hidden_act == "gelu"
    assert all_minilm.lowercase
    assert all_minilm.metadata["pooling"]["pooling_mode_mean_tokens"]
    assert all_minilm.metadata["normalize"] is True


def test_preset_directory_round_trip(all_minilm, tmp_path):
    import keras_hub

    target = str(tmp_path / "preset")
    save_encoder(all_minilm, target)
    again = load_teacher(target)
    assert again.hidden_act == "gelu"
    ref = np.load(FIXTURE)
    inputs = {k: ref[k][:2] for k in ("token_ids", "segment_ids", "padding_mask")}
    np.testing.assert_allclose(
        again.backbone(inputs)["sequence_output"].numpy(),
        all_minilm.backbone(inputs)["sequence_output"].numpy(),
        atol=1e-6,
    )
    assert isinstance(keras_hub.models.Backbone.from_preset(target), keras_hub.models.BertBackbone)


def _copy_model(tmp_path):
    target = tmp_path / "hf"
    shutil.copytree(builtin_model_dir("all-minilm-l6-v2"), target)
    return target


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_teacher(str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_teacher(str(tmp_path))


def test_unsupported_model_type(tmp_path):
    target = _copy_model(tmp_path)
    config = json.loads((target / "config.json").read_text())
    config["model_type"] = "gpt2"
    (target / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="model_type='gpt2'"):
        load_teacher(str(target))


def test_truncated_safetensors(tmp_path):
    target = _copy_model(tmp_path)
    weights = target / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: 1 << 20])
    with pytest.raises(ValueError, match="corrupt or truncated"):
        load_teacher(str(target))


def test_vocabulary_of_wrong_size(tmp_path):
    target = _copy_model(tmp_path)
    vocab = (target / "vocab.txt").read_text().splitlines()
    (target / "vocab.txt").write_text("\n".join(vocab[:-10]) + "\n")
    with pytest.raises(ValueError, match="vocabulary .* has 30512 tokens .* 30522 rows"):
        load_teacher(str(target))


def test_missing_vocabulary(tmp_path):
    target = _copy_model(tmp_path)
    (target / "vocab.txt").unlink()
    with pytest.raises(FileNotFoundError, match="no usable tokenizer files"):
        load_teacher(str(target))


def test_truncated_preset_weights_are_a_clear_error(tmp_path):
    import export_fixtures
    from minilm_tf.models.encoders import LoadedEncoder

    tokenizer = export_fixtures.real_vocab_tokenizer()
    target = tmp_path / "preset"
    save_encoder(LoadedEncoder(export_fixtures.tiny_backbone(tokenizer), tokenizer, "tiny",
                               "gelu_approximate"), str(target))
    assert load_teacher(str(target)).backbone.num_layers == 1
    weights = target / "model.weights.h5"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ValueError) as error:
        load_teacher(str(target))
    message = str(error.value)
    assert message.startswith(f"{weights} is damaged (truncated or not a valid HDF5 file)")
    assert "truncated file" in message and message.endswith("Re-save the preset or re-download it.")


def test_preset_config_that_disagrees_with_its_weights_names_the_mismatch(tmp_path):
    """Keras alone says "expected 1 variables, but received 0"; the error
    names the config key, its value and what the weights file holds."""
    import export_fixtures
    from minilm_tf.models.encoders import LoadedEncoder

    tokenizer = export_fixtures.real_vocab_tokenizer()
    target = tmp_path / "preset"
    save_encoder(LoadedEncoder(export_fixtures.tiny_backbone(tokenizer), tokenizer, "tiny",
                               "gelu_approximate"), str(target))
    original = json.loads((target / "config.json").read_text())
    for key, value, held in (("num_layers", 3, 1), ("hidden_dim", 64, export_fixtures.HIDDEN),
                             ("num_heads", 4, 2), ("intermediate_dim", 7, 2 * export_fixtures.HIDDEN)):
        config = json.loads(json.dumps(original))
        config["config"][key] = value
        (target / "config.json").write_text(json.dumps(config))
        with pytest.raises(ValueError) as error:
            load_teacher(str(target))
        assert str(error.value) == (
            f"The preset {target} does not match its weights ({key} is {value} in "
            f"config.json but {held} in model.weights.h5): config.json and model.weights.h5 "
            "come from different models. Re-save the preset (or restore its config.json).")
    (target / "config.json").write_text(json.dumps(original))
    assert load_teacher(str(target)).backbone.num_layers == 1


def test_load_encoder_is_the_name_and_load_teacher_its_alias():
    import minilm_tf

    assert minilm_tf.load_teacher is minilm_tf.load_encoder
    assert minilm_tf.load_encoder.__name__ == "load_encoder"
