"""TFLite conversion (float32, dynamic-range int8, float16, full-integer
int8), the LiteRT runner, and the checks `tools/export_tflite.py` reports.

A converted model has one signature, `serving_default`:

* with the tokenizer (`with_tokenizer=True`): input `text` (and
  `text_pair`), `[None]` strings; tokenised by the tensorflow-text TFLite
  custom ops `FastBertNormalize` + `FastWordpieceTokenize` (see
  `minilm_tf.export.tokenization` for the known differences from keras-hub)
  and packed to `sequence_length` with builtin ops. Needs
  `ai_edge_litert.interpreter.InterpreterWithCustomOps(
  custom_op_registerers=tf_text.tflite_registrar.SELECT_TFTEXT_OPS)`
  (`load_interpreter` does that).
* without: `token_ids`, `segment_ids`, `padding_mask`, `[None,
  sequence_length]` int32; runs on the plain interpreter.
* full-integer int8: `token_ids`, `segment_ids` `[1, n]` int32, one example's
  n <= sequence_length real tokens, no padding. Padding would need the
  attention mask, which keras-hub applies as `where(mask, scores, -1e9)`: the
  -1e9 sets the int8 range of the attention scores and flattens them all to
  one value (cosine to Keras 0.27 on all-MiniLM-L6-v2 padded to 256, 0.69
  unpadded; per-tensor int8 activations lose the rest to BERT's activation
  outliers, so prefer `dynamic` or `float16` for encoders). `TFLiteRunner`
  strips the padding and runs such a model example by example.

Outputs as the SavedModel's, minus the string `label` (TFLite keeps the
class names out of the graph: they are in the report / export metadata):
`logits`, `probabilities`, `label_id`; `score`, `logits`; `embedding`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import statistics
import tempfile
import time
from typing import Callable, Iterable, Sequence

import numpy as np

from minilm_tf.export import source as src
from minilm_tf.export import tokenization
from minilm_tf.tasks import metrics as mt
from minilm_tf.utils import fileio

logger = logging.getLogger(__name__)

MODES = ("float32", "dynamic", "float16", "int8")
UNPADDED_INPUTS = ("token_ids", "segment_ids")
MODE_HELP = {
    "float32": "no quantisation",
    "dynamic": "dynamic-range quantisation: int8 weights, float activations",
    "float16": "float16 weights, float32 compute",
    "int8": "full-integer quantisation: int8 weights and activations, calibrated on a "
            "representative dataset (one unpadded example of token ids in, float outputs)",
}


@dataclasses.dataclass
class ConversionResult:
    content: bytes
    mode: str
    with_tokenizer: bool
    sequence_length: int
    integer_only: bool | None = None  # int8: whether every op is integer
    notes: list = dataclasses.field(default_factory=list)
    seconds: float = 0.0


def _tflite_outputs(source: src.ExportSource, features: dict) -> dict:
    out = src.compute_outputs(source, features, string_labels=False)
    out.pop("label", None)  # == label_id without string labels
    return out


def _write_conversion_savedmodel(source: src.ExportSource, path: str, with_tokenizer: bool,
                                 unpadded: bool = False):
    import keras
    import tensorflow as tf

    length = source.sequence_length
    archive = keras.export.ExportArchive()
    # No archive.track(model): it would save every weight twice (the Keras
    # variables and, via the endpoints, the tf.Variables they wrap).
    # Variables used by the endpoints are tracked automatically.
    if with_tokenizer:
        tokenizer = tokenization.tflite_tokenizer(source.tokenizer, source.vocabulary)

        if source.is_pair:
            def serve(text, text_pair):
                features = tokenization.pack_pair(tokenizer(text), tokenizer(text_pair), length,
                                                  tokenizer.special)
                return _tflite_outputs(source, features)

            specs = [tf.TensorSpec([None], tf.string, name="text"),
                     tf.TensorSpec([None], tf.string, name="text_pair")]
        else:
            def serve(text):
                return _tflite_outputs(source, tokenization.pack_single(tokenizer(text), length,
                                                               tokenizer.special))

            specs = [tf.TensorSpec([None], tf.string, name="text")]
    elif unpadded:
        # One example, only its real tokens: no padding, so no attention mask.
        def serve(token_ids, segment_ids):
            return _tflite_outputs(source, src.id_features(token_ids, segment_ids,
                                                           tf.ones_like(token_ids)))

        specs = [tf.TensorSpec([1, None], tf.int32, name=n) for n in UNPADDED_INPUTS]
    else:
        def serve(token_ids, segment_ids, padding_mask):
            return _tflite_outputs(source, src.id_features(token_ids, segment_ids, padding_mask))

        specs = [tf.TensorSpec([None, length], tf.int32, name=n) for n in src.ID_INPUTS]
    archive.add_endpoint("serving_default", serve, input_signature=specs)
    archive.write_out(path, verbose=False)


def _tokenizer_only_savedmodel(source: src.ExportSource, path: str):
    import tensorflow as tf

    tokenizer = tokenization.tflite_tokenizer(source.tokenizer, source.vocabulary)
    module = tf.Module()
    length = source.sequence_length
    if source.is_pair:
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text"),
                                      tf.TensorSpec([None], tf.string, name="text_pair")])
        def serve(text, text_pair):
            return tokenization.pack_pair(tokenizer(text), tokenizer(text_pair), length, tokenizer.special)
    else:
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
        def serve(text):
            return tokenization.pack_single(tokenizer(text), length, tokenizer.special)
    module.serve = serve
    tf.saved_model.save(module, path, signatures={"serving_default": serve})


def convert_tokenizer_only(source: src.ExportSource) -> bytes:
    """A TFLite model holding only the TFLite tokenizer + packing (strings ->
    `token_ids`, `segment_ids`, `padding_mask`): to check ids on the real
    interpreter."""
    import tensorflow as tf

    tmp = tempfile.mkdtemp(prefix="minilm_tok_")
    try:
        _tokenizer_only_savedmodel(source, tmp)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
        converter.allow_custom_ops = True
        return converter.convert()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def unpad(features: dict, i: int) -> dict:
    """Example i of padded id features as the int8 model takes it: `[1, n]`
    `token_ids` and `segment_ids` of its n real tokens."""
    n = max(int(np.sum(features["padding_mask"][i])), 1)
    return {k: np.asarray(features[k][i:i + 1, :n], dtype=np.int32) for k in UNPADDED_INPUTS}


def representative_features(source: src.ExportSource, texts: Sequence[str],
                            text_pairs: Sequence[str] | None = None) -> Callable[[], Iterable]:
    """A representative dataset (for int8 calibration): one unpadded example
    at a time, tokenised by the keras-hub preprocessor."""
    features = src.keras_tokenize(source, texts, text_pairs)

    def gen():
        for i in range(len(features["token_ids"])):
            yield unpad(features, i)

    return gen


def convert(
    source: src.ExportSource,
    mode: str = "float32",
    with_tokenizer: bool = False,
    representative_texts: Sequence[str] | None = None,
    representative_pairs: Sequence[str] | None = None,
    allow_float_fallback: bool = True,
) -> ConversionResult:
    """Converts `source` to TFLite.

    Args:
        mode: one of `MODES`.
        with_tokenizer: strings in (tensorflow-text custom ops) instead of ids.
        representative_texts: calibration texts (required for `int8`).
        allow_float_fallback: for `int8`, when some op has no integer kernel,
            keep it in float (and say so in `notes` / `integer_only=False`)
            instead of failing.
    """
    import tensorflow as tf

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")
    if mode == "int8" and with_tokenizer:
        raise ValueError(
            "Full-integer int8 calibration runs the model in the TFLite calibrator, which "
            "has no kernels for the tensorflow-text custom ops: convert int8 without "
            "--with_tokenizer (token ids in), or use --mode dynamic with the tokenizer."
        )
    if mode == "int8" and not representative_texts:
        raise ValueError("mode='int8' needs representative texts for calibration.")
    t0 = time.perf_counter()
    tmp = tempfile.mkdtemp(prefix="minilm_tflite_")
    notes = []
    integer_only = None
    try:
        _write_conversion_savedmodel(source, tmp, with_tokenizer, unpadded=mode == "int8")

        def make_converter():
            converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
            if with_tokenizer:
                converter.allow_custom_ops = True
            if mode in ("dynamic", "float16", "int8"):
                converter.optimizations = [tf.lite.Optimize.DEFAULT]
            if mode == "float16":
                converter.target_spec.supported_types = [tf.float16]
            if mode == "int8":
                converter.representative_dataset = representative_features(
                    source, representative_texts, representative_pairs)
                converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            return converter

        try:
            content = make_converter().convert()
            integer_only = True if mode == "int8" else None
        except Exception as e:  # noqa: BLE001 - converter errors are plain Exceptions
            if mode != "int8" or not allow_float_fallback:
                raise
            logger.warning("integer-only int8 conversion failed (%s); keeping float kernels "
                           "for the ops without int8 ones.", str(e).splitlines()[0][:300])
            converter = make_converter()
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                                                   tf.lite.OpsSet.TFLITE_BUILTINS]
            content = converter.convert()
            integer_only = False
            notes.append("int8: some ops have no integer kernel and run in float "
                         f"(integer-only conversion failed: {str(e).splitlines()[0][:200]})")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return ConversionResult(content=content, mode=mode, with_tokenizer=with_tokenizer,
                            sequence_length=source.sequence_length, integer_only=integer_only,
                            notes=notes, seconds=time.perf_counter() - t0)


# --------------------------------------------------------------------------
# Running


def load_interpreter(model: bytes | str, num_threads: int = 1):
    """A LiteRT interpreter with the tensorflow-text custom ops registered."""
    import tensorflow_text as tf_text
    from ai_edge_litert.interpreter import InterpreterWithCustomOps

    kwargs = {"model_content": model} if isinstance(model, (bytes, bytearray)) else {
        "model_path": model}
    return InterpreterWithCustomOps(
        custom_op_registerers=tf_text.tflite_registrar.SELECT_TFTEXT_OPS,
        num_threads=int(num_threads), **kwargs)


class TFLiteRunner:
    """Runs a converted model's `serving_default` signature in batches."""

    def __init__(self, model: bytes | str, num_threads: int = 1):
        self.interpreter = load_interpreter(model, num_threads)
        self.runner = self.interpreter.get_signature_runner("serving_default")
        details = self.runner.get_input_details()
        self.input_names = tuple(sorted(details))
        self.takes_text = "text" in details
        # int8 models take one example's real tokens (no padding_mask)
        self.unpadded = not self.takes_text and "padding_mask" not in details
        self.sequence_length = None
        if not self.takes_text and not self.unpadded:
            self.sequence_length = int(details["token_ids"]["shape"][1])

    def __call__(self, **inputs) -> dict:
        """A batch in (strings, or padded id features), a batch out; an
        unpadded (int8) model is run example by example."""
        if self.unpadded:
            features = {k: np.asarray(v, dtype=np.int32) for k, v in inputs.items()}
            rows = [dict(self.runner(**unpad(features, i)))
                    for i in range(len(features["token_ids"]))]
            if not rows:
                return self._empty_outputs()
            return {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}
        feed = {}
        for name in self.input_names:
            value = inputs[name]
            if self.takes_text:
                feed[name] = np.asarray(tkn_bytes(value), dtype=object)
            else:
                feed[name] = np.asarray(value, dtype=np.int32)
        return dict(self.runner(**feed))

    def _empty_outputs(self) -> dict:
        out = {}
        for name, detail in self.runner.get_output_details().items():
            shape = [0] + [int(d) for d in detail["shape"][1:]]
            out[name] = np.zeros(shape, dtype=detail["dtype"])
        return out

    def run_batched(self, inputs: dict, batch_size: int = 32) -> dict:
        n = len(next(iter(inputs.values())))
        chunks = []
        for start in range(0, n, batch_size):
            chunks.append(self(**{k: v[start:start + batch_size] for k, v in inputs.items()}))
        if not chunks:
            return {}
        return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}


def tkn_bytes(values) -> list[bytes]:
    return [v if isinstance(v, bytes) else str(v).encode("utf-8") for v in values]


def op_summary(model: bytes) -> dict:
    """Counts of the model's ops (custom ops listed by name)."""
    import collections

    from ai_edge_litert.interpreter import Interpreter

    try:
        interpreter = Interpreter(model_content=model)
        ops = interpreter._get_ops_details()  # noqa: SLF001 - only public way to list ops
    except Exception:  # custom ops: need the registrar
        interpreter = load_interpreter(model)
        ops = interpreter._get_ops_details()  # noqa: SLF001
    return dict(collections.Counter(op["op_name"] for op in ops))


def measure_latency(run_one: Callable[[int], object], num_examples: int,
                    warmup: int = 3) -> dict:
    """Median / p90 milliseconds of `run_one(i)` over `num_examples` calls."""
    for i in range(min(warmup, num_examples)):
        run_one(i)
    times = []
    for i in range(num_examples):
        t0 = time.perf_counter()
        run_one(i)
        times.append(1000.0 * (time.perf_counter() - t0))
    if not times:
        return {}
    times.sort()
    return {"median_ms": statistics.median(times),
            "p90_ms": times[min(len(times) - 1, int(round(0.9 * (len(times) - 1))))],
            "mean_ms": float(np.mean(times)), "num_examples": len(times)}


def tflite_latency(runner: TFLiteRunner, texts, text_pairs, features, num_examples: int) -> dict:
    """Batch-1 latency per example (tokenisation included when in the model)."""
    n = min(num_examples, len(texts))

    def one(i):
        if runner.takes_text:
            args = {"text": [texts[i]]}
            if text_pairs is not None:
                args["text_pair"] = [text_pairs[i]]
        else:
            args = {k: features[k][i:i + 1] for k in src.ID_INPUTS}
        runner(**args)

    return measure_latency(one, n)


# --------------------------------------------------------------------------
# Checking a converted model


def check_tflite(
    source: src.ExportSource,
    model: bytes,
    texts: Sequence[str],
    text_pairs: Sequence[str] | None = None,
    labels: np.ndarray | None = None,
    metric_names: Sequence[str] = (),
    num_threads: int = 1,
    latency_examples: int = 50,
    reference: dict | None = None,
    batch_size: int = 16,
    return_outputs: bool = False,
) -> dict:
    """Compares the TFLite model with the Keras model on `texts`.

    Returns a JSON-able dict: max abs diff of the main output, label
    agreement (tasks) or cosine similarity (encoders), the task metric of
    both (when `labels` are given), token-id agreement (tokenizer in model)
    and batch-1 latency (`latency_examples` > 0).
    """
    texts = list(texts)
    pairs = list(text_pairs) if text_pairs is not None else None
    if reference is None:
        reference = src.keras_reference(source, texts, pairs)
    features = reference["_features"]
    runner = TFLiteRunner(model, num_threads)
    if runner.takes_text:
        inputs = {"text": texts}
        if pairs is not None:
            inputs["text_pair"] = pairs
    else:
        inputs = dict(features)
    got = runner.run_batched(inputs, batch_size)
    main = src.main_output(source)
    report = compare_main_outputs(source, reference[main], got[main], labels, metric_names)
    if runner.takes_text:
        tok_runner = TFLiteRunner(convert_tokenizer_only(source), num_threads)
        ids = tok_runner.run_batched(inputs, batch_size)
        same = np.all(ids["token_ids"] == features["token_ids"], axis=1) & np.all(
            ids["segment_ids"] == features["segment_ids"], axis=1)
        report["token_ids"] = {
            "identical_examples": int(same.sum()),
            "total": len(texts),
            "differing_examples": [texts[i][:200] for i in np.flatnonzero(~same)[:10]],
        }
    if latency_examples > 0:
        report["latency_batch1"] = dict(
            tflite_latency(runner, texts, pairs, features, latency_examples),
            num_threads=num_threads, sequence_length=source.sequence_length,
            padded_to_sequence_length=not runner.unpadded,
            includes_tokenization=runner.takes_text)
    if return_outputs:
        report["_outputs"] = got
    return report


def compare_main_outputs(source: src.ExportSource, ref_main, got_main, labels=None,
                         metric_names: Sequence[str] = ()) -> dict:
    """Max/mean abs diff; label agreement and task metrics (tasks), cosine
    similarity and nearest-neighbour agreement (encoders)."""
    ref_main, got_main = np.asarray(ref_main), np.asarray(got_main)
    n = len(ref_main)
    report = {
        "num_examples": n,
        "compared_output": src.main_output(source),
        "max_abs_diff": float(np.max(np.abs(ref_main - got_main))) if n else 0.0,
        "mean_abs_diff": float(np.mean(np.abs(ref_main - got_main))) if n else 0.0,
    }
    ref_pred = got_pred = None
    if source.kind == src.CLASSIFICATION:
        ref_pred, got_pred = ref_main.argmax(-1), got_main.argmax(-1)
        report["label_agreement"] = float(np.mean(ref_pred == got_pred)) if n else 1.0
        report["label_disagreements"] = int(np.sum(ref_pred != got_pred))
    elif source.kind == src.REGRESSION:
        ref_pred, got_pred = ref_main.reshape(-1), got_main.reshape(-1)
    elif n:
        a = ref_main / np.maximum(np.linalg.norm(ref_main, axis=-1, keepdims=True), 1e-12)
        b = got_main / np.maximum(np.linalg.norm(got_main, axis=-1, keepdims=True), 1e-12)
        cos = np.sum(a * b, axis=-1)
        report["cosine_similarity"] = {"min": float(cos.min()), "mean": float(cos.mean())}
        if n > 1:  # do both rank the other texts' nearest neighbour the same?
            sim_ref, sim_got = a @ a.T, b @ b.T
            np.fill_diagonal(sim_ref, -np.inf)
            np.fill_diagonal(sim_got, -np.inf)
            report["nearest_neighbour_agreement"] = float(
                np.mean(sim_ref.argmax(-1) == sim_got.argmax(-1)))
    if labels is not None and len(metric_names) and ref_pred is not None and n:
        keras_metrics = fileio.json_clean(mt.compute_metrics(metric_names, labels, ref_pred))
        tflite_metrics = fileio.json_clean(mt.compute_metrics(metric_names, labels, got_pred))
        report["metrics"] = {
            "keras": keras_metrics,
            "tflite": tflite_metrics,
            "drop": {k: (None if keras_metrics[k] is None or tflite_metrics[k] is None
                         else keras_metrics[k] - tflite_metrics[k]) for k in keras_metrics},
        }
    return report


def write_model(content: bytes, path: str) -> None:
    """Writes the .tflite file atomically (temp file + rename)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", suffix=".tflite", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
