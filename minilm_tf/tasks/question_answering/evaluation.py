"""QA predictions and the official SQuAD evaluation of them."""

from __future__ import annotations

import logging
import time
from typing import Any, Dict

import keras
import numpy as np
import tensorflow as tf

from minilm_tf.tasks.question_answering import metrics as squad_metrics
from minilm_tf.tasks.question_answering.mlqa_metrics import mlqa_evaluate
from minilm_tf.tasks.question_answering.features import model_inputs
from minilm_tf.tasks.question_answering.model import INPUT_NAMES, input_names
from minilm_tf.tasks.question_answering.postprocess import postprocess

logger = logging.getLogger(__name__)

from minilm_tf.tasks.question_answering.data import QAOptions

def inputs_dataset(features, batch_size: int, names=INPUT_NAMES):
    return tf.data.Dataset.from_tensor_slices(model_inputs(features, names)).batch(batch_size)

def predict_logits(model, features_or_dataset, batch_size: int = 64):
    """(start_logits, end_logits) [N, L] float32 numpy for `prepare_squad`
    features (or a batched dataset of their model inputs)."""
    ds = features_or_dataset
    if isinstance(ds, dict):
        ds = inputs_dataset(ds, batch_size, input_names(model))
    starts, ends = [], []
    for x in ds:
        out = model.predict_on_batch(x)
        starts.append(np.asarray(out["start_logits"], np.float32))
        ends.append(np.asarray(out["end_logits"], np.float32))
    if not starts:
        return np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32)
    return np.concatenate(starts), np.concatenate(ends)

def evaluate_qa(model, examples, features, meta, options: QAOptions, version_2: bool,
                batch_size: int = 64, dataset=None, language: str | None = None):
    """(official metrics, predictions {id: answer}, seconds) for one split.

    `dataset`: a cached batched dataset of the features' model inputs to reuse.
    `language`: score with MLQA's evaluation in that language instead of
    SQuAD's.
    """
    t0 = time.perf_counter()
    start, end = predict_logits(model, dataset if dataset is not None else features,
                                batch_size)
    predictions = postprocess(
        examples, meta, start, end, n_best=options.n_best,
        max_answer_length=options.max_answer_length, version_2=version_2,
        null_threshold=options.null_threshold)
    seconds = time.perf_counter() - t0
    if language is None:
        metrics = squad_metrics.squad_evaluate(examples, predictions, version_2=version_2)
    else:
        metrics = mlqa_evaluate(examples, predictions, language)
    return metrics, predictions, seconds

class SpanLogitsStack:
    """`model(x)` -> one tensor (start, end stacked), for `measure_latency`."""

    def __init__(self, model):
        self.model = model

    def __call__(self, x, training=False):
        out = self.model(x, training=training)
        return keras.ops.stack([out["start_logits"], out["end_logits"]])

def numeric_metrics(metrics: Dict[str, Any]) -> Dict[str, float]:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float))
            and not isinstance(v, bool)}
