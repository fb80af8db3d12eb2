"""One benchmark run: every precision of a `BenchmarkConfig`, with the
config and the machine it ran on."""

import keras
import keras_hub
import tensorflow as tf

from minilm_tf.benchmarks import machine
from minilm_tf.benchmarks.config import BenchmarkConfig
from minilm_tf.benchmarks.distillation_step import measure_precision
from minilm_tf.benchmarks.workload import make_batch


def run_benchmark(config: BenchmarkConfig, command: str | None = None) -> dict:
    """Measures every precision of `config`, one after the other.

    Sets TensorFlow's thread counts first (they cannot change once TensorFlow
    has run an op), and puts the global Keras policy back to float32 at the end.

    Args:
        config: what to measure.
        command: the command line that asked for it, recorded in the report.

    Returns:
        `{"config": ..., "environment": ..., "results": [one dict per precision]}`,
        JSON-serialisable; `format_table` prints it.
    """
    if config.threads:
        tf.config.threading.set_intra_op_parallelism_threads(config.threads)
    if config.inter_op_threads:
        tf.config.threading.set_inter_op_parallelism_threads(config.inter_op_threads)
    summary = {
        "teacher": config.teacher, "student": config.student,
        "student_intermediate_dim": config.student_intermediate_dim,
        "student_dropout": config.student_dropout,
        "objective": config.objective,
        "num_relation_heads": config.relation_heads,
        "batch_size": config.batch_size, "seq_len": config.seq_len,
        "padding_fraction": config.padding_fraction,
        "tokens_per_step": config.batch_size * config.seq_len,
        "real_tokens_per_step": int(make_batch(config.batch_size, config.seq_len, 2000,
                                               config.padding_fraction, 0)["padding_mask"].sum()),
        "precisions": list(config.precisions), "jit_compile": config.jit_compile,
        "threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "warmup_steps": config.warmup_steps, "steps": config.steps,
        "learning_rate": config.learning_rate, "seed": config.seed,
        "command": command,
    }
    environment = machine.machine_info()
    environment.update(tensorflow=tf.__version__, keras=keras.__version__,
                       keras_hub=keras_hub.__version__, load_average_start=machine.load_average())
    results = []
    try:
        for precision in config.precisions:
            results.append(measure_precision(config, precision))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    environment["load_average_end"] = machine.load_average()
    return {"config": summary, "environment": environment, "results": results}
