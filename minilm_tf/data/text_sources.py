"""Host-side reading of raw pre-training text: files, JSONL, TFDS and built-ins.

Everything here runs in Python before the `tf.data` graph is built. Bad input
never raises: binary files, special files (FIFOs, sockets, devices), broken
symbolic links (loops, dangling targets), invalid UTF-8, empty lines and
malformed JSONL records are skipped or repaired and counted in a `CorpusStats`.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import stat as stat_lib
from collections.abc import Iterable, Sequence

import tensorflow as tf
import tensorflow_datasets as tfds
from absl import logging

from minilm_tf.data.builtin_corpora import BUILTIN_CORPORA, bbc_news_files, builtin_documents

TFDS_PREFIX = "tfds:"
TFDS_DEFAULT_SPLIT = "train"
JSONL_SUFFIX = ".jsonl"
MODES = ("lines", "documents")
# A NUL byte in the first BINARY_SNIFF_BYTES bytes marks a file as binary.
BINARY_SNIFF_BYTES = 8192
_UTF8_REPLACEMENT_BYTES = "\ufffd".encode("utf-8")
# Resolution of the held-out hash split.
_HASH_BUCKETS = 1 << 30

BUILTIN_PREFIX = "builtin:"


@dataclasses.dataclass
class CorpusStats:
    """Counters filled while reading sources on the host.

    Attributes:
      files_read: text files read (binary files excluded).
      files_skipped_binary: files skipped because they look binary.
      special_files_skipped: entries skipped because they are not regular
        files (FIFOs, sockets, character or block devices), which could
        block reading forever.
      broken_links_skipped: symbolic links skipped because they cannot be
        resolved (a link loop or a missing target).
      lines_or_docs: texts kept (lines, documents or JSONL records).
      empty_skipped: empty or whitespace-only texts dropped.
      invalid_utf8_replaced: invalid UTF-8 byte sequences (and lone surrogates
        in JSONL strings) replaced by U+FFFD / "?".
      jsonl_records_skipped: JSONL lines that are not JSON objects or lack a
        string text field.
      tfds_sources: TFDS datasets added (their texts are not counted).
      sources: per source as given (a path, glob, `builtin:NAME`), its
        documents and characters, in reading order.
    """

    files_read: int = 0
    files_skipped_binary: int = 0
    special_files_skipped: int = 0
    broken_links_skipped: int = 0
    lines_or_docs: int = 0
    empty_skipped: int = 0
    invalid_utf8_replaced: int = 0
    jsonl_records_skipped: int = 0
    tfds_sources: int = 0
    sources: dict = dataclasses.field(default_factory=dict)


def read_text_sources(
    sources: Sequence[str],
    *,
    mode: str = "lines",
    text_field: str = "text",
) -> tuple[list[str] | tf.data.Dataset, CorpusStats]:
    """Reads texts (one pre-training document each) from files and TFDS.

    Args:
      sources: file paths, directories (read recursively, hidden entries
        skipped), glob patterns (`**` allowed), built-in corpora
        `builtin:NAME` (see `minilm_tf.data.builtin_corpora`) and TFDS specs
        `tfds:NAME[/CONFIG][:VERSION][@SPLIT]` (split defaults to "train").
      mode: for plain-text files, "lines" (one document per line) or
        "documents" (one document per file). `*.jsonl` files always yield
        one document per record.
      text_field: JSONL key and TFDS feature holding the text.

    Returns:
      `(texts, stats)`: a list of strings when every source is a file, else a
      `tf.data.Dataset` of scalar strings (file texts first, then each TFDS
      dataset in order).

    Raises:
      ValueError: on an unknown mode or when no text is found.
      FileNotFoundError: when a path or glob matches nothing.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    stats = CorpusStats()
    tfds_specs = [s for s in sources if s.startswith(TFDS_PREFIX)]
    texts: list[str] = []
    seen: set[str] = set()
    for source in (s for s in sources if not s.startswith(TFDS_PREFIX)):
        if source.startswith(BUILTIN_PREFIX):
            found = _builtin_texts(source[len(BUILTIN_PREFIX):], mode, text_field, stats)
        else:
            files = [f for f in expand_paths([source]) if f not in seen]
            seen.update(files)
            found = [t for path in files for t in _read_file(path, mode, text_field, stats)]
        stats.sources[source] = {"documents": len(found), "characters": sum(map(len, found))}
        texts.extend(found)
    logging.info("Read %s from %d source(s).", stats, len(sources))
    if not tfds_specs:
        if not texts:
            raise ValueError(f"No text found in sources {list(sources)}")
        return texts, stats
    datasets = [load_tfds_texts(spec, text_field=text_field) for spec in tfds_specs]
    stats.tfds_sources = len(datasets)
    if texts:
        datasets.insert(0, tf.data.Dataset.from_tensor_slices(texts))
    dataset = datasets[0]
    for other in datasets[1:]:
        dataset = dataset.concatenate(other)
    return dataset, stats


def expand_paths(sources: Iterable[str]) -> list[str]:
    """Expands paths, directories and globs into a sorted, de-duplicated file list."""
    files: list[str] = []
    for source in sources:
        if glob.has_magic(source):
            matches = sorted(glob.glob(source, recursive=True))
        else:
            matches = [source] if os.path.exists(source) else []
        if not matches:
            raise FileNotFoundError(f"No file matches text source {source!r}")
        for match in matches:
            files.extend(_walk(match) if os.path.isdir(match) else [match])
    return list(dict.fromkeys(files))


def _walk(directory: str) -> list[str]:
    """Lists non-hidden files under `directory` recursively, in sorted order."""
    files = []
    for root, dirs, names in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        files.extend(os.path.join(root, n) for n in sorted(names) if not n.startswith("."))
    return files


def _read_file(path: str, mode: str, text_field: str, stats: CorpusStats) -> list[str]:
    """Returns the non-empty texts of one file, updating `stats`.

    Only regular files are opened: opening a FIFO blocks until a writer
    appears, so special files and unresolvable links are skipped and counted.
    """
    try:
        mode_bits = os.stat(path).st_mode
    except OSError as error:
        if not os.path.islink(path):
            raise
        logging.warning("Skipping broken symbolic link %s: %s", path, error.strerror)
        stats.broken_links_skipped += 1
        return []
    if not stat_lib.S_ISREG(mode_bits):
        logging.warning("Skipping %s: not a regular file (FIFO, socket or device)", path)
        stats.special_files_skipped += 1
        return []
    with open(path, "rb") as f:
        data = f.read()
    if b"\x00" in data[:BINARY_SNIFF_BYTES]:
        logging.warning("Skipping binary file %s", path)
        stats.files_skipped_binary += 1
        return []
    stats.files_read += 1
    text = _decode_utf8(data, path, stats)
    if path.endswith(JSONL_SUFFIX):
        candidates = _jsonl_texts(text, path, text_field, stats)
    elif mode == "documents":
        candidates = [text]
    else:
        candidates = text.splitlines()
    return _drop_empty(candidates, stats)


def _decode_utf8(data: bytes, path: str, stats: CorpusStats) -> str:
    """Decodes UTF-8, replacing (and counting) invalid byte sequences."""
    text = data.decode("utf-8", errors="replace")
    replaced = text.count("\ufffd") - data.count(_UTF8_REPLACEMENT_BYTES)
    if replaced:
        logging.warning("Replaced %d invalid UTF-8 sequence(s) in %s", replaced, path)
        stats.invalid_utf8_replaced += replaced
    return text


def _jsonl_texts(text: str, path: str, text_field: str, stats: CorpusStats) -> list[str]:
    """Extracts `text_field` from each JSONL record; malformed records are counted."""
    texts = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            stats.empty_skipped += 1
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        value = record.get(text_field) if isinstance(record, dict) else None
        if not isinstance(value, str):
            logging.warning(
                "Skipping JSONL record %s:%d without string %r", path, line_number, text_field
            )
            stats.jsonl_records_skipped += 1
            continue
        texts.append(_replace_surrogates(value, stats))
    return texts


def _replace_surrogates(text: str, stats: CorpusStats) -> str:
    """Replaces lone surrogates (valid JSON escapes, invalid UTF-8) with "?"."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        cleaned = text.encode("utf-8", errors="replace").decode("utf-8")
        stats.invalid_utf8_replaced += sum(0xD800 <= ord(c) <= 0xDFFF for c in text)
        return cleaned


def _drop_empty(texts: list[str], stats: CorpusStats) -> list[str]:
    """Drops empty / whitespace-only texts, counting kept and dropped ones."""
    kept = [t for t in texts if t.strip()]
    stats.empty_skipped += len(texts) - len(kept)
    stats.lines_or_docs += len(kept)
    return kept


def load_tfds_texts(spec: str, *, text_field: str = "text") -> tf.data.Dataset:
    """Loads the `text_field` strings of a TFDS dataset through `tfds.load`.

    Args:
      spec: `tfds:NAME[/CONFIG][:VERSION][@SPLIT]`, e.g.
        `tfds:wikipedia/20230601.en@train[:1%]`.
      text_field: feature key of the text.

    Returns:
      A `tf.data.Dataset` of scalar strings in file order (deterministic).
    """
    if not spec.startswith(TFDS_PREFIX):
        raise ValueError(f"TFDS spec must start with {TFDS_PREFIX!r}: {spec!r}")
    name, _, split = spec[len(TFDS_PREFIX):].partition("@")
    dataset = tfds.load(name, split=split or TFDS_DEFAULT_SPLIT, shuffle_files=False)
    if text_field not in dataset.element_spec:
        raise ValueError(
            f"TFDS dataset {name!r} has no feature {text_field!r}; "
            f"has {list(dataset.element_spec)}"
        )
    return dataset.map(lambda example: example[text_field])


def builtin_corpus(name: str) -> list[str]:
    """The file paths of the built-in `bbc_news` corpus (one article per file).

    Raises:
      ValueError: for another name (the other built-in corpora are not files:
        read them as `builtin:NAME` sources).
      FileNotFoundError: when the providing package is not installed.
    """
    if name != "bbc_news":
        raise ValueError(
            f"Unknown built-in file corpus {name!r}; read built-in corpora as "
            f"'builtin:NAME' sources, NAME in {list(BUILTIN_CORPORA)}."
        )
    return bbc_news_files()


def _builtin_texts(name: str, mode: str, text_field: str, stats: CorpusStats) -> list[str]:
    """The texts of `builtin:NAME`: bbc_news files read in `mode`, others as documents."""
    if name == "bbc_news":
        return [t for path in bbc_news_files() for t in _read_file(path, mode, text_field, stats)]
    if name not in BUILTIN_CORPORA:
        raise ValueError(f"Unknown built-in corpus {name!r}; available: {list(BUILTIN_CORPORA)}")
    documents = builtin_documents(name)
    if mode == "lines":
        documents = [line for doc in documents for line in doc.splitlines()]
    return _drop_empty([_replace_surrogates(d, stats) for d in documents], stats)


def split_heldout(
    texts: Sequence[str] | tf.data.Dataset, fraction: float, seed: int
) -> tuple[list[str], list[str]] | tuple[tf.data.Dataset, tf.data.Dataset]:
    """Splits texts into (train, held-out) by a keyed hash of each document.

    The split depends only on the document text and `seed`, not on order, so
    identical documents always land on the same side and a list and a dataset
    with the same texts are split identically.

    Args:
      texts: a list of strings or a `tf.data.Dataset` of scalar strings.
      fraction: expected held-out fraction, in [0, 1).
      seed: non-negative hash key.

    Returns:
      `(train, heldout)` of the same kind as `texts`.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    if isinstance(texts, tf.data.Dataset):
        return (
            texts.filter(lambda t: tf.logical_not(_is_heldout(t, fraction, seed))),
            texts.filter(lambda t: _is_heldout(t, fraction, seed)),
        )
    texts = list(texts)
    if not texts:
        return [], []
    mask = _is_heldout(tf.constant(texts), fraction, seed).numpy()
    return (
        [t for t, held in zip(texts, mask) if not held],
        [t for t, held in zip(texts, mask) if held],
    )


def _is_heldout(texts: tf.Tensor, fraction: float, seed: int) -> tf.Tensor:
    """True where the keyed SipHash bucket of a text falls below `fraction`."""
    buckets = tf.strings.to_hash_bucket_strong(texts, _HASH_BUCKETS, key=[seed, 0])
    return buckets < int(fraction * _HASH_BUCKETS)
