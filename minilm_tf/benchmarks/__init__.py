"""Benchmarks of one MiniLM distillation step: where does its time go?

For each precision of a `BenchmarkConfig` (the global Keras policy is set
before fresh models are built), `run_benchmark` measures in one process, on
the same random batch (token ids drawn uniformly, segment ids 0, padding mask
per `padding_fraction`):

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
gradients and Keras' bookkeeping cost nothing. `compare_objective` or
`compare_fast_paths` adds (a2), the same step with the other objective or
fast-paths setting. Timed steps are interleaved (a, b, c, [a2,] a, b, c, ...)
so that load changes on a shared machine hit all alike.

Modules, one job each:

- `config`: `BenchmarkConfig`, the run's settings, checked at construction.
- `workload`: the teacher, student, distillers, optimizer and random batch.
- `distillation_step`: the runners and the measurements of one precision.
- `roofline`: the step's matmul FLOPs and the process's measured matmul peak.
- `profiling`: the TensorFlow profiler's self time per op and per part of the step.
- `machine`: CPU, load average and memory high-water marks.
- `report`: `format_table`.
- `run`: `run_benchmark`, every precision with the config and the machine.

Examples:

    from minilm_tf.benchmarks import BenchmarkConfig, format_table, run_benchmark

    config = BenchmarkConfig(teacher="tiny", student="1x24x12", batch_size=4, seq_len=16,
                             warmup_steps=1, steps=2)
    print(format_table(run_benchmark(config)))
"""

from minilm_tf.benchmarks.config import BenchmarkConfig, parse_student
from minilm_tf.benchmarks.distillation_step import PHASES, measure_precision
from minilm_tf.benchmarks.report import PHASE_TITLES, format_table
from minilm_tf.benchmarks.roofline import matmul_peak, step_matmul_flops
from minilm_tf.benchmarks.run import run_benchmark

__all__ = [
    "PHASES",
    "PHASE_TITLES",
    "BenchmarkConfig",
    "format_table",
    "matmul_peak",
    "measure_precision",
    "parse_student",
    "run_benchmark",
    "step_matmul_flops",
]
