r"""Milliseconds per fine-tuning step: the classification step of tools/finetune.py.

    python tools/benchmark_finetune.py --model all-minilm-l6-v2 --seq_len 64 \
        --jit_compile true --compare_fast_paths
    python tools/benchmark_finetune.py --seq_len 128 --threads 2 \
        --reference_python .venv-torch/bin/python

Builds the task model and optimizer exactly as `run_finetune` does (keras-hub
TextClassifier head, AdamW with BERT's schedule) and times `train_on_batch`
on a fixed batch of random token ids (all positions real). With
--compare_fast_paths, a second model of the same encoder is compiled with the
other `fast_paths` setting and the two are stepped alternately in this
process, so both see the same machine load; medians and their ratio are
printed.

With --reference_python (an interpreter with torch and transformers:
benchmarks/reference/requirements.txt, or tools/make_torch_env.sh's
.venv-torch), the PyTorch + Hugging Face reference of the same step
(benchmarks/reference/torch_finetune_step.py: same model, batch, optimizer
recipe, threads and precision) runs right after, in a subprocess, and the
ratio of examples per second is printed (> 1: this package is faster).
"""

import contextlib
import os
import statistics
import time

import numpy as np
from absl import app, flags

import keras
import tensorflow as tf

from minilm_tf import load_teacher
from minilm_tf.benchmarks.reference import run_reference
from minilm_tf.models.encoders import builtin_model_dir
from minilm_tf.training.distribute import resolve_jit_compile
from minilm_tf.layers.fast_paths import fast_paths as fast_paths_of
from minilm_tf.tasks.classification.model import build_task_model, compile_task_model
from minilm_tf.training.finetune_common import make_optimizer

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "all-minilm-l6-v2", "Encoder spec (load_teacher).")
flags.DEFINE_integer("batch_size", 32, "Examples per step.")
flags.DEFINE_integer("seq_len", 64, "Tokens per example.")
flags.DEFINE_enum("jit_compile", "auto", ["auto", "true", "false"], "XLA for the step.")
flags.DEFINE_enum("fast_paths", "auto", ["auto", "on", "off"],
                  "minilm_tf.layers.fast_paths in the step (auto: only without XLA).")
flags.DEFINE_bool("compare_fast_paths", False, "Also time the other fast_paths setting.")
flags.DEFINE_integer("warmup_steps", 2, "Untimed steps (the first traces and compiles); >= 1.",
                     lower_bound=1)
flags.DEFINE_integer("steps", 8, "Timed steps per model.")
flags.DEFINE_integer("threads", 0, "TF intra-op threads (0: TensorFlow's default); also the "
                     "reference's torch threads.")
flags.DEFINE_enum("precision", "float32", ["float32", "mixed_bfloat16"],
                  "Keras dtype policy (the reference: bfloat16 autocast).")
flags.DEFINE_string("reference_python", None, "Python with torch + transformers: also run "
                    "benchmarks/reference/torch_finetune_step.py and print the ratio.")

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE = os.path.join(_REPO, "benchmarks", "reference", "torch_finetune_step.py")


def _run_reference() -> float:
    """Examples per second of the PyTorch reference (its RESULT line)."""
    arguments = ["--batch", FLAGS.batch_size, "--seq", FLAGS.seq_len, "--steps", FLAGS.steps,
                 "--warmup", FLAGS.warmup_steps, "--threads", FLAGS.threads]
    if FLAGS.precision == "mixed_bfloat16":
        arguments.append("--bf16")
    try:
        fields = run_reference(FLAGS.reference_python, REFERENCE, arguments,
                               "RESULT torch_finetune", builtin_model_dir("all-minilm-l6-v2"))
    except (RuntimeError, FileNotFoundError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
    print(f"  reference: {fields['line']}")
    return float(fields["examples_per_s"])


def _model(jit: bool):
    encoder = load_teacher(FLAGS.model)
    model = build_task_model(encoder.backbone, 2)
    optimizer = make_optimizer(5e-5, total_steps=1000)
    compile_task_model(model, "classification", optimizer, jit)
    return model


def main(argv):
    del argv
    if FLAGS.reference_python and FLAGS.model != "all-minilm-l6-v2":
        raise SystemExit("error: the reference implements all-minilm-l6-v2 only; drop "
                         "--reference_python or use --model all-minilm-l6-v2.")
    if FLAGS.threads:
        tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)
    keras.mixed_precision.set_global_policy(FLAGS.precision)
    jit = resolve_jit_compile(FLAGS.jit_compile)
    chosen = {"auto": None, "on": True, "off": False}[FLAGS.fast_paths]
    effective = chosen if chosen is not None else not jit
    settings = [effective] + ([not effective] if FLAGS.compare_fast_paths else [])
    models = [_model(jit) for _ in settings]
    rng = np.random.default_rng(0)
    shape = (FLAGS.batch_size, FLAGS.seq_len)
    x = {"token_ids": rng.integers(1000, 20000, shape).astype("int32"),
         "segment_ids": np.zeros(shape, "int32"), "padding_mask": np.ones(shape, "int32")}
    y = rng.integers(0, 2, FLAGS.batch_size).astype("int32")
    for model, fast in zip(models, settings):
        # The first step traces: with the fast paths in place, the traced step keeps them.
        with fast_paths_of(model) if fast else contextlib.nullcontext():
            model.train_on_batch(x, y)
        for _ in range(FLAGS.warmup_steps - 1):
            model.train_on_batch(x, y)
    times = [[] for _ in models]
    for _ in range(FLAGS.steps):
        for model, record in zip(models, times):
            start = time.perf_counter()
            model.train_on_batch(x, y)
            record.append(time.perf_counter() - start)
    print(f"{FLAGS.model}, batch {FLAGS.batch_size} x {FLAGS.seq_len}, XLA {jit}, "
          f"{FLAGS.precision}")
    medians = {}
    for fast, record in zip(settings, times):
        medians[fast] = statistics.median(record)
        print(f"  fast_paths {'on' if fast else 'off'}: {1000 * medians[fast]:.0f} ms/step "
              f"median (min {1000 * min(record):.0f}, max {1000 * max(record):.0f}), "
              f"{FLAGS.batch_size / medians[fast]:.1f} examples/s")
    if len(medians) == 2:
        print(f"  step time with / without fast paths: {medians[True] / medians[False]:.2f}")
    if FLAGS.reference_python:
        ours = FLAGS.batch_size / medians[effective]
        theirs = _run_reference()
        print(f"  examples/s ours / PyTorch reference: {ours / theirs:.2f}")

if __name__ == "__main__":
    app.run(main)
