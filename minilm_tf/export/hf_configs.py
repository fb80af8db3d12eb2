"""What a Hugging Face export can say about an encoder, and the JSON files
that say it: the checks that refuse what a BERT config cannot express,
`config.json`, the tokenizer files and the sentence-transformers configs
(`modules.json`, `1_Pooling/config.json`, `sentence_bert_config.json`,
`config_sentence_transformers.json`)."""

from __future__ import annotations

import math

import keras_hub
import numpy as np
import tensorflow as tf

from minilm_tf import __version__, _compat
from minilm_tf.export.exportable import ST_POOLING_KEYS
from minilm_tf.export.source import sentence_bert_max_length
from minilm_tf.models.encoders import LoadedEncoder

SUPPORTED = "BERT-architecture encoders (keras_hub.models.BertBackbone with a BertTokenizer)"

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


def check_encoder(encoder: LoadedEncoder) -> None:
    """Refuses (`ExportError`) an encoder that is not a BERT backbone with a
    WordPiece `BertTokenizer` of its embedding table's size, or whose
    activation a BERT config cannot name."""
    backbone = encoder.backbone
    if not isinstance(backbone, keras_hub.models.BertBackbone):
        raise ExportError(
            f"export_hf supports {SUPPORTED} only; got a {type(backbone).__name__} "
            f"(spec {encoder.spec!r}). RoBERTa, DistilBERT, ELECTRA and other "
            "architectures are not exported yet."
        )
    tokenizer = encoder.tokenizer
    if tokenizer is None:
        raise ExportError(
            f"The encoder {encoder.spec!r} has no tokenizer; a Hugging Face export needs "
            "its WordPiece vocabulary."
        )
    if not isinstance(tokenizer, keras_hub.models.BertTokenizer):
        raise ExportError(
            f"export_hf supports {SUPPORTED} only; the tokenizer is a "
            f"{type(tokenizer).__name__}."
        )
    vocab_size = int(tokenizer.vocabulary_size())
    if vocab_size != int(backbone.vocabulary_size):
        raise ExportError(
            f"The tokenizer has {vocab_size} tokens but the embedding table has "
            f"{backbone.vocabulary_size} rows; the vocabulary does not belong to these "
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


def hf_config(encoder: LoadedEncoder) -> dict:
    """The Hugging Face `config.json` for the encoder."""
    b = encoder.backbone
    dropout = float(getattr(b, "dropout", 0.1))
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "hidden_size": int(b.hidden_dim),
        "num_hidden_layers": int(b.num_layers),
        "num_attention_heads": int(b.num_heads),
        "intermediate_size": int(b.intermediate_dim),
        "max_position_embeddings": int(b.max_sequence_length),
        "type_vocab_size": int(b.num_segments),
        "vocab_size": int(b.vocabulary_size),
        "layer_norm_eps": _layer_norm_eps(b),
        "hidden_act": hf_hidden_act(encoder),
        "hidden_dropout_prob": dropout,
        "attention_probs_dropout_prob": dropout,
        "initializer_range": 0.02,
        "pad_token_id": int(encoder.tokenizer.pad_token_id),
        "position_embedding_type": "absolute",
        "torch_dtype": "float32",
        "use_cache": True,
        "minilm_tf_version": __version__,
    }


def special_tokens_map(tokenizer) -> dict:
    """`special_tokens_map.json`: the keras-hub tokenizer's special tokens."""
    return {
        "unk_token": tokenizer.oov_token,
        "sep_token": tokenizer.sep_token,
        "pad_token": tokenizer.pad_token,
        "cls_token": tokenizer.cls_token,
        "mask_token": tokenizer.mask_token,
    }


def tokenizer_config(tokenizer, model_max_length: int) -> dict:
    """`tokenizer_config.json` for Hugging Face's `BertTokenizer(Fast)` that
    normalises like the keras-hub tokenizer."""
    lowercase = bool(getattr(tokenizer, "lowercase", False))
    return {
        "tokenizer_class": "BertTokenizer",
        "do_lower_case": lowercase,
        # Explicit: HF strips accents whenever it lowercases when this is null.
        "strip_accents": bool(getattr(tokenizer, "strip_accents", False)),
        "tokenize_chinese_chars": bool(getattr(tokenizer, "split_on_cjk", True)),
        "do_basic_tokenize": True,
        "never_split": None,
        "model_max_length": int(model_max_length),
        "clean_up_tokenization_spaces": True,
        **special_tokens_map(tokenizer),
    }


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
