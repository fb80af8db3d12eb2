"""Checking a converted TFLite model against the Keras model: output
differences, label agreement and task metrics (tasks), cosine similarity
and nearest-neighbour agreement (encoders), token ids of the in-model
tokenizer, batch-1 latency (what `tools/export_tflite.py` reports)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from minilm_tf.export import source as src
from minilm_tf.export.tflite_convert import convert_tokenizer_only
from minilm_tf.export.tflite_runtime import TFLiteRunner, tflite_latency
from minilm_tf.tasks import metrics as mt
from minilm_tf.utils import fileio


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
