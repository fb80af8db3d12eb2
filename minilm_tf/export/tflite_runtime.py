"""Running converted TFLite models on the pip LiteRT interpreter (with the
tensorflow-text custom ops registered), their op counts and batch-1
latency. `ai_edge_litert` is imported only when used."""

from __future__ import annotations

import collections
import statistics
import time
from typing import Callable

import numpy as np
import tensorflow_text as tf_text

from minilm_tf.export import source as src
from minilm_tf.export.tflite_convert import unpad


def load_interpreter(model: bytes | str, num_threads: int = 1):
    """A LiteRT interpreter with the tensorflow-text custom ops registered."""
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
        """`self(**inputs)` in batches of `batch_size`, concatenated."""
        n = len(next(iter(inputs.values())))
        chunks = []
        for start in range(0, n, batch_size):
            chunks.append(self(**{k: v[start:start + batch_size] for k, v in inputs.items()}))
        if not chunks:
            return {}
        return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}


def tkn_bytes(values) -> list[bytes]:
    """`values` as UTF-8 bytes (bytes kept as they are)."""
    return [v if isinstance(v, bytes) else str(v).encode("utf-8") for v in values]


def op_summary(model: bytes) -> dict:
    """Counts of the model's ops (custom ops listed by name)."""
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
