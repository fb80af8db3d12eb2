"""The plain-Keras reference every export is checked against: the keras-hub
preprocessor in `tf.data`, the Keras model called on the ids, pooling and
post-processing in numpy."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from minilm_tf.export.exportable import ENCODER, ID_INPUTS, REGRESSION, ExportSource


def keras_tokenize(source: ExportSource, texts, text_pairs=None, batch_size: int = 64) -> dict:
    """Token features from the keras-hub preprocessor, called batch by batch
    (eagerly: a SentencePiece tokenizer created before a later
    `keras.utils.set_random_seed` no longer works inside a `tf.data`
    function, but still does eagerly). Returns numpy int32 arrays."""
    texts = list(texts)
    pairs = None if text_pairs is None else list(text_pairs)
    chunks = []
    for start in range(0, len(texts), batch_size):
        batch = tf.constant(texts[start:start + batch_size])
        x = batch if pairs is None else (batch, tf.constant(pairs[start:start + batch_size]))
        chunks.append({k: np.asarray(v) for k, v in source.preprocessor(x=x).items()})
    if not chunks:
        return {k: np.zeros((0, source.sequence_length), np.int32) for k in ID_INPUTS}
    # RoBERTa-family preprocessors give no segment_ids.
    return {k: np.concatenate([c[k] for c in chunks]).astype(np.int32) for k in ID_INPUTS
            if k in chunks[0]}


def pool_numpy(sequence_output: np.ndarray, padding_mask: np.ndarray, modes, normalize):
    """sentence-transformers pooling of `[N, L, H]` token states in numpy
    (float64 math, float32 result)."""
    mask = padding_mask.astype(np.float64)[:, :, None]
    seq = sequence_output.astype(np.float64)
    count = np.maximum(mask.sum(axis=1), 1e-9)
    parts = []
    for mode in modes:
        if mode == "cls":
            parts.append(seq[:, 0])
        elif mode == "max":
            parts.append(np.where(mask > 0, seq, -np.inf).max(axis=1))
        elif mode == "mean":
            parts.append((seq * mask).sum(axis=1) / count)
        elif mode == "mean_sqrt_len":
            parts.append((seq * mask).sum(axis=1) / np.sqrt(count))
    emb = np.concatenate(parts, axis=-1)
    if normalize:
        emb = emb / np.maximum(np.linalg.norm(emb, axis=-1, keepdims=True), 1e-12)
    return emb.astype(np.float32)


def keras_reference_from_ids(source: ExportSource, features: dict, batch_size: int = 64) -> dict:
    """Outputs of the Keras model for id features, post-processed in numpy."""
    n = len(features["token_ids"])
    chunks = []
    for start in range(0, n, batch_size):
        batch = {k: np.asarray(features[k][start:start + batch_size]) for k in ID_INPUTS}
        # Direct call: keras-hub tasks' predict_on_batch would run their
        # preprocessor again on the ids.
        out = source.model(batch, training=False)
        if source.kind == ENCODER:
            seq = out["sequence_output"] if isinstance(out, dict) else out
            chunks.append(pool_numpy(np.asarray(seq), batch["padding_mask"], source.pooling,
                                     source.normalize))
        else:
            chunks.append(np.asarray(out, dtype=np.float32))
    width = source.embedding_dim if source.kind == ENCODER else source.num_outputs
    values = np.concatenate(chunks) if chunks else np.zeros((0, width), np.float32)
    if source.kind == ENCODER:
        return {"embedding": values}
    if source.kind == REGRESSION:
        return {"score": values[:, 0], "logits": values}
    shifted = values - values.max(axis=-1, keepdims=True) if len(values) else values
    probs = np.exp(shifted)
    probs = probs / probs.sum(axis=-1, keepdims=True) if len(values) else probs
    label_id = values.argmax(axis=-1).astype(np.int64) if len(values) else np.zeros(0, np.int64)
    out = {"logits": values, "probabilities": probs, "label_id": label_id}
    if source.labels is not None:
        out["label"] = np.array([source.labels[i].encode("utf-8") for i in label_id], dtype=object)
    else:
        out["label"] = label_id
    return out


def keras_reference(source: ExportSource, texts, text_pairs=None, batch_size: int = 64) -> dict:
    """What the Keras model computes for raw texts (the export's reference)."""
    features = keras_tokenize(source, texts, text_pairs, batch_size)
    out = keras_reference_from_ids(source, features, batch_size)
    out["_features"] = features
    return out
