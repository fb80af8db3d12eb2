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
from minilm_tf.tasks.question_answering.tokenizer import OffsetWordPieceTokenizer
from minilm_tf.utils import fileio

logger = logging.getLogger(__name__)

from minilm_tf.tasks.question_answering.data import QAOptions

QA_CONFIG_FILE = "qa_config.json"

VOCAB_FILE = "qa_vocab.txt"

MODEL_FILE = finetuned.MODEL_KERAS_FILE  # "model.keras": finetune's workdir checks know it


def check_encoder(encoder) -> None:
    tokenizer = getattr(encoder, "tokenizer", None)
    if tokenizer is None:
        raise ValueError("QA fine-tuning needs the encoder's tokenizer (got none).")
    if not isinstance(tokenizer, keras_hub.tokenizers.WordPieceTokenizer):
        raise NotImplementedError(
            f"QA fine-tuning supports WordPiece (BERT-style) tokenizers; this model has "
            f"{type(tokenizer).__name__}.")
    backbone_inputs = encoder.backbone.input
    names = set(backbone_inputs) if isinstance(backbone_inputs, dict) else set()
    if not set(qa_model.INPUT_NAMES) <= names:
        raise NotImplementedError(
            f"QA fine-tuning needs a backbone taking {list(qa_model.INPUT_NAMES)}; "
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

def load_finetuned_qa(workdir: str, safe_mode: bool = True):
    """(model, qa_config dict, `OffsetWordPieceTokenizer`) of a saved QA run.

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
    tokenizer = OffsetWordPieceTokenizer(
        os.path.join(workdir, qa_config.get("vocabulary_file", VOCAB_FILE)),
        lowercase=tok.get("lowercase", True), strip_accents=tok.get("strip_accents"),
        split_on_cjk=tok.get("split_on_cjk", True),
        suffix_indicator=tok.get("suffix_indicator", "##"),
        oov_token=tok.get("oov_token", "[UNK]"), special_tokens=tok.get("special_tokens"),
        cls_token=tok.get("cls_token", "[CLS]"), sep_token=tok.get("sep_token", "[SEP]"),
        pad_token=tok.get("pad_token", "[PAD]"))
    return model, qa_config, tokenizer

def qa_config(options: QAOptions, version_2: bool, tok: OffsetWordPieceTokenizer,
               encoder, saved: bool) -> Dict[str, Any]:
    cls_tok = tok.vocabulary[tok.cls_id]
    return {
        "max_seq_length": options.max_seq_length,
        "doc_stride": options.doc_stride,
        "max_query_length": options.max_query_length,
        "n_best": options.n_best,
        "max_answer_length": options.max_answer_length,
        "null_threshold": options.null_threshold,
        "version_2": version_2,
        "lowercase": tok.lowercase,
        "tokenizer": {
            "lowercase": tok.lowercase, "strip_accents": tok.strip_accents,
            "split_on_cjk": tok.split_on_cjk, "suffix_indicator": tok.suffix_indicator,
            "oov_token": tok.oov_token, "special_tokens": list(tok.special_tokens) or None,
            "cls_token": cls_tok, "sep_token": tok.vocabulary[tok.sep_id],
            "pad_token": tok.vocabulary[tok.pad_id],
        },
        "vocabulary_file": VOCAB_FILE,
        "vocabulary_size": len(tok.vocabulary),
        "model_file": MODEL_FILE if saved else None,
        "inputs": list(qa_model.INPUT_NAMES),
        "outputs": ["start_logits", "end_logits"],
        "window_layout": "[CLS] question [SEP] context [SEP]; segment 1 from the context",
        "hidden_act": getattr(encoder, "hidden_act", None),
        "backbone_class": type(encoder.backbone).__name__,
        "finetuned_from": getattr(encoder, "spec", None),
    }
