"""The graph code shared by every export (SavedModel and TFLite): id
features -> the named outputs of an `ExportSource`."""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from minilm_tf.export.exportable import ENCODER, REGRESSION, ExportSource


def id_features(token_ids, segment_ids, padding_mask) -> dict:
    """The three id tensors as the feature dict the backbone takes."""
    return {"token_ids": token_ids, "segment_ids": segment_ids, "padding_mask": padding_mask}


def pool_tf(sequence_output, padding_mask, modes: Sequence[str], normalize: bool):
    """sentence-transformers pooling of `[B, L, H]` token states (TF ops that
    TFLite converts to builtins)."""
    mask = tf.cast(padding_mask, sequence_output.dtype)[:, :, None]
    count = tf.maximum(tf.reduce_sum(mask, axis=1), 1e-9)
    parts = []
    for mode in modes:
        if mode == "cls":
            parts.append(sequence_output[:, 0, :])
        elif mode == "max":
            parts.append(tf.reduce_max(sequence_output * mask + (mask - 1.0) * 1e9, axis=1))
        elif mode == "mean":
            parts.append(tf.reduce_sum(sequence_output * mask, axis=1) / count)
        elif mode == "mean_sqrt_len":
            parts.append(tf.reduce_sum(sequence_output * mask, axis=1) / tf.sqrt(count))
        else:  # pragma: no cover - validated when loading
            raise ValueError(mode)
    emb = parts[0] if len(parts) == 1 else tf.concat(parts, axis=-1)
    if normalize:
        # torch.nn.functional.normalize: x / max(||x||, 1e-12)
        norm = tf.sqrt(tf.reduce_sum(tf.square(emb), axis=-1, keepdims=True))
        emb = emb / tf.maximum(norm, 1e-12)
    return emb


def compute_outputs(source: ExportSource, features: dict, string_labels: bool = True) -> dict:
    """Named outputs from id features (traced into every export).

    classification: `logits` [B, C], `probabilities` [B, C], `label_id` [B]
    int64 and `label` [B] (strings when the task has a label vocabulary,
    else equal to `label_id`); regression: `score` [B] and `logits` [B, 1];
    encoder: `embedding` [B, D].
    """
    if source.kind == ENCODER:
        out = source.backbone(features, training=False)
        seq = out["sequence_output"] if isinstance(out, dict) else out
        emb = pool_tf(seq, features["padding_mask"], source.pooling, source.normalize)
        return {"embedding": tf.cast(emb, tf.float32)}
    logits = tf.cast(source.model(features, training=False), tf.float32)
    if source.kind == REGRESSION:
        return {"score": logits[:, 0], "logits": logits}
    label_id = tf.argmax(logits, axis=-1, output_type=tf.int64)
    outputs = {
        "logits": logits,
        "probabilities": tf.nn.softmax(logits, axis=-1),
        "label_id": label_id,
    }
    if source.labels is not None and string_labels:
        outputs["label"] = tf.gather(tf.constant(source.labels, dtype=tf.string), label_id)
    else:
        outputs["label"] = label_id
    return outputs


def main_output(source: ExportSource) -> str:
    """The float output compared across exports."""
    return {ENCODER: "embedding", REGRESSION: "score"}.get(source.kind, "logits")
