"""Hugging Face / sentence-transformers export of BERT-architecture encoders.

`export_hf(encoder, directory)` writes a directory that
`transformers.AutoModel.from_pretrained`, `AutoTokenizer.from_pretrained`
and (for sentence encoders) `sentence_transformers.SentenceTransformer`
load as they load a checkpoint from the Hugging Face Hub:

* `config.json`: a `BertModel` config whose `hidden_act` is the activation
  the Keras layers compute (`gelu` for exact GELU, `gelu_pytorch_tanh` for
  keras-hub's tanh approximation);
* `model.safetensors`: float32 weights under Hugging Face's BERT names. The
  mapping is the inverse of keras-hub's own importer
  (`keras_hub/src/utils/transformers/convert_bert.py`): dense kernels are
  transposed to torch's `[out, in]`, attention kernels
  `[hidden, heads, head_dim]` flattened first;
* `vocab.txt`, `tokenizer_config.json` (`do_lower_case`, `strip_accents`,
  `tokenize_chinese_chars` as the keras-hub tokenizer does them),
  `special_tokens_map.json`;
* for sentence encoders (`encoder.metadata` has `pooling` or `normalize`):
  `modules.json`, `1_Pooling/config.json`, `sentence_bert_config.json`,
  `2_Normalize/` (when normalised) and `config_sentence_transformers.json`;
* `README.md`: a model card (architecture, parameters, initialisation and
  provenance from `encoder.metadata` / `encoder.spec`, loading snippets).

Only BERT backbones (`keras_hub.models.BertBackbone`) with a WordPiece
`BertTokenizer` are exported; anything else is refused with an error.
Weights are written with the `safetensors` library (numpy API): no torch.

`keras_parity_reference(encoder, path)` writes what the Keras encoder
computes for `PARITY_TEXTS` (token ids, last hidden states, pooled output,
sentence embeddings) to an `.npz` that `tools/check_hf_parity.py` compares
with the real libraries.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Sequence

import numpy as np

from minilm_tf import _compat
from minilm_tf.utils import workdir as workdirs
from minilm_tf.utils.fileio import atomic_directory
from minilm_tf.models.students import count_params
from minilm_tf.models.encoders import LoadedEncoder

logger = logging.getLogger(__name__)

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

# Texts for the Keras <-> transformers / sentence-transformers parity check:
# accents, punctuation, numbers, long words, Chinese, an empty and a
# whitespace-only string, a text longer than max_seq_length (truncated).
# Characters that keras-hub and Hugging Face tokenise differently are left
# out on purpose: see KNOWN_TOKENIZER_DIFFERENCES.
PARITY_TEXTS = (
    "A great movie, with a wonderful cast.",
    "Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e in Z\u00fcrich: "
    "na\u00efve r\u00e9sum\u00e9s & \u00c5ngstr\u00f6m!",
    "Prices rose 3.75% to $1,299.99 on 2024-03-15 (up from 1,100 in Q4).",
    "Pneumonoultramicroscopicsilicovolcanoconiosis and "
    "antidisestablishmentarianism are long words.",
    "What?! No... really?? \"Yes\" -- she said; (maybe) [not] {sure} <ok> #1 @home ~50/50",
    "",
    "   ",
    "\u6211\u559c\u6b22\u8fd9\u90e8\u7535\u5f71 and the Champs-\u00c9lys\u00e9es in M\u00fcnchen?",
    "UPPER lower MiXeD CaSe t3xt w1th d1g1ts, e-mail: someone@example.com",
    " ".join(f"word{i} is number {i}," for i in range(120)),
)


# Texts that keras-hub's BertTokenizer and Hugging Face's BertTokenizer
# (what an export loads with) tokenise differently: keras-hub lowercases by
# NFKC case folding (ß -> ss, final sigma -> sigma, ligatures, full-width
# and compatibility forms -> their plain letters), splits words on ASCII
# whitespace only, keeps control and format characters inside words,
# recomposes Hangul after accent stripping, and does not match special
# tokens written in the text. tests/test_export_hf.py checks that these, and
# only these, differ, so this list stays true.
KNOWN_TOKENIZER_DIFFERENCES = (
    "Stra\u00dfe",  # keras-hub: st ##ras ##se; HF: st ##raße
    "wait\u2026 what",  # keras-hub: ...; HF: …
    "\ud55c\uad6d\uc5b4 text",  # keras-hub: [UNK]; HF: jamo pieces
    "a\u00a0b",  # no-break space: keras-hub [UNK] (one word); HF a b
    "a\u3000b",  # ideographic space
    "zero\u200bwidth",  # zero-width space: a boundary in keras-hub, deleted in HF
    "soft\u00adhyphen",
    "ctrl\x07char",
    "\uff21\uff22\uff23 full width",  # keras-hub: abc; HF: [UNK]
    "\ufb01ne ligature",  # keras-hub: fine; HF: ﬁ ##ne
    "\u03bb\u03cc\u03b3\u03bf\u03c2",  # keras-hub: ##ο ##σ; HF: ##ος
    "\u2103 \u2460\u2461 \u2167",  # ℃ ①② Ⅷ: keras-hub °c 12 viii; HF [UNK]
    "[CLS] literal [SEP]",  # HF: special tokens; keras-hub: [ cl ##s ] ...
)


class ExportError(ValueError):
    """The encoder cannot be exported in the Hugging Face format."""


# --------------------------------------------------------------------------- checks


def _check_encoder(encoder: LoadedEncoder) -> None:
    import keras_hub

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
    import math

    import tensorflow as tf

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


# --------------------------------------------------------------------------- weights


def _np(variable) -> np.ndarray:
    return np.asarray(variable.numpy() if hasattr(variable, "numpy") else variable,
                      dtype=np.float32)


def _dense_kernel(kernel, fan_in: int | None = None, fan_out: int | None = None) -> np.ndarray:
    """Keras kernel `[in..., out...]` -> torch Linear weight `[out, in]`.

    The inverse of keras-hub's `np.reshape(np.transpose(w), kernel.shape)`.
    """
    k = _np(kernel)
    if fan_in is not None:
        k = k.reshape(fan_in, -1)
    elif fan_out is not None:
        k = k.reshape(-1, fan_out)
    return np.ascontiguousarray(k.T)


def hf_state_dict(backbone) -> dict[str, np.ndarray]:
    """The backbone's weights under Hugging Face `BertModel` names (float32)."""
    hidden = int(backbone.hidden_dim)
    w = {
        "embeddings.word_embeddings.weight": _np(backbone.get_layer("token_embedding").embeddings),
        "embeddings.position_embeddings.weight": _np(
            backbone.get_layer("position_embedding").position_embeddings),
        "embeddings.token_type_embeddings.weight": _np(
            backbone.get_layer("segment_embedding").embeddings),
        "embeddings.LayerNorm.weight": _np(backbone.get_layer("embeddings_layer_norm").gamma),
        "embeddings.LayerNorm.bias": _np(backbone.get_layer("embeddings_layer_norm").beta),
    }
    for i, block in enumerate(backbone.transformer_layers):
        attn = _compat.self_attention(block)
        p = f"encoder.layer.{i}."
        for name, dense in (("query", attn.query_dense), ("key", attn.key_dense),
                            ("value", attn.value_dense)):
            w[f"{p}attention.self.{name}.weight"] = _dense_kernel(dense.kernel, fan_in=hidden)
            w[f"{p}attention.self.{name}.bias"] = _np(dense.bias).reshape(-1)
        w[f"{p}attention.output.dense.weight"] = _dense_kernel(attn.output_dense.kernel,
                                                               fan_out=hidden)
        w[f"{p}attention.output.dense.bias"] = _np(attn.output_dense.bias).reshape(-1)
        w[f"{p}attention.output.LayerNorm.weight"] = _np(_compat.self_attention_norm(block).gamma)
        w[f"{p}attention.output.LayerNorm.bias"] = _np(_compat.self_attention_norm(block).beta)
        intermediate, output = _compat.feedforward_intermediate(block), _compat.feedforward_output(block)
        w[f"{p}intermediate.dense.weight"] = _dense_kernel(intermediate.kernel)
        w[f"{p}intermediate.dense.bias"] = _np(intermediate.bias)
        w[f"{p}output.dense.weight"] = _dense_kernel(output.kernel)
        w[f"{p}output.dense.bias"] = _np(output.bias)
        w[f"{p}output.LayerNorm.weight"] = _np(_compat.feedforward_norm(block).gamma)
        w[f"{p}output.LayerNorm.bias"] = _np(_compat.feedforward_norm(block).beta)
    pooled = backbone.get_layer("pooled_dense")
    w["pooler.dense.weight"] = _dense_kernel(pooled.kernel)
    w["pooler.dense.bias"] = _np(pooled.bias)
    return {k: np.ascontiguousarray(v) for k, v in w.items()}


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
    from minilm_tf import __version__

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


def _special_tokens(tokenizer) -> dict:
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
        **_special_tokens(tokenizer),
    }


def is_sentence_encoder(encoder: LoadedEncoder) -> bool:
    return "pooling" in encoder.metadata or "normalize" in encoder.metadata


def max_seq_length(encoder: LoadedEncoder, value: int | None = None) -> int:
    """sentence-transformers `max_seq_length`: `value` when given, else the
    encoder's `metadata["max_seq_length"]`, its source directory's
    `sentence_bert_config.json`, else 128 (as the SavedModel export) capped
    at the position embeddings."""
    from minilm_tf.export.source import _sentence_bert_max_length

    limit = int(encoder.backbone.max_sequence_length)
    if value is not None:
        if not 3 <= int(value) <= limit:
            raise ExportError(f"max_seq_length must be between 3 and the {limit} position "
                              f"embeddings, got {value}.")
        return int(value)
    value = encoder.metadata.get("max_seq_length") or _sentence_bert_max_length(
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


def _modules(normalize: bool) -> list[dict]:
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling",
         "type": "sentence_transformers.models.Pooling"},
    ]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize",
                        "type": "sentence_transformers.models.Normalize"})
    return modules


_max_seq_length = max_seq_length  # export_hf's argument shadows the function


# --------------------------------------------------------------------------- model card


def _pooling_names(config: dict) -> list[str]:
    """`mean`, `cls`, ... for a sentence-transformers pooling config."""
    from minilm_tf.export.source import _ST_POOLING_KEYS

    short = {key: name for name, key in _ST_POOLING_KEYS.items()}
    return [short.get(k, k[len("pooling_mode_"):]) for k, v in config.items()
            if k.startswith("pooling_mode_") and v]


def model_card(encoder: LoadedEncoder, config: dict, parameters: int, sentence: dict | None,
               directory_name: str) -> str:
    """A README.md for the export."""
    init = encoder.metadata.get("init")
    tags = ["minilm_tf", "bert", "feature-extraction"]
    library = "transformers"
    if sentence:
        tags += ["sentence-transformers", "sentence-similarity"]
        library = "sentence-transformers"
    lines = [
        "---",
        f"library_name: {library}",
        f"pipeline_tag: {'sentence-similarity' if sentence else 'feature-extraction'}",
        "tags:",
        *[f"- {t}" for t in tags],
        "---",
        "",
        f"# {directory_name}",
        "",
        "A BERT-architecture encoder exported by minilm_tf "
        "(`minilm_tf.export.hf.export_hf` / `tools/export_hf.py`) from Keras "
        "(keras-hub `BertBackbone`).",
        "",
        "## Architecture",
        "",
        "| | |",
        "|---|---|",
        f"| layers | {config['num_hidden_layers']} |",
        f"| hidden size | {config['hidden_size']} |",
        f"| attention heads | {config['num_attention_heads']} |",
        f"| feed-forward size | {config['intermediate_size']} |",
        f"| activation | `{config['hidden_act']}` (minilm_tf: `{encoder.hidden_act}`) |",
        f"| vocabulary | {config['vocab_size']} WordPiece tokens "
        f"(lowercase: {encoder.lowercase}, strip accents: "
        f"{bool(getattr(encoder.tokenizer, 'strip_accents', False))}) |",
        f"| max positions | {config['max_position_embeddings']} |",
        f"| parameters | {parameters:,} (weights stored as float32) |",
    ]
    if sentence:
        lines += [
            f"| sentence embedding | {', '.join(_pooling_names(sentence['pooling']))} pooling"
            f"{' + L2 normalisation' if sentence['normalize'] else ''}, "
            f"max_seq_length {sentence['max_seq_length']} |",
        ]
    # The spec's last path component only: a model card travels, local paths should not.
    origin = os.path.basename(os.path.normpath(encoder.spec)) if os.sep in encoder.spec else encoder.spec
    lines += ["", "## Provenance", "", f"- Exported from: `{origin}`"]
    if init:
        mode = init.get("mode", "?")
        lines.append(f"- Initialisation (`metadata[\"init\"]`): `{mode}`")
        if init.get("teacher_layers"):
            lines.append(f"  - teacher layers copied: {init['teacher_layers']}")
        if init.get("copied"):
            lines.append(f"  - weights copied from the teacher: {len(init['copied'])} layers "
                         f"({', '.join(init['copied'][:8])}"
                         f"{', ...' if len(init['copied']) > 8 else ''})")
        if mode == "random":
            lines.append("  - no teacher weight copied: random initialisation")
    else:
        lines.append("- Initialisation: not recorded (a pretrained checkpoint or an encoder "
                     "loaded from disk)")
    other = {k: v for k, v in encoder.metadata.items()
             if k not in ("init", "pooling", "normalize", "hidden_act")}
    if other:
        lines.append(f"- Other metadata: `{json.dumps(other, sort_keys=True, default=str)}`")
    lines += [
        "",
        "Whether (and how) it was distilled or fine-tuned is what the spec and "
        "initialisation above say; see the run that produced it for its training "
        "data and evaluation.",
        "",
        "## Usage",
        "",
        "transformers:",
        "",
        "```python",
        "from transformers import AutoModel, AutoTokenizer",
        "",
        f'tokenizer = AutoTokenizer.from_pretrained("{directory_name}")',
        f'model = AutoModel.from_pretrained("{directory_name}")',
        'batch = tokenizer(["A sentence."], padding=True, truncation=True, return_tensors="pt")',
        "last_hidden_state = model(**batch).last_hidden_state",
        "```",
        "",
    ]
    if sentence:
        lines += [
            "sentence-transformers:",
            "",
            "```python",
            "from sentence_transformers import SentenceTransformer",
            "",
            f'model = SentenceTransformer("{directory_name}")',
            'embeddings = model.encode(["A sentence.", "Another one."])',
            "```",
            "",
        ]
    lines += [
        "Keras (minilm_tf restores the activation named in config.json):",
        "",
        "```python",
        "import minilm_tf",
        "",
        f'encoder = minilm_tf.load_teacher("{directory_name}")',
        "encoder.backbone, encoder.tokenizer",
        "```",
        "",
        f'`keras_hub.models.BertBackbone.from_preset("{directory_name}")` also loads it, '
        "but keras-hub always builds its BERT layers with the tanh approximation of "
        "GELU"
        + (", which is what this model uses." if config["hidden_act"] != "gelu" else
           "; this model uses exact GELU (`hidden_act: gelu`), so call "
           "`minilm_tf.models.encoders.set_feedforward_activation(backbone, \"gelu\")` after "
           "loading it that way."),
        "",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- export


def _write_json(path: str, data: Any) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, ensure_ascii=False)
        f.write("\n")


def check_target(directory: str, overwrite: bool) -> None:
    """Refuses a file, or an existing non-empty directory unless `overwrite`."""
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise FileExistsError(f"{directory} exists and is not a directory; pass a directory.")
    if os.path.isdir(directory) and os.listdir(directory) and not overwrite:
        raise FileExistsError(
            f"{directory} already exists and is not empty; refusing to overwrite it "
            "(pass overwrite=True / --overwrite to replace it)."
        )


def export_hf(encoder: LoadedEncoder, directory: str, overwrite: bool = False, *,
              max_seq_length: int | None = None) -> dict:
    """Writes `encoder` as a Hugging Face (and sentence-transformers) model.

    Args:
        encoder: a BERT-architecture `LoadedEncoder` (a teacher from
            `minilm_tf.load_teacher` or a student from `build_student` /
            a distillation run).
        directory: the output directory. It is written beside itself under
            a temporary name and renamed into place when complete.
        overwrite: replace an existing non-empty directory (only after the
            new one is complete).
        max_seq_length: sentence-transformers `max_seq_length` (sentence
            encoders); default: see `max_seq_length()` (256 for
            all-MiniLM-L6-v2, 128 for a student without a recorded one).

    Returns:
        A summary: `path`, `files`, `parameters`, `hidden_act` (HF name),
        `sentence_transformers` (whether the ST layout was written) and,
        for sentence encoders, `pooling`, `normalize`, `max_seq_length`.

    Raises:
        ExportError (a ValueError): not a BERT backbone / BertTokenizer, a
            vocabulary whose size differs from the embedding table, an
            activation that cannot be expressed in a BERT config.
        FileExistsError: `directory` exists, is not empty and not
            `overwrite`, or is a file.
    """
    from safetensors.numpy import save_file

    _check_encoder(encoder)
    directory = os.path.abspath(directory)
    check_target(directory, overwrite)
    config = hf_config(encoder)
    weights = hf_state_dict(encoder.backbone)
    parameters = count_params(encoder.backbone)
    if sum(int(v.size) for v in weights.values()) != parameters:
        raise ExportError("The exported weights do not cover every backbone weight "
                          f"({sum(int(v.size) for v in weights.values())} of {parameters}).")
    tokenizer = encoder.tokenizer
    sentence = None
    if is_sentence_encoder(encoder):
        sentence = {
            "pooling": pooling_config(encoder),
            "normalize": bool(encoder.metadata.get("normalize", False)),
            "max_seq_length": _max_seq_length(encoder, max_seq_length),
        }
    # One export at a time into `directory` (the lock lives beside it, as the
    # directory is replaced as a whole); leftovers of a killed one are removed.
    parent, base = os.path.split(directory)
    os.makedirs(parent, exist_ok=True)
    with workdirs.exclusive(os.path.join(parent, f".{base}.lock"),
                            f"the export directory {directory}"):
        workdirs.remove_temporaries(parent, of=base)
        check_target(directory, overwrite)  # again: another export may have just finished
        with atomic_directory(directory, overwrite=True) as tmp:
            _write_json(os.path.join(tmp, "config.json"), config)
            save_file(weights, os.path.join(tmp, "model.safetensors"), metadata={"format": "pt"})
            with open(os.path.join(tmp, "vocab.txt"), "w", encoding="utf-8") as f:
                f.writelines(token + "\n" for token in tokenizer.get_vocabulary())
            _write_json(os.path.join(tmp, "tokenizer_config.json"),
                        tokenizer_config(tokenizer, config["max_position_embeddings"]))
            _write_json(os.path.join(tmp, "special_tokens_map.json"), _special_tokens(tokenizer))
            if sentence:
                _write_json(os.path.join(tmp, "modules.json"), _modules(sentence["normalize"]))
                os.makedirs(os.path.join(tmp, "1_Pooling"))
                _write_json(os.path.join(tmp, "1_Pooling", "config.json"), sentence["pooling"])
                _write_json(os.path.join(tmp, "sentence_bert_config.json"),
                            {"max_seq_length": sentence["max_seq_length"], "do_lower_case": False})
                if sentence["normalize"]:
                    os.makedirs(os.path.join(tmp, "2_Normalize"))
                from minilm_tf import __version__

                _write_json(os.path.join(tmp, "config_sentence_transformers.json"), {
                    "model_type": "SentenceTransformer",
                    "__version__": {"minilm_tf": __version__},
                    "prompts": {},
                    "default_prompt_name": None,
                    "similarity_fn_name": "cosine",
                })
            with open(os.path.join(tmp, "README.md"), "w", encoding="utf-8") as f:
                f.write(model_card(encoder, config, parameters, sentence, base))
            files = sorted(
                os.path.relpath(os.path.join(d, name), tmp)
                for d, _, names in os.walk(tmp) for name in names
            )
    summary = {
        "path": directory,
        "files": files,
        "parameters": parameters,
        "hidden_act": config["hidden_act"],
        "sentence_transformers": sentence is not None,
        "size_mb": round(sum(os.path.getsize(os.path.join(directory, f)) for f in files) / 2**20,
                         2),
    }
    if sentence:
        summary.update(pooling=_pooling_names(sentence["pooling"]),
                       normalize=sentence["normalize"],
                       max_seq_length=sentence["max_seq_length"])
    logger.info("exported %s to %s", encoder.spec, directory)
    return summary


# --------------------------------------------------------------------------- parity reference


def keras_parity_reference(encoder: LoadedEncoder, path: str,
                           texts: Sequence[str] = PARITY_TEXTS,
                           max_seq_length: int | None = None) -> dict:
    """Writes what the Keras encoder computes for `texts` to `path` (.npz).

    Arrays: `texts`, `token_ids`, `padding_mask` `[N, L]` (keras-hub
    tokenizer, `[CLS] text [SEP]`, truncated to the export's
    max_seq_length, trimmed to the longest text), `last_hidden_state`
    `[N, L, H]`, `pooler_output` `[N, H]`, `embedding` `[N, D]` (the
    sentence-transformers pooling and normalisation of the export; mean +
    L2 for encoders without a pooling config), `max_seq_length`,
    `pooling`, `normalize`. Returns the arrays.
    """
    from minilm_tf.export import source as src

    _check_encoder(encoder)
    length = _max_seq_length(encoder, max_seq_length)
    if is_sentence_encoder(encoder):
        modes = src.pooling_from_metadata(encoder.metadata)
        normalize = bool(encoder.metadata.get("normalize", False))
    else:
        modes, normalize = ("mean",), True
    source = src.encoder_source(encoder, sequence_length=length, pooling=list(modes),
                                normalize=normalize)
    features = src.keras_tokenize(source, list(texts))
    width = max(1, int(features["padding_mask"].sum(axis=1).max())) if len(texts) else 1
    features = {k: v[:, :width] for k, v in features.items()}
    out = encoder.backbone(features, training=False)
    seq = np.asarray(out["sequence_output"], dtype=np.float32)
    arrays = {
        "texts": np.array(list(texts), dtype=str),
        "token_ids": features["token_ids"],
        "padding_mask": features["padding_mask"],
        "last_hidden_state": seq,
        "pooler_output": np.asarray(out["pooled_output"], dtype=np.float32),
        "embedding": src.pool_numpy(seq, features["padding_mask"], modes, normalize),
        "max_seq_length": np.array(length),
        "pooling": np.array(list(modes), dtype=str),
        "normalize": np.array(normalize),
    }
    np.savez(path, **arrays)
    return arrays
