"""TFLite conversion: float32, dynamic-range int8, float16, full-integer
int8, with or without the tokenizer in the model.

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
import tempfile
import time
from typing import Callable, Iterable, Sequence

import keras
import numpy as np
import tensorflow as tf

from minilm_tf.export import source as src
from minilm_tf.export import tokenization

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
    """A converted model (`content`, the .tflite bytes) and how it was made."""

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
    tokenizer = tokenization.tflite_tokenizer(source.tokenizer, source.vocabulary)
    module = tf.Module()
    length = source.sequence_length
    if source.is_pair:
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text"),
                                      tf.TensorSpec([None], tf.string, name="text_pair")])
        def serve(text, text_pair):
            return tokenization.pack_pair(tokenizer(text), tokenizer(text_pair), length,
                                          tokenizer.special)
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
