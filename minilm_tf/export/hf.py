"""Hugging Face / sentence-transformers export of encoders.

`export_hf(encoder, directory)` writes a directory that
`transformers.AutoModel.from_pretrained`, `AutoTokenizer.from_pretrained`
and (for sentence encoders) `sentence_transformers.SentenceTransformer`
load as they load a checkpoint from the Hugging Face Hub, for every
architecture the package distils: BERT, RoBERTa, XLM-RoBERTa, DistilBERT
and ELECTRA (keras-hub backbones with their own tokenizers):

* `config.json`: the architecture's config (`BertModel`, `RobertaModel`,
  `XLMRobertaModel`, `DistilBertModel`, `ElectraModel`) whose `hidden_act`
  (DistilBERT: `activation`) is the activation the Keras layers compute
  (`gelu` for exact GELU, `gelu_pytorch_tanh` for keras-hub's tanh
  approximation);
* `model.safetensors`: float32 weights under Hugging Face's names
  (`hf_weights`: the inverse of keras-hub's own importers, every backbone
  weight read exactly once);
* the tokenizer files (`hf_tokenizers`: `vocab.txt`; `vocab.json` +
  `merges.txt`; `sentencepiece.bpe.model`), `tokenizer_config.json`,
  `special_tokens_map.json`;
* for sentence encoders (`encoder.metadata` has `pooling` or `normalize`):
  `modules.json`, `1_Pooling/config.json`, `sentence_bert_config.json`,
  `2_Normalize/` (when normalised) and `config_sentence_transformers.json`;
* `README.md`: a model card (architecture, parameters, initialisation and
  provenance from `encoder.metadata` / `encoder.spec`, loading snippets).

Anything else is refused with an `ExportError`. Weights are written with the
`safetensors` library (numpy API): no torch.

`keras_parity_reference(encoder, path)` writes what the Keras encoder
computes for `PARITY_TEXTS` (token ids, last hidden states, pooled output,
sentence embeddings) to an `.npz` that `tools/check_hf_parity.py` compares
with the real libraries.

The pieces live beside this module, one job each: `hf_configs` (the checks
and the JSON files), `hf_weights` (the state dict), `hf_tokenizers` (the
tokenizer files), `hf_card` (README.md), `hf_parity` (the Keras
reference); their public names are re-exported here.
"""

from __future__ import annotations

import logging
import os

from minilm_tf.export.hf_card import model_card
from minilm_tf.export.hf_configs import (
    DEFAULT_MAX_SEQ_LENGTH,
    HF_ACTIVATIONS,
    SUPPORTED,
    ExportError,
    check_encoder,
    hf_config,
    hf_hidden_act,
    is_sentence_encoder,
    max_seq_length,
    model_type,
    modules_config,
    pooling_config,
    pooling_names,
    sentence_bert_config,
    sentence_transformers_config,
)
from minilm_tf.export.hf_parity import (
    KNOWN_TOKENIZER_DIFFERENCES,
    PARITY_TEXTS,
    keras_parity_reference,
)
from minilm_tf.export.hf_tokenizers import special_tokens_map, tokenizer_config, tokenizer_files
from minilm_tf.export.hf_weights import exported_parameters, hf_state_dict
from minilm_tf.models.encoders import LoadedEncoder
from minilm_tf.utils import workdir as workdirs
from minilm_tf.utils.fileio import atomic_directory, atomic_write_json

__all__ = [
    "DEFAULT_MAX_SEQ_LENGTH",
    "HF_ACTIVATIONS",
    "KNOWN_TOKENIZER_DIFFERENCES",
    "PARITY_TEXTS",
    "SUPPORTED",
    "ExportError",
    "check_encoder",
    "check_target",
    "export_hf",
    "write_hf_directory",
    "hf_config",
    "hf_hidden_act",
    "hf_state_dict",
    "is_sentence_encoder",
    "keras_parity_reference",
    "max_seq_length",
    "model_card",
    "model_type",
    "special_tokens_map",
    "tokenizer_files",
    "pooling_config",
    "tokenizer_config",
]

logger = logging.getLogger(__name__)

_max_seq_length = max_seq_length  # export_hf's argument shadows the function


def check_target(directory: str, overwrite: bool) -> None:
    """Refuses a file, or an existing non-empty directory unless `overwrite`."""
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise FileExistsError(f"{directory} exists and is not a directory; pass a directory.")
    if os.path.isdir(directory) and os.listdir(directory) and not overwrite:
        raise FileExistsError(
            f"{directory} already exists and is not empty; refusing to overwrite it "
            "(pass overwrite=True / --overwrite to replace it)."
        )


def write_hf_directory(directory: str, overwrite: bool, config: dict, weights: dict,
                       tokenizer: dict, card: str, sentence: dict | None = None) -> list[str]:
    """Writes a Hugging Face model directory (config, safetensors, the
    `tokenizer` files (name -> bytes, `tokenizer_files`), README.md; with
    `sentence`, the sentence-transformers files) under a temporary name, renamed into place when complete; one
    export at a time (the lock lives beside it). Returns the files written."""
    from safetensors.numpy import save_file

    parent, base = os.path.split(directory)
    os.makedirs(parent, exist_ok=True)
    with workdirs.exclusive(os.path.join(parent, f".{base}.lock"),
                            f"the export directory {directory}"):
        workdirs.remove_temporaries(parent, of=base)  # leftovers of a killed export
        check_target(directory, overwrite)  # again: another export may have just finished
        with atomic_directory(directory, overwrite=True) as tmp:
            atomic_write_json(os.path.join(tmp, "config.json"), config)
            save_file(weights, os.path.join(tmp, "model.safetensors"), metadata={"format": "pt"})
            for name, content in tokenizer.items():
                with open(os.path.join(tmp, name), "wb") as f:
                    f.write(content)
            if sentence:
                atomic_write_json(os.path.join(tmp, "modules.json"),
                                  modules_config(sentence["normalize"]))
                os.makedirs(os.path.join(tmp, "1_Pooling"))
                atomic_write_json(os.path.join(tmp, "1_Pooling", "config.json"),
                                  sentence["pooling"])
                atomic_write_json(os.path.join(tmp, "sentence_bert_config.json"),
                                  sentence_bert_config(sentence["max_seq_length"]))
                if sentence["normalize"]:
                    os.makedirs(os.path.join(tmp, "2_Normalize"))
                atomic_write_json(os.path.join(tmp, "config_sentence_transformers.json"),
                                  sentence_transformers_config())
            with open(os.path.join(tmp, "README.md"), "w", encoding="utf-8") as f:
                f.write(card)
            return sorted(os.path.relpath(os.path.join(d, name), tmp)
                          for d, _, names in os.walk(tmp) for name in names)


def export_hf(encoder: LoadedEncoder, directory: str, overwrite: bool = False, *,
              max_seq_length: int | None = None) -> dict:
    """Writes `encoder` as a Hugging Face (and sentence-transformers) model.

    Args:
        encoder: a BERT, RoBERTa, XLM-R, DistilBERT or ELECTRA `LoadedEncoder` (a teacher from
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
        ExportError (a ValueError): an architecture without a Hugging Face
            mapping, a tokenizer that is not the architecture's, a vocabulary
            whose size differs from the embedding table, an activation the
            config cannot express.
        FileExistsError: `directory` exists, is not empty and not
            `overwrite`, or is a file.
    """
    check_encoder(encoder)
    directory = os.path.abspath(directory)
    check_target(directory, overwrite)
    config = hf_config(encoder)
    weights = hf_state_dict(encoder.backbone)
    parameters = exported_parameters(encoder.backbone)
    tokenizer = tokenizer_files(encoder.tokenizer, int(encoder.backbone.max_sequence_length))
    sentence = None
    if is_sentence_encoder(encoder):
        sentence = {
            "pooling": pooling_config(encoder),
            "normalize": bool(encoder.metadata.get("normalize", False)),
            "max_seq_length": _max_seq_length(encoder, max_seq_length),
        }
    files = write_hf_directory(
        directory, overwrite, config, weights, tokenizer,
        model_card(encoder, config, parameters, sentence, os.path.basename(directory)),
        sentence)
    summary = {
        "path": directory,
        "files": files,
        "parameters": parameters,
        "model_type": config["model_type"],
        "hidden_act": config.get("hidden_act", config.get("activation")),
        "sentence_transformers": sentence is not None,
        "size_mb": round(sum(os.path.getsize(os.path.join(directory, f)) for f in files) / 2**20,
                         2),
    }
    if sentence:
        summary.update(pooling=pooling_names(sentence["pooling"]),
                       normalize=sentence["normalize"],
                       max_seq_length=sentence["max_seq_length"])
    logger.info("exported %s to %s", encoder.spec, directory)
    return summary
