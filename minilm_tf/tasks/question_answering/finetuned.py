"""What a QA fine-tuning run leaves in its work directory, and loading it back."""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Dict

import keras
import keras_hub

from minilm_tf.models.encoders import set_feedforward_activation
from minilm_tf.tasks import finetuned
from minilm_tf.tasks.question_answering import model as qa_model
from minilm_tf.tasks.question_answering.tokenizer import (
    OffsetSentencePieceTokenizer,
    OffsetWordPieceTokenizer,
)
from minilm_tf.utils import fileio

logger = logging.getLogger(__name__)

from minilm_tf.tasks.question_answering.data import QAOptions

QA_CONFIG_FILE = "qa_config.json"

VOCAB_FILE = "qa_vocab.txt"

SENTENCEPIECE_FILE = "qa_sentencepiece.model"

MODEL_FILE = finetuned.MODEL_KERAS_FILE  # "model.keras": finetune's workdir checks know it


def check_encoder(encoder) -> None:
    tokenizer = getattr(encoder, "tokenizer", None)
    if tokenizer is None:
        raise ValueError("QA fine-tuning needs the encoder's tokenizer (got none).")
    if not isinstance(tokenizer, (keras_hub.tokenizers.WordPieceTokenizer,
                                  keras_hub.models.XLMRobertaTokenizer)):
        raise NotImplementedError(
            f"QA fine-tuning supports WordPiece (BERT-style) and XLM-R SentencePiece "
            f"tokenizers; this model has {type(tokenizer).__name__}.")
    backbone_inputs = encoder.backbone.input
    names = set(backbone_inputs) if isinstance(backbone_inputs, dict) else set()
    if not {"token_ids", "padding_mask"} <= names:
        raise NotImplementedError(
            f"QA fine-tuning needs a backbone taking token_ids and padding_mask; "
            f"{type(encoder.backbone).__name__} takes {sorted(names)}.")

def _find_backbone(model):
    for layer in model.layers:
        if hasattr(layer, "transformer_layers"):
            return layer
    return None

def save_qa_model(model, workdir: str) -> str:
    """`<workdir>/model.keras`, written beside and renamed into place."""
    path = os.path.join(workdir, MODEL_FILE)
    tmp = os.path.join(workdir, ".tmp-" + MODEL_FILE)
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path

def save_tokenizer(tok, workdir: str) -> str:
    """Writes the offset tokenizer's vocabulary (WordPiece) or SentencePiece
    model under `workdir`; returns the file name."""
    if tok.kind == "sentencepiece":
        fileio.atomic_write_bytes(os.path.join(workdir, SENTENCEPIECE_FILE), tok.proto)
        return SENTENCEPIECE_FILE
    fileio.atomic_write_text(os.path.join(workdir, VOCAB_FILE), "\n".join(tok.vocabulary) + "\n")
    return VOCAB_FILE

def load_finetuned_qa(workdir: str, safe_mode: bool = True):
    """(model, qa_config dict, offset tokenizer) of a saved QA run.

    The model loads with `safe_mode=True` (no code in the archive); the
    feed-forward activation the encoder was fine-tuned with is restored
    (keras-hub rebuilds its encoders with tanh-approximate GELU). Answer
    questions with `squad.prepare_squad(examples, tokenizer, **windowing)`,
    `predict_logits` and `squad.postprocess` (settings in qa_config).
    """
    with open(os.path.join(workdir, QA_CONFIG_FILE), encoding="utf-8") as f:
        qa_config = json.load(f)
    path = os.path.join(workdir, qa_config.get("model_file", MODEL_FILE))
    if safe_mode:
        model = fileio.load_keras_archive(path)
    else:  # the caller vouches for the archive
        model = keras.saving.load_model(path, safe_mode=False)
    hidden_act = qa_config.get("hidden_act")
    backbone = _find_backbone(model)
    if hidden_act and backbone is not None:
        set_feedforward_activation(backbone, hidden_act)
    tok = qa_config.get("tokenizer", {})
    if tok.get("kind") == "sentencepiece":
        with open(os.path.join(workdir, qa_config["vocabulary_file"]), "rb") as f:
            return model, qa_config, OffsetSentencePieceTokenizer(f.read())
    tokenizer = OffsetWordPieceTokenizer(
        os.path.join(workdir, qa_config.get("vocabulary_file", VOCAB_FILE)),
        lowercase=tok.get("lowercase", True), strip_accents=tok.get("strip_accents"),
        split_on_cjk=tok.get("split_on_cjk", True),
        suffix_indicator=tok.get("suffix_indicator", "##"),
        oov_token=tok.get("oov_token", "[UNK]"), special_tokens=tok.get("special_tokens"),
        cls_token=tok.get("cls_token", "[CLS]"), sep_token=tok.get("sep_token", "[SEP]"),
        pad_token=tok.get("pad_token", "[PAD]"))
    return model, qa_config, tokenizer

def qa_config(options: QAOptions, version_2: bool, tok, encoder, saved: bool
              ) -> Dict[str, Any]:
    cls_tok, sep_tok = tok.vocabulary[tok.cls_id], tok.vocabulary[tok.sep_id]
    if tok.kind == "sentencepiece":
        tokenizer = {"kind": "sentencepiece", "cls_token": cls_tok, "sep_token": sep_tok,
                     "pad_token": tok.vocabulary[tok.pad_id], "id_space": "xlm_roberta"}
        vocabulary_file, lowercase = SENTENCEPIECE_FILE, None
        layout = f"{cls_tok} question {sep_tok}{sep_tok} context {sep_tok}"
    else:
        tokenizer = {
            "kind": "wordpiece",
            "lowercase": tok.lowercase, "strip_accents": tok.strip_accents,
            "split_on_cjk": tok.split_on_cjk, "suffix_indicator": tok.suffix_indicator,
            "oov_token": tok.oov_token, "special_tokens": list(tok.special_tokens) or None,
            "cls_token": cls_tok, "sep_token": sep_tok,
            "pad_token": tok.vocabulary[tok.pad_id],
        }
        vocabulary_file, lowercase = VOCAB_FILE, tok.lowercase
        layout = "[CLS] question [SEP] context [SEP]; segment 1 from the context"
    return {
        "max_seq_length": options.max_seq_length,
        "doc_stride": options.doc_stride,
        "max_query_length": options.max_query_length,
        "n_best": options.n_best,
        "max_answer_length": options.max_answer_length,
        "null_threshold": options.null_threshold,
        "version_2": version_2,
        "lowercase": lowercase,
        "tokenizer": tokenizer,
        "vocabulary_file": vocabulary_file,
        "vocabulary_size": len(tok.vocabulary),
        "model_file": MODEL_FILE if saved else None,
        "inputs": list(qa_model.input_names(encoder.backbone)),
        "outputs": ["start_logits", "end_logits"],
        "window_layout": layout,
        "hidden_act": getattr(encoder, "hidden_act", None),
        "backbone_class": type(encoder.backbone).__name__,
        "finetuned_from": getattr(encoder, "spec", None),
    }
