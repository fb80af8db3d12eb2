"""`tf.data` pipelines of a task's splits, predictions and evaluation."""

import time
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from minilm_tf.tasks import metrics as mt
from minilm_tf.tasks.classification import data as classification_data


def make_dataset(split: classification_data.Split, preprocessor, batch_size: int, with_labels: bool = True):
    """Batched `tf.data` of preprocessed features (and labels), in the split's
    order (training shuffles with `resume.epoch_order`, which a resumed run
    can reproduce)."""
    with_labels = with_labels and split.is_labeled
    x = split.texts if split.text_pairs is None else (split.texts, split.text_pairs)
    if with_labels:
        ds = tf.data.Dataset.from_tensor_slices((x, split.labels))
    else:
        ds = tf.data.Dataset.from_tensor_slices((x,))
    ds = ds.batch(batch_size)
    if with_labels:
        ds = ds.map(preprocessor, num_parallel_calls=tf.data.AUTOTUNE)
    else:
        # y=None explicitly: keras-hub would read a lone (text, text_pair)
        # tuple as (x, y).
        ds = ds.map(lambda features: preprocessor(features, y=None),
                    num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)

def make_eval_dataset(split: Optional[classification_data.Split], preprocessor, batch_size: int):
    """Features-only batches, tokenised once and cached (reused every epoch)."""
    if split is None or len(split) == 0:
        return None
    return make_dataset(split, preprocessor, batch_size, with_labels=False).cache()

def predict_outputs(model, split_or_dataset, preprocessor=None,
                    batch_size: int = 64) -> np.ndarray:
    """Raw model outputs ([N, num_outputs] logits) for a `Split` or for a
    dataset from `make_eval_dataset`."""
    ds = split_or_dataset
    if isinstance(ds, classification_data.Split):
        ds = make_dataset(ds, preprocessor, batch_size, with_labels=False)
    outs = [np.asarray(model.predict_on_batch(x)) for x in ds]
    return np.concatenate(outs, axis=0)

def outputs_to_predictions(outputs: np.ndarray, kind: str) -> np.ndarray:
    if kind == classification_data.REGRESSION:
        return outputs.reshape(-1).astype(np.float64)
    return np.argmax(outputs, axis=-1)

def evaluate_split(model, split: Optional[classification_data.Split], preprocessor, batch_size: int,
                   kind: str, metric_names: Sequence[str], dataset=None):
    """(metrics dict, or None if the split is unlabeled/absent; examples per
    second). `dataset`: a cached `make_eval_dataset(split, ...)` to reuse."""
    if split is None or len(split) == 0:
        return None, None
    t0 = time.perf_counter()
    outputs = predict_outputs(model, dataset if dataset is not None else split,
                              preprocessor, batch_size)
    dt = time.perf_counter() - t0
    if not split.is_labeled:
        return None, len(split) / dt
    preds = outputs_to_predictions(outputs, kind)
    return mt.compute_metrics(metric_names, split.labels, preds), len(split) / dt
