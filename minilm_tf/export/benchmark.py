"""Latency / size of models across Keras, SavedModel and TFLite variants
(used by tools/benchmark_inference.py).

Every variant gets the same inputs: the texts of a task tokenised once by
the keras-hub preprocessor and padded to the common sequence length (model
cost only), except the `*_text` variants, which take the raw strings and
tokenise inside (end-to-end). Latency is the median over single examples
(batch 1) and per example over batches of `batch_size`, after warm-up, over
several rounds in which the models of one variant (teacher and student)
take turns, so that their ratio is measured in the same stretch of time.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import tempfile
import time
from typing import Callable, Sequence

import numpy as np
import tensorflow as tf

from minilm_tf.export import savedmodel
from minilm_tf.export import source as src
from minilm_tf.export import tflite as tl
from minilm_tf.models.students import count_params

VARIANTS = ("keras", "savedmodel", "savedmodel_text", "tflite_float32", "tflite_dynamic",
            "tflite_float16", "tflite_int8", "tflite_float32_text", "tflite_dynamic_text")
DEFAULT_VARIANTS = ("keras", "savedmodel", "savedmodel_text", "tflite_float32",
                    "tflite_dynamic")


@dataclasses.dataclass
class Inputs:
    texts: list
    text_pairs: list | None
    features: dict  # numpy id features padded to the sequence length

    def ids(self, start: int, stop: int) -> dict:
        return {k: v[start:stop] for k, v in self.features.items()}

    def strings(self, start: int, stop: int) -> dict:
        out = {"text": [t.encode("utf-8") for t in self.texts[start:stop]]}
        if self.text_pairs is not None:
            out["text_pair"] = [t.encode("utf-8") for t in self.text_pairs[start:stop]]
        return out


def _time_calls(fn, batches: Sequence) -> list[float]:
    times = []
    for b in batches:
        t0 = time.perf_counter()
        fn(b)
        times.append(time.perf_counter() - t0)
    return times


def _batches(make_batch, n: int, batch_size: int) -> list:
    return [make_batch(s, min(s + batch_size, n))
            for s in range(0, n - batch_size + 1, batch_size)] or [make_batch(0, n)]


@dataclasses.dataclass
class Prepared:
    """One model's variant, ready to time: its row (size, accuracy vs
    Keras), the call and the batch maker."""

    row: dict
    fn: Callable[[dict], object]
    make: Callable[[int, int], dict]
    n: int


def time_interleaved(groups: Sequence[Sequence[Prepared]], batch_sizes: Sequence[int],
                     rounds: int = 5, warmup: int = 2) -> None:
    """Times every variant at every batch size, the models of one variant in
    alternating rounds (A B, B A, ...), so that a slower stretch of a shared
    machine falls on all of them; fills each row's `latency` with the median
    over all rounds of the milliseconds per example."""
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}.")
    for variant in zip(*groups):  # the same variant of every model
        for bs in batch_sizes:
            work = []
            for p in variant:
                batches = _batches(p.make, p.n, bs)
                for b in batches[:max(warmup, 1)]:
                    p.fn(b)
                work.append((p, batches, []))
            for r in range(rounds):
                for p, batches, per_example in (work if r % 2 == 0 else work[::-1]):
                    times = _time_calls(p.fn, batches)
                    per_example += [1000.0 * t / len(next(iter(b.values())))
                                    for t, b in zip(times, batches)]
            for p, batches, per_example in work:
                p.row.setdefault("latency", {})[f"batch_{bs}"] = {
                    "median_ms_per_example": statistics.median(per_example),
                    "batches": len(batches), "batch_size": bs, "rounds": rounds}


def dir_size(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path)
               for f in files)


def keras_variant(source: src.ExportSource):
    @tf.function(reduce_retracing=True)
    def forward(x):
        return src.compute_outputs(source, x, string_labels=False)

    def run(batch):
        out = forward({k: tf.constant(v) for k, v in batch.items()})
        return {k: v.numpy() for k, v in out.items()}

    size = sum(int(np.prod(w.shape)) * np.dtype(w.dtype).itemsize
               for w in source.model.weights)
    return run, size


def prepare_model(
    source: src.ExportSource,
    inputs: Inputs,
    variants: Sequence[str] = DEFAULT_VARIANTS,
    num_threads: int = 1,
    workdir: str | None = None,
    name: str = "model",
    calibration_texts: Sequence[str] | None = None,
    log=print,
) -> list[Prepared]:
    """Builds (exports, converts, loads) every variant of one model and
    checks its outputs against Keras; `time_interleaved` times them."""
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        raise ValueError(f"Unknown variants {bad}; choose from {VARIANTS}.")
    workdir = workdir or tempfile.mkdtemp(prefix="minilm_bench_")
    n = len(inputs.texts)
    params = count_params(source.model)
    main = src.main_output(source)
    prepared = []
    keras_run, keras_size = keras_variant(source)
    reference = keras_run(inputs.ids(0, n))[main]
    saved = None

    for variant in variants:
        t0 = time.perf_counter()
        row = {"model": name, "variant": variant, "parameters": params,
               "sequence_length": source.sequence_length,
               "input": "text" if variant.endswith("_text") else "token ids"}
        if variant == "keras":
            fn, size, make = keras_run, keras_size, inputs.ids
            row["size_note"] = "float32 weights in memory"
        elif variant.startswith("savedmodel"):
            if saved is None:
                saved = savedmodel.export_saved_model(source, os.path.join(workdir, "savedmodel"),
                                              name, warmup_texts=None)
                loaded = savedmodel.load(saved["path"])
            size = dir_size(saved["path"])
            if variant == "savedmodel":
                sig = loaded.signatures[savedmodel.TOKEN_IDS_SIGNATURE]
                make = inputs.ids

                def fn(batch, sig=sig):
                    return {k: v.numpy() for k, v in sig(
                        **{k: tf.constant(v) for k, v in batch.items()}).items()}
            else:
                sig = loaded.signatures[savedmodel.SERVING_DEFAULT]
                make = inputs.strings
                row["size_note"] = "serving_default trims padding to the longest text"

                def fn(batch, sig=sig):
                    return {k: v.numpy() for k, v in sig(
                        **{k: tf.constant(v, dtype=tf.string) for k, v in batch.items()}
                    ).items()}
        else:
            parts = variant.split("_")
            mode, with_tok = parts[1], variant.endswith("_text")
            conv = tl.convert(source, mode, with_tok,
                              representative_texts=calibration_texts if mode == "int8" else None)
            path = os.path.join(workdir, f"{name}.{mode}{'.tokenizer' if with_tok else ''}.tflite")
            tl.write_model(conv.content, path)
            size = len(conv.content)
            runner = tl.TFLiteRunner(conv.content, num_threads)
            make = inputs.strings if with_tok else inputs.ids
            if runner.unpadded:  # int8: one example's real tokens at a time
                row["input"] = "token ids, unpadded"

            def fn(batch, runner=runner):
                return runner(**batch)
            if conv.integer_only is not None:
                row["integer_only"] = conv.integer_only
        out = fn(make(0, n))
        row["max_abs_diff_vs_keras"] = float(np.max(np.abs(np.asarray(out[main]) - reference)))
        row["size_mb"] = round(size / 2**20, 2)
        row["setup_seconds"] = round(time.perf_counter() - t0, 1)
        prepared.append(Prepared(row, fn, make, n))
        log(f"{name} {variant}: {row['size_mb']} MB, max|diff| vs Keras "
            f"{row['max_abs_diff_vs_keras']:.1e}")
    return prepared


def benchmark_models(models: Sequence[tuple[str, src.ExportSource, Inputs]],
                     variants: Sequence[str] = DEFAULT_VARIANTS,
                     batch_sizes: Sequence[int] = (1, 32), num_threads: int = 1,
                     workdir: str | None = None, calibration_texts: Sequence[str] | None = None,
                     rounds: int = 5, log=print) -> list[dict]:
    """One row per (model, variant): size, parameters, max abs diff vs Keras
    and latency, the models of each variant timed interleaved."""
    workdir = workdir or tempfile.mkdtemp(prefix="minilm_bench_")
    groups = [prepare_model(source, inputs, variants, num_threads, os.path.join(workdir, name),
                            name, calibration_texts, log)
              for name, source, inputs in models]
    time_interleaved(groups, batch_sizes, rounds)
    rows = [p.row for group in groups for p in group]
    for row in rows:
        log(f"{row['model']} {row['variant']}: " + ", ".join(
            f"{k} {v['median_ms_per_example']:.2f} ms/ex" for k, v in row["latency"].items()))
    return rows


def format_table(rows: Sequence[dict], batch_sizes: Sequence[int]) -> str:
    headers = ["model", "variant", "input", "params (M)", "size MB"] + [
        f"ms/ex b={b}" for b in batch_sizes] + ["max|diff| vs Keras"]
    lines = []
    for r in rows:
        lines.append([r["model"], r["variant"], r["input"], f"{r['parameters'] / 1e6:.1f}",
                      f"{r['size_mb']:.1f}"] + [
            f"{r['latency'][f'batch_{b}']['median_ms_per_example']:.2f}" for b in batch_sizes] + [
            f"{r['max_abs_diff_vs_keras']:.1e}"])
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *lines)]
    fmt = " | ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*headers), "-+-".join("-" * w for w in widths)]
    out += [fmt.format(*line) for line in lines]
    return "\n".join(out)
