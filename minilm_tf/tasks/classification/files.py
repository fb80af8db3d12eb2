"""Reading a task's examples from local files: GLUE-style TSV, CSV, JSON lines
(`{"text": ..., "text_pair": ..., "label": ...}`), with clear errors that
name the file and line."""

import bz2
import csv
import io
import json
import logging
import math
import os
from typing import Any, List, Optional, Sequence



from minilm_tf.tasks.classification.data import (
    LABEL_KEYS,
    PAIR_KEYS,
    TEXT_KEYS,
    _PAIR_WHEN_TEXT_IS,
    RawExamples,
)

logger = logging.getLogger(__name__)


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
            f"(`text_key` / `text_pair_key` / `label_key`)."
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
