"""Safe file output: atomic writes.

A kill or a full disk during a write must never leave a file or directory
that looks complete but is not: everything is written beside its target
under a temporary name (`.tmp-*`, `.NAME.tmp-*`) and renamed into place only
when complete; `minilm_tf.utils.workdir` removes such leftovers when a run starts.
The work directory itself (creation, links, lock) is `minilm_tf.utils.workdir`.
"""

import contextlib
import json
import math
import os
import shutil
import tempfile
from typing import Any, Iterator

import numpy as np


def atomic_write_text(path: str, text: str) -> None:
    """Writes `text` to `path` via a temporary file, fsync and rename."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Writes `data` to `path` via a temporary file, fsync and rename."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_json(path: str, data: Any, *, clean: bool = False) -> None:
    """`data` as JSON at `path`, atomically; `clean`: through `json_clean` first."""
    if clean:
        data = json_clean(data)
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def json_clean(obj):
    """`obj` as strict JSON: NaN/inf -> None, numpy scalars -> Python,
    recursively; dict keys starting with `_` (in-memory extras) are dropped."""
    if isinstance(obj, dict):
        return {str(k): json_clean(v) for k, v in obj.items() if not str(k).startswith("_")}
    if isinstance(obj, (list, tuple)):
        return [json_clean(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def atomic_savefig(fig, path: str, **kwargs) -> None:
    """`fig.savefig(path)` via a temporary file and a rename."""
    directory, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(directory, f".tmp-{name}")
    try:
        fig.savefig(tmp, format=os.path.splitext(name)[1].lstrip(".") or "png", **kwargs)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_directory(path: str, overwrite: bool = False) -> Iterator[str]:
    """Yields a temporary directory that becomes `path` when the block succeeds.

    With `overwrite=False` an existing `path` is an error; with True it is
    replaced only after the new one is complete.
    """
    path = os.path.abspath(path)
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path} already exists; refusing to overwrite it.")
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.tmp-", dir=parent)
    try:
        yield tmp
        if os.path.exists(path):
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.old-", dir=parent)
            os.replace(path, os.path.join(old, "x"))
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_keras_archive(path: str):
    """Loads a `.keras` archive with Keras `safe_mode` on: no code runs.

    Archives holding code (a Lambda layer, a pickled function) are refused
    with a message instead of being executed.
    """
    import keras

    if not os.path.isfile(path):
        raise FileNotFoundError(f"No Keras archive at {path}.")
    try:
        return keras.saving.load_model(path, safe_mode=True)
    except ValueError as e:
        if "safe_mode" in str(e) or "lambda" in str(e).lower():
            raise ValueError(
                f"{path} contains code (e.g. a Lambda layer), which minilm_tf never executes "
                "when loading. Rebuild the model from registered layers instead."
            ) from e
        raise
