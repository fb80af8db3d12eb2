"""A fine-tuned teacher's logits on a task's training split, the targets of
task-stage distillation (`minilm_tf.losses.logits`)."""

import dataclasses
import os
from typing import Any, Dict, Tuple

import numpy as np

from minilm_tf.tasks import finetuned
from minilm_tf.tasks.classification import data as classification_data
from minilm_tf.tasks.classification.datasets import predict_outputs


def _check_same_task(teacher_run: str, labels: Dict[str, Any],
                     data: classification_data.TaskData) -> None:
    problems = []
    if labels.get("kind") != data.kind:
        problems.append(f"it is a {labels.get('kind')!r} run, this task is {data.kind!r}")
    if int(labels.get("num_outputs", -1)) != data.num_classes:
        problems.append(f"it has {labels.get('num_outputs')} outputs, this task "
                        f"{data.num_classes}")
    if data.kind == classification_data.CLASSIFICATION and \
            list(labels.get("labels") or []) != list(data.label_vocab or []):
        problems.append(f"its labels are {labels.get('labels')}, this task's "
                        f"{data.label_vocab} (same labels in the same order needed)")
    if problems:
        raise ValueError(f"teacher_run {teacher_run} is not a fine-tuning run of this task: "
                         + "; ".join(problems) + ". Pass the workdir of the teacher's "
                         "tools/finetune.py run on the same task.")


def _run_model(run: str):
    """The model spec a fine-tuning run started from (its report), or None."""
    try:
        return (finetuned.load_report(run) or {}).get("model")
    except (OSError, ValueError):
        return None


def teacher_targets(teacher_run: str, data: classification_data.TaskData,
                    batch_size: int = 64) -> Tuple[classification_data.Split, Dict[str, Any]]:
    """(the training split with `[label, teacher logits...]` rows as labels,
    a summary: the run, its class, the teacher's accuracy or MAE on this
    training split). The teacher runs with its own preprocessor (its own
    tokenizer and sequence length) on the raw texts."""
    if not os.path.exists(os.path.join(finetuned.saved_model_dir(teacher_run),
                                       finetuned.LABELS_FILE)):
        raise ValueError(f"teacher_run {teacher_run} holds no fine-tuned model "
                         f"({finetuned.LABELS_FILE} missing); pass the workdir of a finished "
                         "tools/finetune.py classification or regression run.")
    model, preprocessor, labels = finetuned.load_finetuned(teacher_run)
    _check_same_task(teacher_run, labels, data)
    if preprocessor is None:
        raise ValueError(f"teacher_run {teacher_run} was saved without its tokenizer "
                         "(model.keras); fine-tune the teacher with a keras-hub classifier.")
    model.preprocessor = None  # predict_outputs tokenises in tf.data
    logits = predict_outputs(model, data.train, preprocessor, batch_size).astype(np.float32)
    train_labels = np.asarray(data.train.labels, dtype=np.float32)
    targets = np.concatenate([train_labels[:, None], logits], axis=1)
    if data.kind == classification_data.REGRESSION:
        fit = {"mae": float(np.mean(np.abs(logits[:, 0] - train_labels)))}
    else:
        fit = {"accuracy": float(np.mean(np.argmax(logits, axis=1) == train_labels))}
    summary = {"teacher_run": os.path.abspath(teacher_run), "teacher_class": type(model).__name__,
               "teacher_model": _run_model(teacher_run), "teacher_on_train": fit}
    return dataclasses.replace(data.train, labels=targets), summary
