"""TF Serving: the warm-up requests written beside an export
(`assets.extra/tf_serving_warmup_requests`, replayed when TF Serving loads
the version), and `PredictRequest` helpers: build one, check it against a
signature the way TF Serving would, and answer it as TF Serving's Predict
does. `tensorflow-serving-api` is imported only when used."""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import tensorflow as tf

from minilm_tf.export import source as src
from minilm_tf.export.savedmodel_runtime import is_text
from minilm_tf.export.savedmodel_signatures import SERVING_DEFAULT

logger = logging.getLogger(__name__)

WARMUP_FILE = "tf_serving_warmup_requests"
DEFAULT_WARMUP_TEXTS = ("This is a warm-up request.", "", "Un café, s'il vous plaît.")


def write_warmup(path: str, model_name: str, source: src.ExportSource,
                 texts: Sequence[str]) -> bool:
    """Writes one `serving_default` PredictRequest of `texts` as TF Serving's
    warm-up file; False (nothing written) without tensorflow-serving-api."""
    try:
        from tensorflow_serving.apis import prediction_log_pb2
    except ImportError:
        logger.info("tensorflow-serving-api not installed: no warm-up requests written.")
        return False
    inputs = {"text": list(texts)}
    if source.is_pair:
        inputs["text_pair"] = list(texts)
    request = make_predict_request(model_name, inputs)
    with tf.io.TFRecordWriter(path) as writer:
        log = prediction_log_pb2.PredictionLog(
            predict_log=prediction_log_pb2.PredictLog(request=request))
        writer.write(log.SerializeToString())
    return True


def make_predict_request(model_name: str, inputs: dict, signature: str = SERVING_DEFAULT,
                         version: int | None = None):
    """A `tensorflow_serving.apis.predict_pb2.PredictRequest`."""
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = int(version)
    for key, value in inputs.items():
        arr = np.asarray(value, dtype=object) if is_text(value) else np.asarray(value)
        dtype = tf.string if arr.dtype == object else None
        request.inputs[key].CopyFrom(tf.make_tensor_proto(arr, dtype=dtype))
    return request


def validate_predict_request(signature_def, request) -> list[str]:
    """Problems TF Serving would reject `request` for (empty when valid):
    input keys must equal the signature's, dtypes match, shapes compatible.

    `signature_def`: a `SignatureDef` proto (see `read_signature_defs`)."""
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


def predict(loaded, request):
    """What TF Serving's Predict does with `request` on a loaded SavedModel:
    returns a `PredictResponse`."""
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
