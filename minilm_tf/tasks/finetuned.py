"""What a fine-tuning run leaves in its work directory, and loading it back.

The artefact names live here, and only here: the runs (`minilm_tf.training`)
write them, the exporters (`minilm_tf.export`) read them.
"""

import json
import logging
import os
import shutil
from typing import Any, Dict

import keras_hub

from minilm_tf.models.encoders import set_feedforward_activation
from minilm_tf.tasks.classification import data as classification_data
# Registers this package's own text classifiers (ELECTRA's), so their presets load.
from minilm_tf.tasks.classification import electra as _electra  # noqa: F401
from minilm_tf.tasks.classification.pooled import PooledTextClassifier, saved_task_name
from minilm_tf.tasks.classification.registry import load_capped_task
from minilm_tf.utils import fileio

logger = logging.getLogger(__name__)

REPORT_FILE = "report.json"
LABELS_FILE = "labels.json"
MODEL_DIR = "model"
MODEL_KERAS_FILE = "model.keras"
# Everything a run writes; a workdir holding any of these is a previous run.
RUN_OUTPUTS = (REPORT_FILE, LABELS_FILE, MODEL_DIR, MODEL_KERAS_FILE)


def save_finetuned(model, preprocessor, workdir: str, data: classification_data.TaskData,
                   encoder=None) -> Dict[str, Any]:
    """Saves the task model + label vocabulary under `workdir`.

    keras-hub task models go to `<workdir>/model/` via `save_to_preset` (with
    the preprocessor/tokenizer, `labels.json` and the feed-forward activation
    in `minilm_tf.json`); others to `<workdir>/model.keras`.
    """
    labels = {"task": data.name, "kind": data.kind, "labels": data.label_vocab,
              "num_outputs": data.num_classes, "is_pair": data.is_pair,
              "sequence_length": int(preprocessor.sequence_length)}
    fileio.atomic_write_json(os.path.join(workdir, LABELS_FILE), labels, clean=True)
    info: Dict[str, Any] = {"labels_file": LABELS_FILE}
    if hasattr(model, "save_to_preset"):
        path = os.path.join(workdir, MODEL_DIR)
        try:
            with fileio.atomic_directory(path) as tmp:  # appears only when complete
                _with_preprocessor(model, preprocessor).save_to_preset(tmp)
                fileio.atomic_write_json(os.path.join(tmp, LABELS_FILE), labels, clean=True)
                meta = dict(getattr(encoder, "metadata", None) or {})
                meta["hidden_act"] = getattr(encoder, "hidden_act", None) or "gelu_approximate"
                meta["finetuned_from"] = getattr(encoder, "spec", None)
                fileio.atomic_write_json(os.path.join(tmp, "minilm_tf.json"), meta, clean=True)
            info.update(format="keras_hub_preset", path=MODEL_DIR,
                        task_class=type(model).__name__)
            return info
        except Exception as e:  # fall back to a .keras file
            logger.warning("save_to_preset failed (%s); saving a .keras file.", e)
            shutil.rmtree(path, ignore_errors=True)
    path = os.path.join(workdir, MODEL_KERAS_FILE)
    tmp = os.path.join(workdir, ".tmp_" + MODEL_KERAS_FILE)
    model.save(tmp)
    os.replace(tmp, path)
    info.update(format="keras", path=MODEL_KERAS_FILE)
    return info

def _with_preprocessor(model, preprocessor):
    """The same keras-hub task (shared backbone, copied head weights) with the
    preprocessor attached, so the saved preset is complete: the training
    model itself stays preprocessor-free (tf.data does the tokenisation)."""
    if getattr(model, "preprocessor", None) is not None:
        return model
    config = model.get_config()
    config.pop("backbone", None)
    config.pop("preprocessor", None)
    clone = type(model)(backbone=model.backbone, preprocessor=preprocessor, **config)
    clone.set_weights(model.get_weights())
    return clone

def saved_model_dir(workdir_or_model_dir: str) -> str:
    """The directory a run's model was saved in: `<workdir>/model/` when the
    run saved a keras-hub preset, else the path as given."""
    model_dir = os.path.join(workdir_or_model_dir, MODEL_DIR)
    return model_dir if os.path.isdir(model_dir) else workdir_or_model_dir


def load_report(workdir_or_model_dir: str) -> Dict[str, Any] | None:
    """A run's report.json (given its workdir or its `model/` dir), or None."""
    path = os.path.normpath(workdir_or_model_dir)
    directories = [path] + ([os.path.dirname(path)] if os.path.basename(path) == MODEL_DIR
                            else [])
    for directory in directories:
        report_path = os.path.join(directory, REPORT_FILE)
        if os.path.isfile(report_path):
            with open(report_path, encoding="utf-8") as f:
                return json.load(f)
    return None


def load_finetuned(workdir_or_model_dir: str):
    """(model, preprocessor or None, labels dict) of a saved run.

    Accepts the run's workdir or its `model/` preset dir. The keras-hub task
    comes back with its preprocessor attached, so it takes raw strings:
    `model.predict(["text", ...])`, and for pairs
    `model.predict(tf.data.Dataset.from_tensor_slices(((texts, pairs),)).batch(32))`
    (a bare `(texts, pairs)` tuple would be read as `(x, y)`); and with the
    feed-forward activation the encoder was fine-tuned with. A plain
    `keras_hub.models.TextClassifier.from_preset(model_dir)` loads it too,
    but with keras-hub's default (tanh-approximate) GELU (a mean/max-pooling
    head: `PooledTextClassifier.from_preset`).
    """
    path = saved_model_dir(workdir_or_model_dir)
    if os.path.isfile(os.path.join(path, MODEL_KERAS_FILE)):
        with open(os.path.join(path, LABELS_FILE), encoding="utf-8") as f:
            labels = json.load(f)
        return fileio.load_keras_archive(os.path.join(path, MODEL_KERAS_FILE)), None, labels
    with open(os.path.join(path, LABELS_FILE), encoding="utf-8") as f:
        labels = json.load(f)
    if (saved_task_name(path) or "").endswith(PooledTextClassifier.__name__):
        model = PooledTextClassifier.from_preset(path)
    else:
        model = keras_hub.models.TextClassifier.from_preset(path)
    meta_path = os.path.join(path, "minilm_tf.json")
    if os.path.exists(meta_path):
        with open(meta_path, encoding="utf-8") as f:
            hidden_act = json.load(f).get("hidden_act")
        if hidden_act:
            set_feedforward_activation(model.backbone, hidden_act)
    return model, model.preprocessor, labels


# The fine-tuning settings that choose and cap a run's data (report.json's
# `hyperparameters`), as `classification.data.load_capped_task` arguments.
_DATA_OPTIONS = {"task_kind": "kind", "train_file": "train_file",
                 "validation_file": "validation_file", "test_file": "test_file",
                 "file_format": "file_format", "text_key": "text_key",
                 "text_pair_key": "text_pair_key", "label_key": "label_key",
                 "tfds_data_dir": "tfds_data_dir", "tfds_download": "tfds_download",
                 "max_train_examples": "max_train_examples",
                 "max_eval_examples": "max_eval_examples", "seed": "seed",
                 "extra": "task_options"}


def load_run_task_data(report: Dict[str, Any]) -> classification_data.TaskData:
    """The data a fine-tuning run used (same files, same subsampling), from
    its `report.json` content."""
    settings = report.get("hyperparameters") or {}
    options = {arg: settings[key] for key, arg in _DATA_OPTIONS.items() if key in settings}
    return load_capped_task(report.get("task", ""), **options)
