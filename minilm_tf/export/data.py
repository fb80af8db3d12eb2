"""Texts the export tools check and calibrate with.

* `EDGE_CASE_TEXTS`: the varied strings every export is checked on
  (accents, CJK, emoji, very long words, empty / whitespace-only strings, a
  100,000-character text, control characters, mixed lengths).
* `task_texts(...)`: texts (and labels, metric names) of a fine-tuning task's
  split, re-loaded the way `tools/finetune.py` loaded it (its report.json
  records the data options), or of any task name / text file for encoders.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Any, Sequence

import numpy as np

from minilm_tf.export import source as src
from minilm_tf.tasks import finetuned
from minilm_tf.tasks.classification.registry import load_task

logger = logging.getLogger(__name__)

LONG_TEXT = ("All work and no play makes Jack a dull boy. " * 2500)[:100_000]
EDGE_CASE_TEXTS = (
    "A thoroughly enjoyable film with a clever script.",
    "",
    " ",
    "\t\n  \r\n",
    "Café crème, naïve résumé, Ångström, Straße, ÉLAN, coöperate.",
    "日本語のテキストと中文文本。",
    "I love this 🍕🍕 movie 😀👍🏽 so much!!!",
    "Pneumonoultramicroscopicsilicovolcanoconiosis " + "x" * 150,
    "ﬁne ＦＵＬＬ ｗｉｄｔｈ ① Ⅻ ²",
    "Ελληνικά, Русский, العربية, हिन्दी.",
    "[CLS] tokens [SEP] in the [MASK] text",
    "control\x01char and\x7fdel",
    "don't stop-believing: e-mail me@example.com http://a.b/c?d=1",
    "word",
    LONG_TEXT,
)
# Bytes that are not valid UTF-8 (only the exports see these; Python str cannot).
INVALID_UTF8 = (b"\xff\xfe broken \xc3", b"caf\xe9 latin-1", b"ok \xed\xa0\x80 surrogate")


@dataclasses.dataclass
class TextSet:
    texts: list
    text_pairs: list | None = None
    labels: np.ndarray | None = None
    metric_names: tuple = ()
    main_metric: str | None = None
    label_vocab: list | None = None
    description: str = ""

    def __len__(self) -> int:
        return len(self.texts)

    def head(self, n: int | None) -> "TextSet":
        if n is None or n >= len(self.texts):
            return self
        return dataclasses.replace(
            self, texts=self.texts[:n],
            text_pairs=None if self.text_pairs is None else self.text_pairs[:n],
            labels=None if self.labels is None else self.labels[:n],
            description=f"{self.description} (first {n})")


def load_task_data(task: str, report_path: str | None = None):
    """A `TaskData`: through the fine-tuning report's data options when given
    (same files, same subsampling), else `load_task(task)`."""
    if report_path and os.path.exists(report_path):
        with open(report_path, encoding="utf-8") as f:
            return finetuned.load_run_task_data(json.load(f))
    return load_task(task)


def task_texts(task: str, split: str = "validation", report_path: str | None = None,
               max_examples: int | None = None, seed: int = 0) -> TextSet:
    """Texts (+ pairs, labels, metrics) of `split` of a task (seeded subset)."""
    data = load_task_data(task, report_path)
    part = data.splits().get(split)
    if part is None or len(part) == 0:
        raise ValueError(f"Task {task!r} has no {split} split.")
    if max_examples is not None and max_examples < len(part):
        part = part.subsample(max_examples, seed)
    return TextSet(
        texts=list(part.texts),
        text_pairs=None if part.text_pairs is None else list(part.text_pairs),
        labels=part.labels,
        metric_names=tuple(data.metrics),
        main_metric=data.main_metric,
        label_vocab=data.label_vocab,
        description=f"{data.name}:{split} ({len(part)} examples)",
    )


def file_texts(path: str, max_examples: int | None = None) -> TextSet:
    """One text per line (tab-separated text<TAB>text_pair for pairs)."""
    texts, pairs = [], []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line.strip():
                continue
            parts = line.split("\t")
            texts.append(parts[0])
            pairs.append(parts[1] if len(parts) > 1 else None)
            if max_examples and len(texts) >= max_examples:
                break
    if not texts:
        raise ValueError(f"{path} holds no text lines.")
    use_pairs = all(p is not None for p in pairs)
    return TextSet(texts, pairs if use_pairs else None, description=f"{path} ({len(texts)} lines)")


def source_texts(source: src.ExportSource, split: str, max_examples: int | None,
                 task: str | None = None, text_file: str | None = None,
                 seed: int = 0) -> TextSet | None:
    """The texts to check / calibrate `source` with: `text_file`, else the
    fine-tuning task (same data options), else `task`. None when none given."""
    if text_file:
        return file_texts(text_file, max_examples)
    report = source.info.get("finetune_report")
    name = task or source.task
    if not name:
        return None
    if task and source.task and src.ENCODER != source.kind and task != source.task:
        report = None  # a different task than the model was tuned on
    return task_texts(name, split, report, max_examples, seed)


def align_labels(textset: TextSet | None, model_labels: Sequence[str] | None) -> TextSet | None:
    """Re-numbers `textset.labels` into the model's label order (matched by
    name); a label the model does not know is an error."""
    if (textset is None or textset.labels is None or textset.label_vocab is None
            or model_labels is None):
        return textset
    names = [str(v) for v in textset.label_vocab]
    model_labels = [str(v) for v in model_labels]
    if names == model_labels:
        return textset
    index = {n: i for i, n in enumerate(model_labels)}
    unknown = sorted(set(names) - set(index))
    if unknown:
        raise ValueError(f"The evaluation data has labels {unknown} the model does not "
                         f"know (model labels: {model_labels}).")
    labels = np.array([index[names[int(i)]] for i in textset.labels], dtype=np.int64)
    return dataclasses.replace(textset, labels=labels, label_vocab=model_labels)


def edge_case_set(source: src.ExportSource) -> TextSet:
    texts = list(EDGE_CASE_TEXTS)
    pairs = list(reversed(EDGE_CASE_TEXTS)) if source.is_pair else None
    return TextSet(texts, pairs, description="edge cases")


def combine(*sets: TextSet | None) -> TextSet:
    sets = [s for s in sets if s is not None and len(s)]
    texts = [t for s in sets for t in s.texts]
    pairs = None
    if sets and all(s.text_pairs is not None for s in sets):
        pairs = [p for s in sets for p in s.text_pairs]
    return TextSet(texts, pairs, description=" + ".join(s.description for s in sets))


def jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    if isinstance(obj, bytes):
        return obj.decode("utf-8", errors="replace")
    return obj


def texts_preview(values: Sequence[str], n: int = 3) -> list:
    return [v[:60] for v in list(values)[:n]]
