"""Batched inference latency of a model, measured the same way for every task."""

import math
import time
from typing import Any, Dict, Optional

import numpy as np
import tensorflow as tf

from minilm_tf.tasks.classification import data as classification_data
from minilm_tf.tasks.classification.datasets import make_dataset


def measure_latency(model, split_or_dataset, preprocessor=None, batch_size: int = 64,
                    num_examples: int = 256, warmup_batches: int = 2,
                    repeats: int = 3) -> Optional[Dict[str, Any]]:
    """Milliseconds per example of batched inference (model forward only;
    tokenisation excluded), after `warmup_batches` untimed batches; the best
    of `repeats` timed passes over (up to) `num_examples` examples.

    `split_or_dataset`: a `Split` (tokenised here in batches of `batch_size`)
    or a batched features dataset (e.g. from `make_eval_dataset`).
    """
    if split_or_dataset is None or num_examples <= 0:
        return None
    ds = split_or_dataset
    if isinstance(ds, classification_data.Split):
        if len(ds) == 0:
            return None
        ds = make_dataset(ds.take(range(min(num_examples, len(ds)))), preprocessor,
                          batch_size, with_labels=False)
    batches, n = [], 0
    for x in ds:
        size = int(tf.shape(x["token_ids"])[0])
        if n + size > num_examples:
            x = {k: v[: num_examples - n] for k, v in x.items()}
            size = num_examples - n
        batches.append(x)
        n += size
        if n >= num_examples:
            break
    if not batches:
        return None

    @tf.function(reduce_retracing=True)
    def forward(x):
        return model(x, training=False)

    for i in range(max(warmup_batches, 1)):
        np.asarray(forward(batches[i % len(batches)]))
    np.asarray(forward(batches[-1]))  # a smaller last batch traces once more
    best = math.inf
    for _ in range(max(repeats, 1)):
        t0 = time.perf_counter()
        for x in batches:
            out = forward(x)
        np.asarray(out)
        best = min(best, time.perf_counter() - t0)
    return {"ms_per_example": 1000.0 * best / n,
            "batch_size": int(tf.shape(batches[0]["token_ids"])[0]),
            "num_examples": n, "warmup_batches": warmup_batches, "repeats": repeats,
            "sequence_length": int(batches[0]["token_ids"].shape[1])}
