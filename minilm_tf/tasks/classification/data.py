"""A classification / regression task's data: `Split`s of texts (and text
pairs) with label ids or values, `TaskData` (train / validation / test, the
label vocabulary, the metrics to report), and building it from raw examples.

Labels: classification labels may be strings or numbers, but not a mix. The
label vocabulary comes from the training split (sorted; numbers numerically)
unless a task fixes it. A label that is missing, or unknown at validation /
test time, raises a `ValueError` that names the file and line. A split where
no example has a label (e.g. a test file without a label column) is unlabeled:
it can be predicted but not scored.
"""

import dataclasses
import logging
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from minilm_tf.data.splits import stable_stratified_split

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
    # Multilingual tasks (XNLI): the language trained in, and a test split per
    # language, each evaluated by the run (zero-shot cross-lingual transfer).
    train_language: Optional[str] = None
    test_by_language: Optional[Dict[str, Split]] = None

    @property
    def num_classes(self) -> int:
        return 1 if self.kind == REGRESSION else len(self.label_vocab)

    @property
    def is_pair(self) -> bool:
        return self.train.text_pairs is not None

    def splits(self) -> Dict[str, Optional[Split]]:
        return {"train": self.train, "validation": self.validation, "test": self.test}


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
            "learn from; check the file, or name its text column with `text_key`."
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


