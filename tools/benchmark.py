r"""Benchmark a MiniLM distillation step: where does the time of one step go?

  python tools/benchmark.py --teacher all-minilm-l6-v2 --student 3x384x12 \
      --batch_size 32 --seq_len 128 --objective minilm \
      --precisions float32,mixed_bfloat16 --threads 2 --output_json bench.json

For each precision in `--precisions` (the global Keras policy is set before
fresh models are built) it measures, in this one process, with the same
random batch (token ids drawn uniformly, segment ids 0, padding mask per
`--padding_fraction`):

  (a) step     the full distillation step users get: `MiniLMDistiller` compiled
               with `minilm_tf.optimizers.adamw.make_adamw` (the fused AdamW of
               tools/distill.py, constant rate), warmed up through `fit`, then
               timed through Keras' own compiled `train_function` on a
               repeated in-memory batch;
  (b) teacher  the teacher forward up to its distillation layer alone
               (`distiller.teacher_relations` in a `tf.function`);
  (c) student  a student training step with a trivial loss and no teacher: the
               mean square of the student relation layer's queries, keys and
               values, the same optimizer on the same variables as (a);

and the distillation overhead ratio (a) / ((b) + (c)) from the medians (and
from the CPU-time medians): 1.0 would mean the relation losses, their
gradients and Keras' bookkeeping cost nothing. The table says which
relation-loss implementation the step ran: the native CPU kernel
(minilm_tf/ops/native) or the XLA function (XLA-compiled steps, accelerators,
no compiler, or `MINILM_TF_NATIVE_KERNELS=0` to compare). `--compare_objective`
adds (a2), the same step with the other objective (e.g. MiniLMv2 against v1),
and its tokens/s as a share of (a)'s; `--compare_fast_paths` makes (a2) the
same step with the other `MiniLMDistiller(fast_paths=...)` setting. Timed steps are interleaved
(a, b, c, [a2,] a, b, c, ...) so that load changes on a shared machine hit
all alike; median, min and max are reported. Memory: the process RSS
high-water mark (getrusage), the per-phase peak RSS (VmHWM, reset through /proc/self/clear_refs where the kernel allows)
and TensorFlow's allocator statistics when the device reports them.

`--profile_steps N` additionally traces N steps of (a) with the TensorFlow
profiler (into `--profile_dir`, a temporary directory by default) and reports
the top ops by self time and the time per part of the step (teacher forward,
student forward, loss, backward, optimizer).

It also counts the matmul FLOPs of one step from the model shapes (the
usual roofline count: 2*M*N*K per matmul, forward plus twice that for the
student's backward; elementwise work ignored) and measures, in the same process
and precision (and XLA setting), the best rate of three plain matmuls (the
student's feed-forward up/down projections on the step's tokens and a
2048^3 square): the step's achieved GFLOP/s as a fraction of that peak.

`--reference_python PY` (an interpreter with torch and transformers, e.g.
tools/make_torch_env.sh's .venv-torch/bin/python) then runs the PyTorch +
Hugging Face reference of the same step
(benchmarks/reference/torch_minilm_step.py: same teacher, student shape,
batch, objective and threads; v2 with its lean loss; bf16 autocast for
mixed_bfloat16; its batches are real text with ~20% padding, so pass
`--padding_fraction 0.2`) for each precision and objective measured, and
prints tokens/s ours / reference.

`--teacher tiny` builds a small random BERT (for tests; seconds). Numbers go to
stdout as a table and, with `--output_json`, to a JSON file.

The measurements live in `minilm_tf.benchmarks`; this tool turns its flags
into a `BenchmarkConfig`, runs it and prints (and writes) the report.
"""

import dataclasses
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from absl import app, flags  # noqa: E402

from minilm_tf.benchmarks import BenchmarkConfig, format_table, run_benchmark  # noqa: E402
from minilm_tf.benchmarks.reference import (  # noqa: E402
    distillation_reference_arguments,
    run_reference,
)

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = flags.FLAGS
flags.DEFINE_string("teacher", "all-minilm-l6-v2",
                    "Teacher spec for minilm_tf.load_teacher, or `tiny` (a small random BERT).")
flags.DEFINE_string("student", "3x384x12", "Student shape LAYERSxHIDDENxHEADS.")
flags.DEFINE_integer("student_intermediate_dim", None,
                     "Student feed-forward width (default: the teacher's ratio).")
flags.DEFINE_float("student_dropout", None, "Student dropout rate (default: the teacher's).")
flags.DEFINE_integer("batch_size", 32, "Examples per step.")
flags.DEFINE_integer("seq_len", 128, "Tokens per example (padded length).")
flags.DEFINE_float("padding_fraction", 0.0,
                   "Fraction of each example's positions that are padding (mask 0).")
flags.DEFINE_enum("objective", "minilm", ["minilm", "minilmv2"], "Distillation objective.")
flags.DEFINE_integer("num_relation_heads", None, "Relation heads for minilmv2 (default 48).")
flags.DEFINE_enum("compare_objective", None, ["minilm", "minilmv2"],
                  "Also time the full step with this objective on the same teacher, student "
                  "and batch, interleaved with the others as (a2), and report its tokens/s "
                  "relative to (a) by wall and by CPU time.")
flags.DEFINE_enum("fast_paths", "auto", ["auto", "true", "false"],
                  "Trace the steps with minilm_tf.layers.fast_paths (MiniLMDistiller(fast_paths=...)); "
                  "auto: only when not XLA-compiled.")
flags.DEFINE_bool("compare_fast_paths", False,
                  "Also time the full step with the other fast-paths setting as (a2) "
                  "(instead of --compare_objective).")
flags.DEFINE_list("precisions", ["float32"],
                  "Keras dtype policies to measure, e.g. float32,mixed_bfloat16.")
flags.DEFINE_enum("jit_compile", "auto", ["auto", "true", "false"],
                  "XLA for all three measurements; auto: as tools/distill.py decides "
                  "(minilm_tf.training.distribute.resolve_jit_compile).")
flags.DEFINE_integer("threads", 0, "TF intra-op threads (0: TensorFlow's default).")
flags.DEFINE_integer("inter_op_threads", 1, "TF inter-op threads (0: TensorFlow's default).")
flags.DEFINE_integer("warmup_steps", 3, "Untimed steps per measurement (the first traces).")
flags.DEFINE_integer("steps", 10, "Timed steps per measurement.")
flags.DEFINE_float("learning_rate", 1e-4, "AdamW learning rate.")
flags.DEFINE_float("weight_decay", 0.01, "AdamW weight decay.")
flags.DEFINE_integer("seed", 0, "Seed for the student and the batch.")
flags.DEFINE_string("output_json", None, "Write the results here as JSON.")
flags.DEFINE_integer("profile_steps", 0, "Trace this many steps of (a) with the TF profiler "
                     "(time per part of the step only with --jit_compile=false).")
flags.DEFINE_string("profile_dir", None, "Profiler output directory (default: a temp dir).")
flags.DEFINE_integer("profile_top", 15, "Ops listed in the profile summary.")


flags.DEFINE_string("reference_python", None, "Python with torch + transformers: also run "
                    "benchmarks/reference/torch_minilm_step.py for each precision and "
                    "objective measured and print the tokens/s ratio.")

REFERENCE = os.path.join(_REPO, "benchmarks", "reference", "torch_minilm_step.py")


def config_from_flags() -> BenchmarkConfig:
    """The BenchmarkConfig of the flags (every field is a flag of the same name)."""
    values = {field.name: FLAGS[field.name].value for field in dataclasses.fields(BenchmarkConfig)}
    return BenchmarkConfig(**values)


def compare_with_reference(report: dict, config: BenchmarkConfig) -> list:
    """Runs the reference for every (precision, objective) of `report`;
    returns rows of ours / reference tokens/s (and prints them)."""
    from minilm_tf.models.encoders import builtin_model_dir

    rows = []
    for result in report["results"]:
        measured = [(config.objective, result["step"]["tokens_per_s"])]
        if "compared" in result and result["compared"]["objective"] != config.objective:
            measured.append((result["compared"]["objective"],
                             result["compared"]["tokens_per_s"]))
        for objective, ours in measured:
            arguments = distillation_reference_arguments(
                config.batch_size, config.seq_len, config.steps, config.warmup_steps,
                config.threads, objective, result["precision"] == "mixed_bfloat16",
                config.num_relation_heads)
            fields = run_reference(FLAGS.reference_python, REFERENCE, arguments,
                                   "RESULT torch", builtin_model_dir("all-minilm-l6-v2"))
            theirs = float(fields["tokens_per_s"])
            rows.append({"precision": result["precision"], "objective": objective,
                         "tokens_per_s": ours, "reference_tokens_per_s": theirs,
                         "ratio": ours / theirs, "reference": fields["line"]})
            print(f"{result['precision']:<15} {objective}: {ours:.0f} tokens/s, PyTorch "
                  f"reference {theirs:.0f} tokens/s: ratio {ours / theirs:.2f}")
    return rows


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    command = " ".join([os.path.relpath(sys.argv[0], _REPO)] + sys.argv[1:])
    config = config_from_flags()
    if FLAGS.reference_python and (config.teacher != "all-minilm-l6-v2"
                                   or config.student != "3x384x12"):
        print("error: the reference implements all-minilm-l6-v2 -> 3x384x12 only; drop "
              "--reference_python or use the default --teacher and --student.",
              file=sys.stderr)
        return 1
    try:
        report = run_benchmark(config, command=command)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(format_table(report))
    if FLAGS.reference_python:
        try:
            report["reference"] = compare_with_reference(report, config)
        except (RuntimeError, FileNotFoundError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
    if FLAGS.output_json:
        directory = os.path.dirname(os.path.abspath(FLAGS.output_json))
        os.makedirs(directory, exist_ok=True)
        with open(FLAGS.output_json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
        print(f"wrote {FLAGS.output_json}")
    return 0


if __name__ == "__main__":
    app.run(main)
