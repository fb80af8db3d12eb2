"""The three signatures of a SavedModel export, and reading them back.

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
"""

from __future__ import annotations

import os

import keras
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from minilm_tf.export import source as src
from minilm_tf.export import tokenization

SERVING_DEFAULT = "serving_default"
TOKEN_IDS_SIGNATURE = "serving_token_ids"
TOKENIZE_SIGNATURE = "tokenize"


def _string_spec(name):
    return tf.TensorSpec([None], tf.string, name=name)


def _id_specs(length=None):
    return [tf.TensorSpec([None, length], tf.int32, name=n) for n in src.ID_INPUTS]


def _tokenize_fn(source: src.ExportSource):
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


def signature_summary(path: str) -> dict:
    """{signature: {"inputs": {name: [dtype, shape]}, "outputs": {...}}} read
    from saved_model.pb (-1: any size)."""
    def describe(infos):
        return {k: [tf.dtypes.as_dtype(v.dtype).name,
                    None if v.tensor_shape.unknown_rank else
                    [d.size for d in v.tensor_shape.dim]] for k, v in sorted(infos.items())}

    return {name: {"inputs": describe(sig.inputs), "outputs": describe(sig.outputs)}
            for name, sig in sorted(read_signature_defs(path).items())
            if not name.startswith("__")}


def read_signature_defs(path: str) -> dict:
    """{name: SignatureDef} from `saved_model.pb` (no TensorFlow runtime)."""
    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    for meta_graph in proto.meta_graphs:
        if "serve" in meta_graph.meta_info_def.tags:
            return dict(meta_graph.signature_def)
    raise ValueError(f"{path} has no 'serve' meta graph.")
