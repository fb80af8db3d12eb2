"""QA data and options: SQuAD-format files or TFDS, held-out splits, windowing options."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from typing import Any, Dict, List, Optional

import numpy as np

from minilm_tf.tasks.question_answering import examples as squad_examples

logger = logging.getLogger(__name__)

HOLDOUT_FRACTION = 0.1

_TFDS_V1 = "squad/v1.1"

_TFDS_V2 = "squad/v2.0"

_TFDS_NAMES = {
    "squad": _TFDS_V1, "squad_v1": _TFDS_V1, "squad_v1.1": _TFDS_V1, "squad1": _TFDS_V1,
    "squad/v1.1": _TFDS_V1, "squad/v1": _TFDS_V1, "squad_v11": _TFDS_V1,
    "squad_v2": _TFDS_V2, "squad_v2.0": _TFDS_V2, "squad2": _TFDS_V2,
    "squad/v2.0": _TFDS_V2, "squad/v2": _TFDS_V2, "squad_v20": _TFDS_V2,
}

@dataclasses.dataclass
class QAOptions:
    """Preprocessing / decoding settings (BERT run_squad.py defaults)."""

    max_seq_length: int = 384
    doc_stride: int = 128
    max_query_length: int = 64
    n_best: int = 20
    max_answer_length: int = 30
    null_threshold: float = 0.0
    version_2: Optional[bool] = None  # None: from the data / task name
    on_mismatch: str = "skip"  # training questions whose answer does not align
    head_dropout: float = 0.0
    tfds_name: Optional[str] = None
    save_predictions: bool = True

    def validate(self) -> None:
        for name in ("max_seq_length", "doc_stride", "max_query_length", "n_best",
                     "max_answer_length"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"QA option {name} must be a positive integer, got {value!r}.")
        if self.max_seq_length < self.max_query_length + 4:
            raise ValueError(
                f"max_seq_length={self.max_seq_length} leaves no room for the context after "
                f"max_query_length={self.max_query_length} question tokens.")
        if self.on_mismatch not in squad_examples.MISMATCH_MODES:
            raise ValueError(f"QA option on_mismatch must be one of {squad_examples.MISMATCH_MODES}, "
                             f"got {self.on_mismatch!r}.")
        if not 0 <= self.head_dropout < 1:
            raise ValueError(f"QA option head_dropout must be in [0, 1), got {self.head_dropout}.")
        if not isinstance(self.null_threshold, (int, float)) or not math.isfinite(
                self.null_threshold):
            raise ValueError(f"QA option null_threshold must be a number, "
                             f"got {self.null_threshold!r}.")

OPTION_ALIASES = {"n_best_size": "n_best", "max_seq_len": "max_seq_length",
                   "sequence_length": "max_seq_length", "null_score_diff_threshold":
                   "null_threshold"}

def resolve_qa_options(config, backbone=None) -> QAOptions:
    """`QAOptions` from `config.extra` (task options) and `config.sequence_length`.

    The default max_seq_length (384) is capped at the backbone's position
    table (`max_sequence_length`); an explicit longer one is an error.
    """
    from minilm_tf.tasks.question_answering import mlqa

    fields = {f.name for f in dataclasses.fields(QAOptions)}
    values: Dict[str, Any] = {}
    task_is_mlqa = mlqa.is_mlqa(getattr(config, "task", "") or "")
    for key, value in dict(getattr(config, "extra", None) or {}).items():
        if task_is_mlqa and key in mlqa.OPTIONS:
            continue  # read by mlqa.parse_options
        name = OPTION_ALIASES.get(key, key)
        if name not in fields:
            raise ValueError(f"Unknown QA task option {key!r}; known: {sorted(fields)}.")
        values[name] = value
    for key in ("null_threshold", "head_dropout"):
        if key in values and isinstance(values[key], int) and not isinstance(values[key], bool):
            values[key] = float(values[key])
    for key in ("version_2", "save_predictions"):
        if key in values and values[key] is not None and not isinstance(values[key], bool):
            raise ValueError(f"QA option {key} must be true or false, got {values[key]!r}.")
    seq = getattr(config, "sequence_length", None)
    explicit = seq is not None or "max_seq_length" in values
    if seq is not None:
        if "max_seq_length" in values and values["max_seq_length"] != seq:
            raise ValueError(f"`sequence_length` {seq} and task option max_seq_length="
                             f"{values['max_seq_length']} disagree.")
        values["max_seq_length"] = seq
    options = QAOptions(**values)
    max_positions = getattr(backbone, "max_sequence_length", None) if backbone else None
    if max_positions and options.max_seq_length > max_positions:
        if explicit:
            raise ValueError(f"max_seq_length {options.max_seq_length} exceeds the model's "
                             f"{max_positions} positions.")
        options.max_seq_length = int(max_positions)
        if "max_query_length" not in values and (
                options.max_query_length + 4 > options.max_seq_length):
            options.max_query_length = max(1, options.max_seq_length // 4)
    options.validate()
    return options

@dataclasses.dataclass
class QAData:
    """Examples of each split and where they came from."""

    train: List[squad_examples.SquadExample]
    validation: List[squad_examples.SquadExample]
    test: Optional[List[squad_examples.SquadExample]]
    version_2: bool
    source: str
    notes: List[str] = dataclasses.field(default_factory=list)
    # MLQA: the test split of each language, and the language answers of
    # `validation` / `test` are normalised in (None: SQuAD's rules).
    test_by_language: Optional[Dict[str, List[squad_examples.SquadExample]]] = None
    train_language: Optional[str] = None

    def splits(self) -> Dict[str, Optional[List[squad_examples.SquadExample]]]:
        return {"train": self.train, "validation": self.validation, "test": self.test}

def tfds_name_for_task(task: str) -> Optional[str]:
    """`squad/v1.1` / `squad/v2.0` for the SQuAD task names, else None."""
    name = task.strip().lower().replace("-", "_")
    return _TFDS_NAMES.get(name)

def _task_says_v2(task: str) -> Optional[bool]:
    name = tfds_name_for_task(task)
    return None if name is None else name == _TFDS_V2

def _read_json(path: str):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"SQuAD file {path} does not exist.")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not SQuAD JSON: {e}") from e
    if not (isinstance(data, dict) and isinstance(data.get("data"), list)):
        raise ValueError(f"{path} is not SQuAD JSON (expected an object with a 'data' list "
                         "of articles).")
    return data

def detect_version_2(data) -> bool:
    """True for SQuAD v2.0 JSON: `version` v2.x, or any `is_impossible` question."""
    if str(data.get("version", "")).lstrip("v").startswith("2"):
        return True
    return any(qa.get("is_impossible", False) for article in data["data"]
               for paragraph in article.get("paragraphs", []) for qa in paragraph.get("qas", []))

def _subsample(examples, n: Optional[int], seed: int):
    if n is None or n >= len(examples):
        return list(examples)
    rng = np.random.default_rng(seed)
    return [examples[i] for i in np.sort(rng.choice(len(examples), size=n, replace=False))]

def _holdout_by_context(examples, fraction: float, seed: int):
    """(train, held out): ~`fraction` of the contexts with all their questions."""
    contexts = list(dict.fromkeys(e.context for e in examples))
    if len(contexts) < 2:
        raise ValueError("Cannot hold out validation questions from a train file with a "
                         "single context; pass `validation_file`.")
    rng = np.random.default_rng(seed)
    n = max(1, int(round(fraction * len(contexts))))
    held = {contexts[i] for i in rng.choice(len(contexts), size=n, replace=False)}
    return ([e for e in examples if e.context not in held],
            [e for e in examples if e.context in held])

def load_qa_data(config, options: Optional[QAOptions] = None) -> QAData:
    """The QA task's examples (files or TFDS), subsampled as the config says."""
    from minilm_tf.tasks.question_answering import mlqa

    options = options or QAOptions()
    notes: List[str] = []
    seed = int(getattr(config, "seed", 0) or 0)
    use_files = any(getattr(config, k, None) for k in ("train_file", "validation_file"))
    test = test_by_language = train_language = None
    tfds_kwargs = dict(data_dir=getattr(config, "tfds_data_dir", None),
                       download=getattr(config, "tfds_download", True))
    if mlqa.is_mlqa(config.task):
        version_2 = False
        train, validation, test, test_by_language, train_language, source, mlqa_notes = (
            mlqa.load_mlqa(config, options.on_mismatch, _read_json, **tfds_kwargs))
        notes += mlqa_notes
    elif use_files:
        if not config.train_file:
            raise ValueError("QA from local files needs `train_file` (SQuAD JSON).")
        raw = {k: _read_json(getattr(config, f"{k}_file"))
               for k in ("train", "validation", "test") if getattr(config, f"{k}_file", None)}
        version_2 = options.version_2
        if version_2 is None:
            version_2 = any(detect_version_2(d) for d in raw.values()) or bool(
                _task_says_v2(config.task))
        train = squad_examples.read_squad_json(raw["train"], is_training=True,
                                      on_mismatch=options.on_mismatch, version_2=version_2)
        if "validation" in raw:
            validation = squad_examples.read_squad_json(raw["validation"], is_training=False,
                                               version_2=version_2)
        else:
            train, validation = _holdout_by_context(list(train), HOLDOUT_FRACTION, seed)
            notes.append(f"no validation file: {len(validation)} questions of "
                         f"~{HOLDOUT_FRACTION:.0%} of the train contexts held out "
                         f"(seed {seed}).")
        if "test" in raw:
            test = squad_examples.read_squad_json(raw["test"], is_training=False, version_2=version_2)
        source = "files"
    else:
        name = options.tfds_name or tfds_name_for_task(config.task)
        if name is None:
            raise ValueError(
                f"QA task {config.task!r} has no built-in data: pass `train_file` / "
                "`validation_file` (SQuAD JSON) or use task squad / squad_v2.")
        version_2 = options.version_2 if options.version_2 is not None else (
            name.rstrip("/").endswith("v2.0"))
        train = squad_examples.load_squad_tfds(name, "train", is_training=True,
                                      on_mismatch=options.on_mismatch, **tfds_kwargs)
        validation = squad_examples.load_squad_tfds(name, "validation", is_training=False,
                                                    **tfds_kwargs)
        if getattr(config, "test_file", None):
            test = squad_examples.read_squad_json(_read_json(config.test_file), is_training=False,
                                         version_2=version_2)
        source = f"tfds:{name}"
    skipped = getattr(train, "num_skipped", 0)
    if skipped:
        notes.append(f"{skipped} training question(s) skipped: answer does not match the "
                     f"context (on_mismatch={options.on_mismatch!r}); first ids "
                     f"{train.skipped_ids[:5]}.")
    train, validation = list(train), list(validation)
    test = list(test) if test is not None else None
    if not train:
        raise ValueError("No training questions left (all skipped or empty data); check the "
                         "data or use the task option on_mismatch=keep (`extra`).")
    if not validation:
        raise ValueError("The QA validation split is empty.")
    n_train = getattr(config, "max_train_examples", None)
    if n_train and n_train < len(train):
        notes.append(f"train subsampled to {n_train} of {len(train)} questions (seed {seed}).")
        train = _subsample(train, n_train, seed)
    n_eval = getattr(config, "max_eval_examples", None)
    if n_eval:
        if n_eval < len(validation):
            notes.append(f"validation subsampled to {n_eval} of {len(validation)} questions "
                         f"(seed {seed}).")
            validation = _subsample(validation, n_eval, seed)
        if test is not None and n_eval < len(test):
            notes.append(f"test subsampled to {n_eval} of {len(test)} questions (seed {seed}).")
            test = _subsample(test, n_eval, seed)
        if test_by_language:
            notes.append(f"each language's test set subsampled to at most {n_eval} questions "
                         f"(seed {seed}).")
            test_by_language = {k: _subsample(v, n_eval, seed)
                                for k, v in test_by_language.items()}
    if test_by_language and train_language in test_by_language:
        test_by_language[train_language] = test  # one subsample, evaluated once
    return QAData(train, validation, test or None, bool(version_2), source, notes,
                  test_by_language=test_by_language, train_language=train_language)
