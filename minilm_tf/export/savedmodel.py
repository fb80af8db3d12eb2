"""SavedModel export in TF Serving's layout, and its checks.

`export_saved_model(source, export_dir, model_name)` writes
`<export_dir>/<model_name>/<version>/` (a fresh version number unless one is
given; an existing version is never overwritten) atomically: the SavedModel
is written to a hidden temporary directory beside the versions (TF Serving
ignores names that are not integers) and renamed into place.

Signatures:

* `serving_default`: `text` (and `text_pair` for pair tasks), `[None]`
  UTF-8 strings; tokenised in the graph by the model's keras-hub
  preprocessor (tensorflow-text ops). Outputs: `logits`, `probabilities`,
  `label` (string class names when the task has them), `label_id` for
  classifiers; `score`, `logits` for regression; `embedding` for encoders.
* `serving_token_ids`: `token_ids`, `segment_ids`, `padding_mask`
  (`[None, None]` int32, at most the backbone's max_sequence_length long),
  same outputs. Token ids outside `[0, vocabulary size)` (and segment ids
  outside `[0, num_segments)`) are an `InvalidArgumentError`.
* `tokenize`: the strings -> the three id tensors `serving_default` feeds
  the model (padded to `sequence_length`).

Besides the SavedModel, `assets.extra/` holds `minilm_tf_export.json`
(labels, sequence length, tokenizer settings, pooling, signatures) and, when
`tensorflow-serving-api` is installed, `tf_serving_warmup_requests` (TF
Serving replays them when it loads the version).
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import uuid
from typing import Any, Sequence

import numpy as np

from minilm_tf import _compat
from minilm_tf.utils import workdir as workdirs
from minilm_tf.export import source as src
from minilm_tf.export import tokenization

logger = logging.getLogger(__name__)

SERVING_DEFAULT = "serving_default"
TOKEN_IDS_SIGNATURE = "serving_token_ids"
TOKENIZE_SIGNATURE = "tokenize"
EXTRA_DIR = "assets.extra"
METADATA_FILE = "minilm_tf_export.json"
WARMUP_FILE = "tf_serving_warmup_requests"
VERIFICATION_FILE = "verification.json"
DEFAULT_WARMUP_TEXTS = ("This is a warm-up request.", "", "Un café, s'il vous plaît.")
_VERSION_RE = re.compile(r"^[0-9]+$")


class VerificationError(RuntimeError):
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
# Building the archive


def _string_spec(name):
    import tensorflow as tf

    return tf.TensorSpec([None], tf.string, name=name)


def _id_specs(length=None):
    import tensorflow as tf

    return [tf.TensorSpec([None, length], tf.int32, name=n) for n in src.ID_INPUTS]


def _tokenize_fn(source: src.ExportSource):
    import tensorflow as tf

    def tokenize(*texts):
        texts = [tokenization.as_batch(t) for t in texts]
        if len(texts) == 2:
            with tf.control_dependencies([tf.debugging.assert_equal(
                    tf.size(texts[0]), tf.size(texts[1]),
                    message="text and text_pair must have the same batch size")]):
                texts = [tf.identity(t) for t in texts]
        texts = [tokenization.sanitize_utf8(t) for t in texts]
        x = texts[0] if len(texts) == 1 else tuple(texts)
        features = source.preprocessor(x=x)  # keyword: a positional tuple means (x, y)
        return {k: tf.cast(features[k], tf.int32) for k in src.ID_INPUTS}

    return tokenize


def _check_ids_fn(source: src.ExportSource):
    """In-graph range checks of caller-given ids: the embedding lookup would
    wrap negative ids around (and return zeros for too-large ones on GPU)."""
    import tensorflow as tf

    vocab = int(getattr(source.backbone, "vocabulary_size", None)
                or source.tokenizer.vocabulary_size())
    segments = getattr(source.backbone, "num_segments", None)

    def check(token_ids, segment_ids, padding_mask):
        checks = [
            tf.debugging.assert_non_negative(
                token_ids, message="token_ids must be non-negative"),
            tf.debugging.assert_less(
                token_ids, tf.constant(vocab, tf.int32),
                message=f"token_ids must be less than the vocabulary size ({vocab})"),
        ]
        if segments:
            checks += [
                tf.debugging.assert_non_negative(
                    segment_ids, message="segment_ids must be non-negative"),
                tf.debugging.assert_less(
                    segment_ids, tf.constant(int(segments), tf.int32),
                    message=f"segment_ids must be less than the number of segments ({segments})"),
            ]
        with tf.control_dependencies(checks):
            return [tf.identity(t) for t in (token_ids, segment_ids, padding_mask)]

    return check


def build_archive(source: src.ExportSource, trim_padding: bool = True):
    """A `keras.export.ExportArchive` with the three signatures."""
    import keras

    tokenize = _tokenize_fn(source)
    check_ids = _check_ids_fn(source)

    def from_ids(token_ids, segment_ids, padding_mask):
        features = src.id_features(*check_ids(token_ids, segment_ids, padding_mask))
        return src.compute_outputs(source, features)

    def from_text(*texts):
        features = tokenize(*texts)
        if trim_padding:
            features = tokenization.trim_to_longest(features)
        return src.compute_outputs(source, features)

    archive = keras.export.ExportArchive()
    # No archive.track(model): it would save every weight twice (the Keras
    # variables and, via the endpoints, the tf.Variables they wrap).
    # Variables used by the endpoints are tracked automatically.
    if source.is_pair:
        def serve(text, text_pair):
            return from_text(text, text_pair)

        def tok(text, text_pair):
            return tokenize(text, text_pair)

        text_specs = [_string_spec("text"), _string_spec("text_pair")]
    else:
        def serve(text):
            return from_text(text)

        def tok(text):
            return tokenize(text)

        text_specs = [_string_spec("text")]
    archive.add_endpoint(SERVING_DEFAULT, serve, input_signature=text_specs)
    archive.add_endpoint(TOKEN_IDS_SIGNATURE, from_ids, input_signature=_id_specs())
    archive.add_endpoint(TOKENIZE_SIGNATURE, tok, input_signature=text_specs)
    return archive


def _write_warmup(path: str, model_name: str, source: src.ExportSource,
                  texts: Sequence[str]) -> bool:
    try:
        from tensorflow_serving.apis import prediction_log_pb2
    except ImportError:
        logger.info("tensorflow-serving-api not installed: no warm-up requests written.")
        return False
    import tensorflow as tf

    inputs = {"text": list(texts)}
    if source.is_pair:
        inputs["text_pair"] = list(texts)
    request = make_predict_request(model_name, inputs)
    with tf.io.TFRecordWriter(path) as writer:
        log = prediction_log_pb2.PredictionLog(
            predict_log=prediction_log_pb2.PredictLog(request=request))
        writer.write(log.SerializeToString())
    return True


def signature_summary(path: str) -> dict:
    """{signature: {"inputs": {name: [dtype, shape]}, "outputs": {...}}} read
    from saved_model.pb (-1: any size)."""
    import tensorflow as tf

    def describe(infos):
        return {k: [tf.dtypes.as_dtype(v.dtype).name,
                    None if v.tensor_shape.unknown_rank else
                    [d.size for d in v.tensor_shape.dim]] for k, v in sorted(infos.items())}

    return {name: {"inputs": describe(sig.inputs), "outputs": describe(sig.outputs)}
            for name, sig in sorted(read_signature_defs(path).items())
            if not name.startswith("__")}


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
            warmup = _write_warmup(os.path.join(tmp, EXTRA_DIR, WARMUP_FILE), model_name,
                                   source, warmup_texts)
        metadata = dict(source.metadata())
        metadata.update({
            "model_name": model_name,
            "signatures": signatures,
            "trim_padding": trim_padding,
            "warmup_requests": warmup,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "versions": _versions(),
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


def _versions() -> dict:
    import importlib

    out = {}
    for name in ("tensorflow", "keras", "keras_hub", "tensorflow_text"):
        try:
            out[name] = importlib.import_module(name).__version__
        except Exception:  # pragma: no cover
            pass
    return out


def read_metadata(path: str) -> dict:
    with open(os.path.join(path, EXTRA_DIR, METADATA_FILE), encoding="utf-8") as f:
        return json.load(f)


# --------------------------------------------------------------------------
# Running and checking an export


def load(path: str):
    """`tf.saved_model.load` after registering the tensorflow-text ops."""
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the ops the graph uses)

    return tf.saved_model.load(path)


def run_signature(loaded, inputs: dict, signature: str = SERVING_DEFAULT) -> dict:
    """Calls a signature with numpy/list inputs; returns numpy outputs."""
    import tensorflow as tf

    fn = loaded.signatures[signature]
    specs = fn.structured_input_signature[1]
    args = {k: tf.constant(np.asarray(v, dtype=object) if specs[k].dtype == tf.string
                           else np.asarray(v), dtype=specs[k].dtype)
            for k, v in inputs.items()}
    return {k: v.numpy() for k, v in fn(**args).items()}


def text_inputs(texts, text_pairs=None) -> dict:
    def enc(values):
        return [v if isinstance(v, bytes) else str(v).encode("utf-8") for v in values]

    out = {"text": enc(texts)}
    if text_pairs is not None:
        out["text_pair"] = enc(text_pairs)
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
    import tempfile

    with tempfile.TemporaryDirectory(prefix="minilm_sm_check_") as tmp:
        request = os.path.join(tmp, "request.npz")
        result = os.path.join(tmp, "result.npz")
        flat = {}
        for call, (signature, inputs) in calls.items():
            if "|" in call or "|" in signature:
                raise ValueError("call and signature names may not contain '|'.")
            for key, value in inputs.items():
                flat[f"{call}|{signature}|{key}"] = (
                    np.asarray(as_bytes_list(value), dtype=object) if _is_text(value)
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


# --------------------------------------------------------------------------
# TF Serving PredictRequest


def make_predict_request(model_name: str, inputs: dict, signature: str = SERVING_DEFAULT,
                         version: int | None = None):
    """A `tensorflow_serving.apis.predict_pb2.PredictRequest`."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = int(version)
    for key, value in inputs.items():
        arr = np.asarray(value, dtype=object) if _is_text(value) else np.asarray(value)
        dtype = tf.string if arr.dtype == object else None
        request.inputs[key].CopyFrom(tf.make_tensor_proto(arr, dtype=dtype))
    return request


def _is_text(value) -> bool:
    arr = np.asarray(value, dtype=object)
    return arr.size > 0 and isinstance(arr.flat[0], (bytes, str))


def validate_predict_request(signature_def, request) -> list[str]:
    """Problems TF Serving would reject `request` for (empty when valid):
    input keys must equal the signature's, dtypes match, shapes compatible.

    `signature_def`: a `SignatureDef` proto (see `read_signature_defs`)."""
    import tensorflow as tf

    problems = []
    expected = dict(signature_def.inputs)
    sent = dict(request.inputs)
    if set(expected) != set(sent):
        problems.append(f"inputs {sorted(sent)} != signature inputs {sorted(expected)}"
                        f" (missing {sorted(set(expected) - set(sent))},"
                        f" extra {sorted(set(sent) - set(expected))})")
    for key in sorted(set(expected) & set(sent)):
        info, tensor = expected[key], sent[key]
        if info.dtype != tensor.dtype:
            problems.append(f"{key}: dtype {tf.dtypes.as_dtype(tensor.dtype).name} != "
                            f"{tf.dtypes.as_dtype(info.dtype).name}")
        if not info.tensor_shape.unknown_rank:
            want = [d.size for d in info.tensor_shape.dim]
            got = [d.size for d in tensor.tensor_shape.dim]
            if len(want) != len(got) or any(w not in (-1, g) for w, g in zip(want, got)):
                problems.append(f"{key}: shape {got} incompatible with {want}")
    return problems


def read_signature_defs(path: str) -> dict:
    """{name: SignatureDef} from `saved_model.pb` (no TensorFlow runtime)."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    for meta_graph in proto.meta_graphs:
        if "serve" in meta_graph.meta_info_def.tags:
            return dict(meta_graph.signature_def)
    raise ValueError(f"{path} has no 'serve' meta graph.")


def predict(loaded, request):
    """What TF Serving's Predict does with `request` on a loaded SavedModel:
    returns a `PredictResponse`."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    signature = request.model_spec.signature_name or SERVING_DEFAULT
    fn = loaded.signatures[signature]
    inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
    outputs = fn(**inputs)
    response = predict_pb2.PredictResponse()
    response.model_spec.CopyFrom(request.model_spec)
    response.model_spec.signature_name = signature
    for key, value in outputs.items():
        response.outputs[key].CopyFrom(tf.make_tensor_proto(value.numpy()))
    return response


def as_bytes_list(values: Any) -> list[bytes]:
    return [v if isinstance(v, bytes) else str(v).encode("utf-8") for v in values]
