"""The measurements of one precision: (a) the full distillation step, (b) the
teacher forward, (c) a student step, and optionally (a2) a compared step,
timed interleaved on the same batch."""

import statistics
import time

import numpy as np
import tensorflow as tf

from minilm_tf.benchmarks import machine, roofline
from minilm_tf.benchmarks.config import BenchmarkConfig
from minilm_tf.benchmarks.profiling import profile_step
from minilm_tf.benchmarks.workload import build_models, make_batch, make_optimizer
from minilm_tf.losses import relations
from minilm_tf.models.distiller import MiniLMDistiller
from minilm_tf.models.students import count_params
from minilm_tf.training.distribute import resolve_jit_compile

PHASES = ("step", "teacher", "student")


def _step_runner(distiller: MiniLMDistiller, batch: dict, losses: list) -> tuple:
    """(run one compiled training step of `distiller`, warm up with n steps of `fit`)."""
    dataset = tf.data.Dataset.from_tensors(batch).repeat()
    iterator = iter(dataset)

    def warm_step(n):
        # `fit` builds the model and optimizer and compiles `train_function`
        # exactly as for users; later steps reuse that compiled function.
        history = distiller.fit(dataset, epochs=1, steps_per_epoch=n, verbose=0)
        losses.extend(history.history["loss"])

    def run_step():
        logs = distiller.train_function(iterator)
        losses.append(float(logs["loss"]))

    return run_step, warm_step


def make_runners(config: BenchmarkConfig, distiller: MiniLMDistiller, batch: dict, jit: bool,
                 compared: MiniLMDistiller | None = None) -> dict:
    """name -> (callable running one step and waiting for it, warm-up callable or None);
    `"_losses"` -> the distillation losses of (a), in order."""
    losses = []

    inputs = {k: tf.constant(v) for k, v in batch.items()}

    def teacher_forward(x):
        with distiller.fast_paths_scope():  # as the step (a) traces it
            return distiller.teacher_relations(x, training=False)

    teacher_fn = tf.function(teacher_forward, jit_compile=jit)

    def run_teacher():
        out = teacher_fn(inputs)
        out["queries"][0, 0, 0, 0].numpy()

    variables = distiller.student_variables
    optimizer = make_optimizer(config)
    optimizer.build(variables)

    def student_step(x):
        with tf.GradientTape() as tape, distiller.fast_paths_scope():
            features = distiller.student_relations(x, training=True)
            loss = tf.add_n([tf.reduce_mean(tf.square(tf.cast(features[k], tf.float32)))
                             for k in ("queries", "keys", "values")])
        gradients = tape.gradient(loss, variables)
        optimizer.apply(gradients, variables)
        return loss

    student_fn = tf.function(student_step, jit_compile=jit)

    def run_student():
        student_fn(inputs).numpy()

    runners = {
        "step": _step_runner(distiller, batch, losses),
        "teacher": (run_teacher, None),
        "student": (run_student, None),
        "_losses": losses,
    }
    if compared is not None:
        runners["compared"] = _step_runner(compared, batch, [])
    return runners


def _stats(times_s: list, cpu_s: list, tokens: int, real_tokens: int) -> dict:
    med = statistics.median(times_s)
    return {
        "median_ms": round(med * 1e3, 3),
        "min_ms": round(min(times_s) * 1e3, 3),
        "max_ms": round(max(times_s) * 1e3, 3),
        "mean_ms": round(statistics.fmean(times_s) * 1e3, 3),
        "times_ms": [round(t * 1e3, 3) for t in times_s],
        # Process CPU time (all threads) per step: far less sensitive than wall
        # time to other processes competing for the cores.
        "cpu_median_ms": round(statistics.median(cpu_s) * 1e3, 3),
        "tokens_per_s": round(tokens / med, 1),
        "real_tokens_per_s": round(real_tokens / med, 1),
    }


def relation_implementation(jit: bool) -> str:
    """What `relations.relation_loss` runs in the step: an XLA-compiled step
    contains the XLA function; otherwise 'auto' picks the native kernel where
    it is available (minilm_tf/ops/native)."""
    return "xla" if jit or relations._native_op("auto") is None else "native"


def _time_phases(runners: dict, phases: tuple, warmup_steps: int, steps: int) -> tuple:
    """Warms up each phase and reads its own RSS peak, then times `steps`
    interleaved rounds. Returns (first-call seconds, phase peak RSS in MB,
    wall seconds per phase, CPU seconds per phase)."""
    first_call_s, phase_peak = {}, {}
    warmup = max(1, warmup_steps)
    for name in phases:
        run, warm = runners[name]
        t = time.perf_counter()
        if warm is not None:
            warm(warmup)  # trace + compile + the remaining warm-up steps
        else:
            run()
            for _ in range(warmup - 1):
                run()
        first_call_s[name] = round(time.perf_counter() - t, 3)
        # One more untimed call to read the phase's own RSS peak.
        reset_ok = machine.reset_peak_rss()
        run()
        phase_peak[name] = round(machine.rss_high_water_mb(), 1) if reset_ok else None

    times = {name: [] for name in phases}
    cpu = {name: [] for name in phases}
    for _ in range(steps):
        for name in phases:
            run = runners[name][0]
            c, t = time.process_time(), time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)
    return first_call_s, phase_peak, times, cpu


def measure_precision(config: BenchmarkConfig, precision: str) -> dict:
    """Every measurement of `config` under the Keras dtype policy `precision`."""
    jit = resolve_jit_compile(config.jit_compile)
    load_start = machine.load_average()
    t0 = time.perf_counter()
    teacher, student, distiller, compared = build_models(config, precision, jit)
    phases = PHASES + (("compared",) if compared is not None else ())
    build_s = time.perf_counter() - t0
    batch = make_batch(config.batch_size, config.seq_len, teacher.backbone.vocabulary_size,
                       config.padding_fraction, config.seed)
    tokens = int(batch["padding_mask"].size)
    real_tokens = int(batch["padding_mask"].sum())
    runners = make_runners(config, distiller, batch, jit, compared)
    first_call_s, phase_peak, times, cpu = _time_phases(
        runners, phases, config.warmup_steps, config.steps)

    result = {
        "precision": precision,
        "jit_compile": jit,
        "fast_paths": distiller.uses_fast_paths,
        "relation_loss": relation_implementation(jit),
        "build_s": round(build_s, 3),
        "warmup_s": first_call_s,
        "load_average_start": load_start,
        "trained_params": int(sum(int(np.prod(v.shape)) for v in distiller.student_variables)),
        "student_params": count_params(student.backbone),
        "teacher_params": count_params(teacher.backbone),
    }
    for name in phases:
        result[name] = _stats(times[name], cpu[name], tokens, real_tokens)
    a, b, c = (result[name]["median_ms"] for name in PHASES)
    result["overhead_ratio"] = round(a / (b + c), 4)
    result["overhead_ms"] = round(a - (b + c), 3)
    cpu_a, cpu_b, cpu_c = (result[name]["cpu_median_ms"] for name in PHASES)
    result["overhead_ratio_cpu"] = round(cpu_a / max(cpu_b + cpu_c, 1e-9), 4)
    if compared is not None:
        # Tokens/s of (a2) as a share of (a)'s, from the interleaved medians.
        result["compared"].update(
            objective=config.objective if config.compare_fast_paths else config.compare_objective,
            fast_paths=compared.uses_fast_paths,
            tokens_per_s_ratio=round(a / result["compared"]["median_ms"], 4),
            tokens_per_s_ratio_cpu=round(cpu_a / max(result["compared"]["cpu_median_ms"], 1e-9), 4))
    flops = roofline.step_matmul_flops(distiller, config.batch_size, config.seq_len)
    peak = roofline.matmul_peak(
        precision, jit, roofline.step_matmul_shapes(distiller, config.batch_size, config.seq_len))
    achieved = flops / (a / 1e3) / 1e9
    result["matmuls"] = dict(peak, step_flops=int(flops),
                             achieved_gflops=round(achieved, 3),
                             fraction_of_peak=round(achieved / peak["peak_gflops"], 3))
    losses = runners["_losses"]
    result["loss_first"], result["loss_last"] = float(losses[0]), float(losses[-1])
    if not all(np.isfinite(losses)):
        raise FloatingPointError(f"Non-finite distillation loss under {precision}: {losses}")
    result["memory"] = {
        "peak_rss_mb": round(machine.maxrss_mb(), 1),
        "phase_peak_rss_mb": phase_peak,
        "tf_memory_info": machine.tf_memory_info(),
    }
    if config.profile_steps > 0:
        result["profile"] = profile_step(config, distiller, runners["step"][0], precision, jit)
    result["load_average_end"] = machine.load_average()
    del runners, distiller, compared, student, teacher
    return result
