"""What a Hugging Face export can say about an encoder, and the JSON files
that say it: the checks that refuse what a BERT config cannot express,
`config.json`, the tokenizer files and the sentence-transformers configs
(`modules.json`, `1_Pooling/config.json`, `sentence_bert_config.json`,
`config_sentence_transformers.json`)."""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from minilm_tf import __version__, _compat
from minilm_tf.export.exportable import ST_POOLING_KEYS
from minilm_tf.export.hf_weights import ROBERTA_POSITION_OFFSET
from minilm_tf.export.source import sentence_bert_max_length
from minilm_tf.models.encoders import LoadedEncoder

# keras-hub backbone class -> (Hugging Face model_type, model class, the
# keras-hub tokenizer class it comes with).
ARCHITECTURES = {
    "BertBackbone": ("bert", "BertModel", "BertTokenizer"),
    "RobertaBackbone": ("roberta", "RobertaModel", "RobertaTokenizer"),
    "XLMRobertaBackbone": ("xlm-roberta", "XLMRobertaModel", "XLMRobertaTokenizer"),
    "DistilBertBackbone": ("distilbert", "DistilBertModel", "DistilBertTokenizer"),
    "ElectraBackbone": ("electra", "ElectraModel", "ElectraTokenizer"),
}
SUPPORTED = ("BERT, RoBERTa, XLM-RoBERTa, DistilBERT and ELECTRA encoders (keras-hub "
             "backbones with their own tokenizers)")

# encoder.hidden_act -> Hugging Face `hidden_act`, and the function family the
# Keras layers must compute for it.
HF_ACTIVATIONS = {
    "gelu": ("gelu", "gelu_exact"),
    "gelu_approximate": ("gelu_pytorch_tanh", "gelu_tanh"),
    "gelu_pytorch_tanh": ("gelu_pytorch_tanh", "gelu_tanh"),
    "gelu_new": ("gelu_new", "gelu_tanh"),
    "relu": ("relu", "relu"),
}

DEFAULT_MAX_SEQ_LENGTH = 128


class ExportError(ValueError):
    """The encoder cannot be exported in the Hugging Face format."""


# --------------------------------------------------------------------------- checks


def vocabulary_size(backbone) -> int:
    """The embedding table's rows (keras-hub's ELECTRA calls it `vocab_size`)."""
    size = getattr(backbone, "vocabulary_size", None)
    return int(size if size is not None else backbone.vocab_size)


def model_type(encoder: LoadedEncoder) -> str:
    """The Hugging Face `model_type` of the encoder's backbone (`bert`, ...)."""
    kind = type(encoder.backbone).__name__
    if kind not in ARCHITECTURES:
        raise ExportError(
            f"export_hf supports {SUPPORTED}; a {kind} (spec {encoder.spec!r}) has no "
            "Hugging Face mapping here."
        )
    return ARCHITECTURES[kind][0]


def check_encoder(encoder: LoadedEncoder) -> None:
    """Refuses (`ExportError`) an encoder whose backbone has no Hugging Face
    mapping, whose tokenizer is missing, is not its architecture's or has
    another size than the embedding table, or whose activation the config
    cannot name."""
    model_type(encoder)
    backbone = encoder.backbone
    tokenizer = encoder.tokenizer
    if tokenizer is None:
        raise ExportError(
            f"The encoder {encoder.spec!r} has no tokenizer; a Hugging Face export needs "
            "its vocabulary."
        )
    expected = ARCHITECTURES[type(backbone).__name__][2]
    if type(tokenizer).__name__ != expected:
        raise ExportError(
            f"A {type(backbone).__name__} is exported with a {expected}; the tokenizer is a "
            f"{type(tokenizer).__name__}."
        )
    vocab_size = int(tokenizer.vocabulary_size())
    if vocab_size != vocabulary_size(backbone):
        raise ExportError(
            f"The tokenizer has {vocab_size} tokens but the embedding table has "
            f"{vocabulary_size(backbone)} rows; the vocabulary does not belong to these "
            "weights, so the export would be unusable."
        )
    if encoder.hidden_act not in HF_ACTIVATIONS:
        raise ExportError(
            f"Unsupported feed-forward activation {encoder.hidden_act!r}; "
            f"supported: {sorted(HF_ACTIVATIONS)}."
        )


def _activation_family(fn) -> str | None:
    x = np.linspace(-4.0, 4.0, 81, dtype=np.float32)
    y = np.asarray(fn(tf.constant(x)), dtype=np.float64)
    xs = x.astype(np.float64)
    candidates = {
        "gelu_exact": np.array([0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0))) for v in xs]),
        "gelu_tanh": 0.5 * xs * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (xs + 0.044715 * xs**3))),
        "relu": np.maximum(xs, 0.0),
    }
    for name, expected in candidates.items():
        if np.max(np.abs(y - expected)) < 1e-5:
            return name
    return None


def hf_hidden_act(encoder: LoadedEncoder) -> str:
    """The Hugging Face `hidden_act` for what the encoder's layers compute.

    `encoder.hidden_act` names the activation; each layer's activation is
    also evaluated and must compute that function (exact vs tanh GELU
    differ by up to 5e-4), else an `ExportError`.
    """
    if encoder.hidden_act not in HF_ACTIVATIONS:
        raise ExportError(
            f"Unsupported feed-forward activation {encoder.hidden_act!r}; "
            f"supported: {sorted(HF_ACTIVATIONS)}."
        )
    hf_name, family = HF_ACTIVATIONS[encoder.hidden_act]
    for layer in encoder.backbone.transformer_layers:
        found = _activation_family(_compat.feedforward_intermediate(layer).activation)
        if found != family:
            raise ExportError(
                f"encoder.hidden_act is {encoder.hidden_act!r} ({family}) but "
                f"{layer.name} computes {found or 'another function'}; fix it with "
                "minilm_tf.models.encoders.set_feedforward_activation before exporting."
            )
    return hf_name


# --------------------------------------------------------------------------- configs


def _layer_norm_eps(backbone) -> float:
    eps = {float(backbone.get_layer("embeddings_layer_norm").epsilon)}
    for block in backbone.transformer_layers:
        eps.add(float(_compat.self_attention_norm(block).epsilon))
        eps.add(float(_compat.feedforward_norm(block).epsilon))
    if len(eps) != 1:
        raise ExportError(f"The layer norms use different epsilons {sorted(eps)}; a BERT "
                          "config has one layer_norm_eps.")
    return eps.pop()


def _common(encoder: LoadedEncoder, architecture: str) -> dict:
    b = encoder.backbone
    return {
        "architectures": [architecture],
        "model_type": model_type(encoder),
        "vocab_size": vocabulary_size(b),
        "initializer_range": 0.02,
        "pad_token_id": int(encoder.tokenizer.pad_token_id),
        "torch_dtype": "float32",
        "minilm_tf_version": __version__,
    }


def _bert_like(encoder: LoadedEncoder, type_vocab_size: int, max_positions: int) -> dict:
    b = encoder.backbone
    dropout = float(getattr(b, "dropout", 0.1))
    return {
        "hidden_size": int(b.hidden_dim),
        "num_hidden_layers": int(b.num_layers),
        "num_attention_heads": int(b.num_heads),
        "intermediate_size": int(b.intermediate_dim),
        "max_position_embeddings": max_positions,
        "type_vocab_size": type_vocab_size,
        "layer_norm_eps": _layer_norm_eps(b),
        "hidden_act": hf_hidden_act(encoder),
        "hidden_dropout_prob": dropout,
        "attention_probs_dropout_prob": dropout,
        "position_embedding_type": "absolute",
        "use_cache": True,
    }


def hf_config(encoder: LoadedEncoder) -> dict:
    """The Hugging Face `config.json` for the encoder (its architecture's
    model class: `BertModel`, `RobertaModel`, `XLMRobertaModel`,
    `DistilBertModel`, `ElectraModel`); call `check_encoder` first."""
    kind = type(encoder.backbone).__name__
    _, architecture, _ = ARCHITECTURES[kind]
    b = encoder.backbone
    config = _common(encoder, architecture)
    positions = int(b.max_sequence_length)
    if kind == "BertBackbone":
        config.update(_bert_like(encoder, int(b.num_segments), positions))
    elif kind == "ElectraBackbone":
        config.update(_bert_like(encoder, int(b.num_segments), positions))
        config["embedding_size"] = int(b.embedding_dim)
        config["summary_type"] = "first"
    elif kind in ("RobertaBackbone", "XLMRobertaBackbone"):
        config.update(_bert_like(encoder, 1, positions + ROBERTA_POSITION_OFFSET))
        config.update(bos_token_id=0, eos_token_id=2)
    else:  # DistilBertBackbone: its own field names; LayerNorm eps fixed at 1e-12.
        eps = _layer_norm_eps(b)
        if abs(eps - 1e-12) > 1e-15:
            raise ExportError(f"DistilBERT's Hugging Face model fixes layer_norm_eps at 1e-12; "
                              f"this encoder uses {eps:g}.")
        dropout = float(getattr(b, "dropout", 0.1))
        config.update({
            "dim": int(b.hidden_dim),
            "n_layers": int(b.num_layers),
            "n_heads": int(b.num_heads),
            "hidden_dim": int(b.intermediate_dim),
            "max_position_embeddings": positions,
            "activation": hf_hidden_act(encoder),
            "dropout": dropout,
            "attention_dropout": dropout,
            "sinusoidal_pos_embds": False,
        })
    return config


def is_sentence_encoder(encoder: LoadedEncoder) -> bool:
    """Whether the encoder has a sentence-transformers pooling / normalisation."""
    return "pooling" in encoder.metadata or "normalize" in encoder.metadata


def max_seq_length(encoder: LoadedEncoder, value: int | None = None) -> int:
    """sentence-transformers `max_seq_length`: `value` when given, else the
    encoder's `metadata["max_seq_length"]`, its source directory's
    `sentence_bert_config.json`, else 128 (as the SavedModel export) capped
    at the position embeddings."""
    limit = int(encoder.backbone.max_sequence_length)
    if value is not None:
        if not 3 <= int(value) <= limit:
            raise ExportError(f"max_seq_length must be between 3 and the {limit} position "
                              f"embeddings, got {value}.")
        return int(value)
    value = encoder.metadata.get("max_seq_length") or sentence_bert_max_length(
        encoder.source_dir) or DEFAULT_MAX_SEQ_LENGTH
    return min(int(value), limit)


def pooling_config(encoder: LoadedEncoder) -> dict:
    """`1_Pooling/config.json`: the encoder's sentence-transformers pooling
    config (mean pooling when it has none) with this model's width."""
    config = dict(encoder.metadata.get("pooling") or {"pooling_mode_mean_tokens": True})
    for key in ("pooling_mode_cls_token", "pooling_mode_mean_tokens",
                "pooling_mode_max_tokens", "pooling_mode_mean_sqrt_len_tokens"):
        config.setdefault(key, False)
    config["word_embedding_dimension"] = int(encoder.backbone.hidden_dim)
    return config


def modules_config(normalize: bool) -> list[dict]:
    """`modules.json`: Transformer -> Pooling (-> Normalize)."""
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling",
         "type": "sentence_transformers.models.Pooling"},
    ]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize",
                        "type": "sentence_transformers.models.Normalize"})
    return modules


def pooling_names(config: dict) -> list[str]:
    """`mean`, `cls`, ... for a sentence-transformers pooling config."""
    short = {key: name for name, key in ST_POOLING_KEYS.items()}
    return [short.get(k, k[len("pooling_mode_"):]) for k, v in config.items()
            if k.startswith("pooling_mode_") and v]


def sentence_bert_config(max_seq_length: int) -> dict:
    """`sentence_bert_config.json` (the tokenizer files say how to lowercase)."""
    return {"max_seq_length": max_seq_length, "do_lower_case": False}


def sentence_transformers_config() -> dict:
    """`config_sentence_transformers.json`: cosine similarity, no prompts."""
    return {
        "model_type": "SentenceTransformer",
        "__version__": {"minilm_tf": __version__},
        "prompts": {},
        "default_prompt_name": None,
        "similarity_fn_name": "cosine",
    }
