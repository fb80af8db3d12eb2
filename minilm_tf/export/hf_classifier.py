"""Fine-tuned classifiers and regressors as Hugging Face
`*ForSequenceClassification` directories.

A `tools/finetune.py` run holds the keras-hub text classifier of its
encoder, whose head computes what the Hugging Face class does at inference:

| keras-hub | head | Hugging Face |
|---|---|---|
| `BertTextClassifier` | pooler (dense + tanh) on [CLS] -> dense | `BertForSequenceClassification` (`bert.pooler`, `classifier`) |
| `RobertaTextClassifier`, `XLMRobertaTextClassifier` | `<s>` -> dense + tanh -> dense | `RobertaForSequenceClassification`, `XLMRobertaForSequenceClassification` (`classifier.dense`, `classifier.out_proj`) |
| `DistilBertTextClassifier` | [CLS] -> dense + ReLU -> dense | `DistilBertForSequenceClassification` (`pre_classifier`, `classifier`) |
| `ElectraTextClassifier` (this package's: keras-hub has none) | [CLS] -> dense + exact GELU -> dense | `ElectraForSequenceClassification` (`classifier.dense`, `classifier.out_proj`) |

A run whose model has none of these heads (a generic first-token head saved
as `model.keras`) is refused. The export is the encoder's state dict under the
base model's prefix, the head's dense layers, and a config with `num_labels`,
`id2label` / `label2id` (the run's label vocabulary) and `problem_type`
(`single_label_classification`, or `regression` for one output).
`classifier_parity_reference` writes the Keras logits of the parity texts
for `tools/check_hf_parity.py`, which compares them with
`AutoModelForSequenceClassification`.
"""

from __future__ import annotations

import json
import os
from typing import Sequence

import numpy as np

from minilm_tf.export.hf import (
    PARITY_TEXTS,
    ExportError,
    check_encoder,
    check_target,
    hf_config,
    hf_state_dict,
    tokenizer_files,
    write_hf_directory,
)
from minilm_tf.export.hf_card import classifier_card
from minilm_tf.export.hf_weights import CHECKPOINT_PREFIX
from minilm_tf.models.encoders import LoadedEncoder
from minilm_tf.tasks.finetuned import LABELS_FILE, load_finetuned, load_report, saved_model_dir


# keras-hub task class -> (Hugging Face class, base-model prefix, {Keras layer:
# Hugging Face module}).
_ROBERTA_HEAD = {"pooled_dense": "classifier.dense", "logits": "classifier.out_proj"}
HEADS = {
    "BertTextClassifier": ("BertForSequenceClassification", "bert.", {"logits": "classifier"}),
    "RobertaTextClassifier": ("RobertaForSequenceClassification", "roberta.", _ROBERTA_HEAD),
    "XLMRobertaTextClassifier": ("XLMRobertaForSequenceClassification", "roberta.",
                                 _ROBERTA_HEAD),
    "DistilBertTextClassifier": ("DistilBertForSequenceClassification", "distilbert.",
                                 {"pooled_dense": "pre_classifier", "logits": "classifier"}),
    "ElectraTextClassifier": ("ElectraForSequenceClassification", "electra.", _ROBERTA_HEAD),
}


def load_classifier(finetuned: str):
    """(LoadedEncoder of the fine-tuned encoder, the head's Dense layer, the
    labels dict, the Keras task model) of a fine-tuning run (its workdir or
    its `model/` dir)."""
    model_dir = saved_model_dir(finetuned)
    try:
        with open(os.path.join(model_dir, LABELS_FILE), encoding="utf-8") as f:
            kind = json.load(f).get("kind")
    except FileNotFoundError:
        raise ExportError(f"{finetuned} is not a fine-tuning run (no {LABELS_FILE}); pass "
                          "the workdir of a tools/finetune.py classification or regression "
                          "run.") from None
    if kind not in ("classification", "regression"):
        raise ExportError(f"{finetuned} is a {kind!r} run; only classification and "
                          "regression runs export as *ForSequenceClassification.")
    model, preprocessor, labels = load_finetuned(finetuned)
    try:
        head = model.get_layer("logits")
    except ValueError:
        head = None
    if type(model).__name__ == "PooledTextClassifier":
        raise ExportError(
            f"{finetuned} was fine-tuned with a {model.pooling}-pooling head, which no Hugging "
            "Face *ForSequenceClassification class computes; export it with "
            "tools/export_savedmodel.py or tools/export_tflite.py, or fine-tune with "
            "--pooling cls for a transformers classifier.")
    if head is None or preprocessor is None or type(model).__name__ not in HEADS:
        raise ExportError(
            f"{finetuned} holds a {type(model).__name__} (on a "
            f"{type(getattr(model, 'backbone', None)).__name__}); only the keras-hub text "
            f"classifiers {', '.join(sorted(HEADS))} have a Hugging Face "
            "*ForSequenceClassification equivalent; fine-tune with tools/finetune.py on one "
            "of their backbones.")
    meta = {}
    if os.path.exists(os.path.join(model_dir, "minilm_tf.json")):
        with open(os.path.join(model_dir, "minilm_tf.json"), encoding="utf-8") as f:
            meta = json.load(f)
    encoder = LoadedEncoder(model.backbone, preprocessor.tokenizer,
                            meta.get("finetuned_from") or finetuned,
                            meta.get("hidden_act") or (
                                "gelu_approximate" if type(model).__name__ == "BertTextClassifier"
                                else "gelu"),
                            metadata={k: v for k, v in meta.items()
                                      if k not in ("hidden_act", "finetuned_from")})
    check_encoder(encoder)
    return encoder, head, labels, model


def classifier_config(encoder: LoadedEncoder, labels: dict,
                      architecture: str = "BertForSequenceClassification") -> dict:
    """`config.json` of the classifier's `*ForSequenceClassification`."""
    config = hf_config(encoder)
    names = labels.get("labels") or []
    num = int(labels["num_outputs"])
    regression = labels["kind"] == "regression"
    if not regression and len(names) != num:
        raise ExportError(f"The run's label vocabulary has {len(names)} labels for {num} "
                          "outputs.")
    id2label = ({0: "LABEL_0"} if regression else dict(enumerate(map(str, names))))
    config.update({
        "architectures": [architecture],
        "num_labels": num,
        "id2label": {str(i): n for i, n in id2label.items()},
        "label2id": {n: i for i, n in id2label.items()},
        "problem_type": "regression" if regression else "single_label_classification",
        "classifier_dropout": None,
    })
    return config


def export_hf_classifier(finetuned: str, directory: str, overwrite: bool = False) -> dict:
    """Writes a fine-tuning run's classifier as a Hugging Face
    `*ForSequenceClassification` directory (written under a temporary
    name, renamed into place; an existing non-empty one is refused unless
    `overwrite`). Returns a summary: `path`, `files`, `parameters`,
    `num_labels`, `id2label`, `problem_type`."""
    directory = os.path.abspath(directory)
    check_target(directory, overwrite)
    encoder, _, labels, model = load_classifier(finetuned)
    architecture, prefix, head = HEADS[type(model).__name__]
    config = classifier_config(encoder, labels, architecture)
    own_prefix = CHECKPOINT_PREFIX.get(type(encoder.backbone).__name__, "")
    weights = {prefix + k[len(own_prefix):]: v
               for k, v in hf_state_dict(encoder.backbone).items()}
    if prefix == "roberta.":  # *ForSequenceClassification builds RoBERTa without its pooler
        weights = {k: v for k, v in weights.items() if not k.startswith("roberta.pooler.")}
    head_parameters = 0
    for layer_name, module in head.items():
        layer = model.get_layer(layer_name)
        weights[f"{module}.weight"] = np.ascontiguousarray(
            np.asarray(layer.kernel, dtype=np.float32).T)
        weights[f"{module}.bias"] = np.asarray(layer.bias, dtype=np.float32)
        head_parameters += int(layer.count_params())
    parameters = int(model.count_params())
    if int(encoder.backbone.count_params()) + head_parameters != parameters:
        raise ExportError("The exported weights do not cover every weight of the classifier "
                          f"(backbone {encoder.backbone.count_params()} + head "
                          f"{head_parameters} of {parameters}).")
    card = classifier_card(encoder, config, parameters, labels, os.path.basename(directory),
                           load_report(finetuned))
    files = write_hf_directory(directory, overwrite, config, weights,
                               tokenizer_files(encoder.tokenizer,
                                               config["max_position_embeddings"]), card)
    return {"path": directory, "files": files, "parameters": parameters,
            "num_labels": config["num_labels"], "id2label": config["id2label"],
            "problem_type": config["problem_type"]}


def classifier_parity_reference(finetuned: str, path: str,
                                texts: Sequence[str] = PARITY_TEXTS) -> dict:
    """Writes (.npz) the parity texts, their keras-hub token ids, padding mask
    and the Keras classifier's logits, for tools/check_hf_parity.py."""
    encoder, _, labels, model = load_classifier(finetuned)
    features = model.preprocessor(list(texts))
    lengths = np.asarray(features["padding_mask"]).sum(axis=1)
    width = max(1, int(lengths.max()))
    features = {k: np.asarray(v)[:, :width] for k, v in features.items()}
    logits = np.asarray(model(features, training=False), dtype=np.float32)
    arrays = {"texts": np.array(list(texts), dtype=str), "token_ids": features["token_ids"],
              "padding_mask": features["padding_mask"], "logits": logits,
              "max_seq_length": np.array(int(model.preprocessor.sequence_length))}
    np.savez(path, **arrays)
    return arrays
