"""Loading and running a SavedModel export: in this process (with the
tensorflow-text ops registered), in a fresh Python process that imports
only TensorFlow and tensorflow-text, and through `saved_model_cli`."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from typing import Any, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the ops the graph uses)

from minilm_tf import _compat
from minilm_tf.export.savedmodel_signatures import SERVING_DEFAULT


def load(path: str):
    """`tf.saved_model.load` (the tensorflow-text ops the graph uses are
    registered: this module imports tensorflow_text)."""
    return tf.saved_model.load(path)


def run_signature(loaded, inputs: dict, signature: str = SERVING_DEFAULT) -> dict:
    """Calls a signature with numpy/list inputs; returns numpy outputs."""
    fn = loaded.signatures[signature]
    specs = fn.structured_input_signature[1]
    args = {k: tf.constant(np.asarray(v, dtype=object) if specs[k].dtype == tf.string
                           else np.asarray(v), dtype=specs[k].dtype)
            for k, v in inputs.items()}
    return {k: v.numpy() for k, v in fn(**args).items()}


def text_inputs(texts, text_pairs=None) -> dict:
    """`serving_default` inputs (`text`, `text_pair`) as UTF-8 bytes."""
    out = {"text": as_bytes_list(texts)}
    if text_pairs is not None:
        out["text_pair"] = as_bytes_list(text_pairs)
    return out


def compare_outputs(reference: dict, outputs: dict) -> dict:
    """Max abs diff of every float output, equality of the others."""
    diffs = {}
    for name, ref in reference.items():
        if name.startswith("_") or name not in outputs:
            continue
        ref, got = np.asarray(ref), np.asarray(outputs[name])
        if ref.shape != got.shape:
            diffs[name] = {"shape_mismatch": [list(ref.shape), list(got.shape)]}
        elif ref.dtype.kind == "f":
            diffs[name] = float(np.max(np.abs(ref - got))) if ref.size else 0.0
        else:
            diffs[name] = {"equal": int(np.sum(ref == got)), "total": int(ref.size)}
    return diffs


def run_in_subprocess(path: str, calls: dict, timeout: float = 600.0) -> dict:
    """Loads the SavedModel in a fresh Python process (TensorFlow and
    tensorflow-text only: no Keras model, no minilm_tf code) and makes the
    given calls.

    Args:
        calls: {call_name: (signature_name, {input_name: values})}.

    Returns:
        {call_name: {output_name: ndarray}}.
    """
    with tempfile.TemporaryDirectory(prefix="minilm_sm_check_") as tmp:
        request = os.path.join(tmp, "request.npz")
        result = os.path.join(tmp, "result.npz")
        flat = {}
        for call, (signature, inputs) in calls.items():
            if "|" in call or "|" in signature:
                raise ValueError("call and signature names may not contain '|'.")
            for key, value in inputs.items():
                flat[f"{call}|{signature}|{key}"] = (
                    np.asarray(as_bytes_list(value), dtype=object) if is_text(value)
                    else np.asarray(value))
        np.savez(request, **flat)
        cmd = [sys.executable, "-m", "minilm_tf.export._run_saved_model", path, request, result]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env=_subprocess_env())
        if proc.returncode != 0:
            raise RuntimeError(f"Loading {path} in a fresh process failed:\n{proc.stderr[-4000:]}")
        out: dict[str, dict] = {call: {} for call in calls}
        with np.load(result, allow_pickle=True) as data:
            for key in data.files:
                call, name = key.split("|", 1)
                out[call][name] = data[key]
        return out


def _subprocess_env() -> dict:
    # The package root first, so `-m minilm_tf.export...` resolves without install.
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env["PYTHONPATH"] = repo + os.pathsep + env.get("PYTHONPATH", "")
    return env


def saved_model_cli(args: Sequence[str], timeout: float = 300.0) -> subprocess.CompletedProcess:
    """Runs TensorFlow's `saved_model_cli` (with the tensorflow-text ops
    registered, see `minilm_tf.export.saved_model_cli`)."""
    return subprocess.run([sys.executable, "-m", "minilm_tf.export.saved_model_cli", *args],
                          capture_output=True, text=True, timeout=timeout, env=_subprocess_env())


def plain_saved_model_cli(args: Sequence[str], timeout: float = 300.0):
    """TensorFlow's own `saved_model_cli` (no tensorflow-text ops)."""
    return subprocess.run([sys.executable, "-m", _compat.SAVED_MODEL_CLI,
                           *args], capture_output=True, text=True, timeout=timeout,
                          env=_subprocess_env())


def is_text(value) -> bool:
    """Whether `value` is a non-empty sequence of strings / bytes."""
    arr = np.asarray(value, dtype=object)
    return arr.size > 0 and isinstance(arr.flat[0], (bytes, str))


def as_bytes_list(values: Any) -> list[bytes]:
    """`values` as UTF-8 bytes (bytes kept as they are)."""
    return [v if isinstance(v, bytes) else str(v).encode("utf-8") for v in values]
