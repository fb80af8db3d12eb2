"""SavedModel export in TF Serving's layout.

`export_saved_model(source, export_dir, model_name)` writes
`<export_dir>/<model_name>/<version>/` (a fresh version number unless one is
given; an existing version is never overwritten) atomically: the SavedModel
is written to a hidden temporary directory beside the versions (TF Serving
ignores names that are not integers), optionally verified there, and
renamed into place.

Its signatures (`serving_default` on strings, `serving_token_ids` on ids,
`tokenize`) are built in `minilm_tf.export.savedmodel_signatures`. Besides
the SavedModel, `assets.extra/` holds `minilm_tf_export.json` (labels,
sequence length, tokenizer settings, pooling, signatures) and, when
`tensorflow-serving-api` is installed, `tf_serving_warmup_requests` (TF
Serving replays them when it loads the version; `minilm_tf.export.tf_serving`).

Loading and running an export (`load`, `run_signature`, `run_in_subprocess`,
`saved_model_cli`: `minilm_tf.export.savedmodel_runtime`) and the TF Serving
`PredictRequest` helpers (`make_predict_request`, `validate_predict_request`,
`predict`: `minilm_tf.export.tf_serving`) are re-exported here, where the
tools and tests reach them.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import uuid
from typing import Any, Sequence

from minilm_tf.export import source as src
from minilm_tf.export.savedmodel_runtime import (
    as_bytes_list,
    compare_outputs,
    load,
    plain_saved_model_cli,
    run_in_subprocess,
    run_signature,
    saved_model_cli,
    text_inputs,
)
from minilm_tf.export.savedmodel_signatures import (
    SERVING_DEFAULT,
    TOKEN_IDS_SIGNATURE,
    TOKENIZE_SIGNATURE,
    build_archive,
    read_signature_defs,
    signature_summary,
)
from minilm_tf.export.tf_serving import (
    DEFAULT_WARMUP_TEXTS,
    WARMUP_FILE,
    make_predict_request,
    predict,
    validate_predict_request,
    write_warmup,
)
from minilm_tf.utils import workdir as workdirs
from minilm_tf.utils.versions import library_versions

__all__ = [
    "DEFAULT_WARMUP_TEXTS",
    "EXTRA_DIR",
    "METADATA_FILE",
    "SERVING_DEFAULT",
    "TOKENIZE_SIGNATURE",
    "TOKEN_IDS_SIGNATURE",
    "VERIFICATION_FILE",
    "WARMUP_FILE",
    "VerificationError",
    "as_bytes_list",
    "build_archive",
    "compare_outputs",
    "export_saved_model",
    "list_versions",
    "load",
    "make_predict_request",
    "plain_saved_model_cli",
    "predict",
    "read_metadata",
    "read_signature_defs",
    "resolve_version",
    "run_in_subprocess",
    "run_signature",
    "saved_model_cli",
    "signature_summary",
    "text_inputs",
    "validate_predict_request",
]

EXTRA_DIR = "assets.extra"
METADATA_FILE = "minilm_tf_export.json"
VERIFICATION_FILE = "verification.json"
_VERSION_RE = re.compile(r"^[0-9]+$")


class VerificationError(RuntimeError):
    """An export failed its checks; `report` holds what they found."""

    def __init__(self, message, report=None):
        super().__init__(message)
        self.report = report


# --------------------------------------------------------------------------
# Version directories


def list_versions(model_dir: str) -> list[int]:
    """Integer version directories under `<export_dir>/<model_name>`."""
    if not os.path.isdir(model_dir):
        return []
    return sorted(int(n) for n in os.listdir(model_dir)
                  if _VERSION_RE.match(n) and os.path.isdir(os.path.join(model_dir, n)))


def resolve_version(model_dir: str, version: int | None = None) -> int:
    """`version` if free (FileExistsError otherwise), else latest + 1 (1 first)."""
    if version is None:
        existing = list_versions(model_dir)
        return existing[-1] + 1 if existing else 1
    version = int(version)
    if version < 0:
        raise ValueError(f"version must be a non-negative integer, got {version}.")
    if os.path.lexists(os.path.join(model_dir, str(version))):
        raise FileExistsError(
            f"{os.path.join(model_dir, str(version))} already exists; versions are never "
            "overwritten. Omit --version to get the next free number."
        )
    return version


def _publish(tmp_dir: str, model_dir: str, version: int, auto: bool) -> tuple[str, int]:
    """Renames `tmp_dir` to `model_dir/version`; with `auto`, moves on to the
    next free number when a concurrent export took this one."""
    for _ in range(100):
        final = os.path.join(model_dir, str(version))
        if not os.path.lexists(final):
            try:
                os.rename(tmp_dir, final)  # fails on an existing non-empty dir
                return final, version
            except OSError:
                if not os.path.lexists(final):
                    raise
        if not auto:
            raise FileExistsError(f"{final} appeared while exporting; not overwriting it.")
        version = max(version, *(list_versions(model_dir) or [0])) + 1
    raise FileExistsError(f"Could not find a free version number under {model_dir}.")


# --------------------------------------------------------------------------
# Writing an export


def export_saved_model(
    source: src.ExportSource,
    export_dir: str,
    model_name: str,
    version: int | None = None,
    trim_padding: bool = True,
    warmup_texts: Sequence[str] | None = DEFAULT_WARMUP_TEXTS,
    verify: Any = None,
) -> dict:
    """Writes `<export_dir>/<model_name>/<version>/` atomically.

    Args:
        source: from `load_source`.
        export_dir: the TF Serving model base path's parent.
        model_name: directory (and TF Serving model) name.
        version: explicit version (FileExistsError if it exists), or None for
            the next free number.
        trim_padding: in `serving_default`, run the encoder only on as many
            positions as the longest example needs (identical outputs up to
            float rounding, less compute for short texts).
        warmup_texts: texts for TF Serving's warm-up file (None: no file).
        verify: optional `verify(tmp_path) -> dict` run on the finished
            SavedModel before it is published; its result is written to
            `assets.extra/verification.json`, and an exception (or a result
            with `"ok": False`) aborts the export, leaving no version behind.

    Returns:
        {"path", "version", "model_name", "signatures", "metadata", "verification"}.
    """
    if not model_name or os.sep in model_name or model_name.startswith("."):
        raise ValueError(f"Invalid model name {model_name!r}.")
    model_dir = os.path.join(os.path.abspath(export_dir), model_name)
    if os.path.exists(model_dir) and not os.path.isdir(model_dir):
        raise NotADirectoryError(f"{model_dir} exists and is not a directory.")
    # One export at a time per model directory; leftovers of a killed export
    # (.tmp-<version>-*) are removed.
    with workdirs.hold(model_dir, what=f"the export directory {model_dir}"):
        return _export(source, model_dir, model_name, version, trim_padding, warmup_texts,
                       verify)


def _export(source, model_dir, model_name, version, trim_padding, warmup_texts, verify) -> dict:
    auto = version is None
    version = resolve_version(model_dir, version)
    tmp = os.path.join(model_dir, f".tmp-{version}-{uuid.uuid4().hex[:8]}")
    try:
        archive = build_archive(source, trim_padding=trim_padding)
        archive.write_out(tmp, verbose=False)
        signatures = signature_summary(tmp)
        os.makedirs(os.path.join(tmp, EXTRA_DIR), exist_ok=True)
        warmup = False
        if warmup_texts:
            warmup = write_warmup(os.path.join(tmp, EXTRA_DIR, WARMUP_FILE), model_name,
                                  source, warmup_texts)
        metadata = dict(source.metadata())
        metadata.update({
            "model_name": model_name,
            "signatures": signatures,
            "trim_padding": trim_padding,
            "warmup_requests": warmup,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "versions": library_versions(),
        })
        with open(os.path.join(tmp, EXTRA_DIR, METADATA_FILE), "w", encoding="utf-8") as f:
            json.dump(metadata, f, indent=2, default=str)
        verification = None
        if verify is not None:
            verification = verify(tmp)
            # Name the published path, not the temporary one, in the report.
            intended = os.path.join(model_dir, str(version))
            verification = json.loads(json.dumps(verification, default=str).replace(
                tmp, intended))
            with open(os.path.join(tmp, EXTRA_DIR, VERIFICATION_FILE), "w",
                      encoding="utf-8") as f:
                json.dump(verification, f, indent=2, default=str)
            if not verification.get("ok", True):
                raise VerificationError(
                    f"The export failed its checks (not published): {verification.get('failures')}",
                    verification)
        final, version = _publish(tmp, model_dir, version, auto)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    metadata["version"] = version
    return {"path": final, "version": version, "model_name": model_name,
            "signatures": signatures, "metadata": metadata, "verification": verification}



def read_metadata(path: str) -> dict:
    """`assets.extra/minilm_tf_export.json` of an export."""
    with open(os.path.join(path, EXTRA_DIR, METADATA_FILE), encoding="utf-8") as f:
        return json.load(f)
