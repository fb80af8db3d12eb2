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

`--teacher tiny` builds a small random BERT (for tests; seconds). Numbers go to
stdout as a table and, with `--output_json`, to a JSON file.
"""

import gc
import json
import os
import platform
import re
import resource
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from absl import app, flags  # noqa: E402

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

PHASES = ("step", "teacher", "student")
PHASE_TITLES = {
    "step": "(a) distillation step",
    "teacher": "(b) teacher forward",
    "student": "(c) student step",
    "compared": "(a2) step, compared",
}
# CPU features that decide the bfloat16 / matmul paths.
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni",
             "amx_bf16", "amx_tile", "amx_int8")


# --------------------------------------------------------------------------- machine


def machine_info() -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(),
            "cpu_count": os.cpu_count()}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            text = f.read()
        model = re.search(r"^model name\s*:\s*(.*)$", text, re.M)
        flags_line = re.search(r"^flags\s*:\s*(.*)$", text, re.M)
        present = set(flags_line.group(1).split()) if flags_line else set()
        info["cpu_model"] = model.group(1).strip() if model else None
        info["cpu_flags"] = {name: name in present for name in CPU_FLAGS}
    except OSError:
        pass
    try:
        info["sched_affinity"] = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    return info


def load_average() -> list:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


# --------------------------------------------------------------------------- memory


_PEAK_SEEN_MB = 0.0


def maxrss_mb() -> float:
    """Process RSS high-water mark since start, in MB.

    getrusage's ru_maxrss (KiB on Linux) follows the kernel's VmHWM, which
    `reset_peak_rss` clears; the largest value seen before each reset is kept.
    """
    current = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return max(_PEAK_SEEN_MB, current, _status_mb("VmHWM") or 0.0)


def _status_mb(field: str) -> float | None:
    try:
        with open("/proc/self/status", encoding="utf-8") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Resets VmHWM (Linux >= 4.0: `echo 5 > /proc/self/clear_refs`)."""
    global _PEAK_SEEN_MB
    _PEAK_SEEN_MB = maxrss_mb()
    try:
        with open("/proc/self/clear_refs", "w", encoding="utf-8") as f:
            f.write("5")
        return True
    except OSError:
        return False


def tf_memory_info() -> dict | str:
    import tensorflow as tf

    try:
        info = tf.config.experimental.get_memory_info("CPU:0")
        return {k: round(v / 2**20, 1) for k, v in info.items()}
    except Exception as e:  # CPU allocators usually do not keep statistics.
        return f"unavailable ({type(e).__name__})"


# --------------------------------------------------------------------------- models and data


def parse_student(spec: str) -> tuple[int, int, int]:
    parts = spec.lower().split("x")
    if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ValueError(
            f"--student must look like LAYERSxHIDDENxHEADS (e.g. 3x384x12), got {spec!r}.")
    return int(parts[0]), int(parts[1]), int(parts[2])


def tiny_teacher(seq_len: int):
    """A small random BERT (2 layers, 48 wide, 12 heads, 1000 tokens)."""
    import keras_hub

    from minilm_tf.models.encoders import LoadedEncoder

    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=1000, num_layers=2, num_heads=12, hidden_dim=48,
        intermediate_dim=96, max_sequence_length=max(64, seq_len), name="tiny_teacher")
    return LoadedEncoder(backbone, tokenizer=None, spec="tiny", hidden_act="gelu_approximate")


def make_batch(batch: int, seq_len: int, vocab: int, padding_fraction: float, seed: int) -> dict:
    """Random token ids; every example has the same number of real tokens."""
    import numpy as np

    if not 0.0 <= padding_fraction < 1.0:
        raise ValueError(f"--padding_fraction must be in [0, 1), got {padding_fraction}.")
    real = max(1, seq_len - int(round(padding_fraction * seq_len)))
    rng = np.random.default_rng(seed)
    low = min(1000, vocab // 2)  # skip [PAD]/[CLS]/... and the unused ids of BERT vocabularies
    mask = np.zeros((batch, seq_len), "int32")
    mask[:, :real] = 1
    ids = rng.integers(low, vocab, size=(batch, seq_len)).astype("int32") * mask
    return {"token_ids": ids, "segment_ids": np.zeros_like(ids), "padding_mask": mask}


def make_optimizer():
    """What tools/distill.py trains with, at a constant learning rate."""
    from minilm_tf.optimizers.adamw import make_adamw

    return make_adamw(FLAGS.learning_rate, total_steps=10**9, warmup_steps=0,
                      weight_decay=FLAGS.weight_decay)


def build_models(precision: str, jit: bool):
    import keras

    from minilm_tf import MiniLMDistiller, build_student, load_teacher

    keras.backend.clear_session()
    gc.collect()
    keras.mixed_precision.set_global_policy(precision)
    keras.utils.set_random_seed(FLAGS.seed)
    if FLAGS.teacher == "tiny":
        teacher = tiny_teacher(FLAGS.seq_len)
    else:
        teacher = load_teacher(FLAGS.teacher)
    layers, hidden, heads = parse_student(FLAGS.student)
    student = build_student(teacher, num_layers=layers, hidden_dim=hidden, num_heads=heads,
                            intermediate_dim=FLAGS.student_intermediate_dim,
                            dropout=FLAGS.student_dropout, seed=FLAGS.seed)
    fast = {"auto": None, "true": True, "false": False}[FLAGS.fast_paths]

    def make_distiller(objective, fast_paths):
        # --num_relation_heads applies to the MiniLMv2 one of the two.
        heads = FLAGS.num_relation_heads if objective == "minilmv2" else None
        return MiniLMDistiller(teacher, student, objective=objective, num_relation_heads=heads,
                               fast_paths=fast_paths)

    distiller = make_distiller(FLAGS.objective, fast)
    if not distiller.student_variables:
        # E.g. a student built from a teacher already frozen by another
        # distiller inherits `trainable=False`; (a) would then time no backward.
        raise ValueError("The student has no trainable variables reached by the loss.")
    distiller.compile(optimizer=make_optimizer(), jit_compile=jit)
    compared = None
    if FLAGS.compare_fast_paths:
        compared = make_distiller(FLAGS.objective, not distiller.uses_fast_paths)
    elif FLAGS.compare_objective:
        compared = make_distiller(FLAGS.compare_objective, fast)
    if compared is not None:
        compared.compile(optimizer=make_optimizer(), jit_compile=jit)
    return teacher, student, distiller, compared


# --------------------------------------------------------------------------- the three measurements


def _step_runner(distiller, batch: dict, losses: list) -> tuple:
    """(run one compiled training step of `distiller`, warm up with n steps of `fit`)."""
    import tensorflow as tf

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


def make_runners(distiller, batch: dict, jit: bool, compared=None) -> dict:
    """name -> (callable running one step and waiting for it, warm-up callable)."""
    import tensorflow as tf

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
    optimizer = make_optimizer()
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


def step_matmul_flops(distiller, batch: int, seq: int) -> int:
    """Matmul FLOPs of one step: the teacher forward up to its relations and
    three times the student's (forward + backward), padded tokens included."""
    num_relations = len(distiller.objective.relations_used)

    def forward_per_token(relations) -> int:
        dim, ffn = relations.hidden_dim, relations.encoder_layer.intermediate_dim
        full = 8 * dim * dim + 4 * dim * ffn + 4 * seq * dim
        last = 6 * dim * dim + num_relations * 2 * seq * dim
        return relations.resolved_index * full + last

    return batch * seq * (forward_per_token(distiller.teacher_relations)
                          + 3 * forward_per_token(distiller.student_relations))


def matmul_peak(precision: str, jit: bool, shapes: dict, calls: int = 8) -> dict:
    """Best GFLOP/s of plain [m, k] x [k, n] matmuls in the policy's compute dtype."""
    import keras
    import numpy as np
    import tensorflow as tf

    dtype = keras.mixed_precision.Policy(precision).compute_dtype
    rates = {}
    for name, (m, k, n) in shapes.items():
        rng = np.random.default_rng(0)
        a = tf.constant(rng.normal(size=(m, k)), dtype=dtype)
        b = tf.constant(rng.normal(size=(k, n)), dtype=dtype)
        matmul = tf.function(lambda x, y: tf.reduce_sum(tf.matmul(x, y)[0]), jit_compile=jit)
        matmul(a, b).numpy()
        best = float("inf")
        for _ in range(calls):
            t = time.perf_counter()
            matmul(a, b).numpy()
            best = min(best, time.perf_counter() - t)
        rates[name] = round(2 * m * k * n / best / 1e9, 1)
    return {"dtype": dtype, "gflops_by_shape": rates, "peak_gflops": max(rates.values())}


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
    from minilm_tf.losses import relations

    return "xla" if jit or relations._native_op("auto") is None else "native"


def measure_precision(precision: str) -> dict:
    import numpy as np

    from minilm_tf import count_params
    from minilm_tf.training.distribute import resolve_jit_compile

    jit = resolve_jit_compile(FLAGS.jit_compile)
    load_start = load_average()
    t0 = time.perf_counter()
    teacher, student, distiller, compared = build_models(precision, jit)
    phases = PHASES + (("compared",) if compared is not None else ())
    build_s = time.perf_counter() - t0
    batch = make_batch(FLAGS.batch_size, FLAGS.seq_len, teacher.backbone.vocabulary_size,
                       FLAGS.padding_fraction, FLAGS.seed)
    tokens = int(batch["padding_mask"].size)
    real_tokens = int(batch["padding_mask"].sum())
    runners = make_runners(distiller, batch, jit, compared)

    first_call_s, phase_peak = {}, {}
    warmup = max(1, FLAGS.warmup_steps)
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
        reset_ok = reset_peak_rss()
        run()
        phase_peak[name] = round(_status_mb("VmHWM"), 1) if reset_ok else None

    times = {name: [] for name in phases}
    cpu = {name: [] for name in phases}
    for _ in range(FLAGS.steps):
        for name in phases:
            run = runners[name][0]
            c, t = time.process_time(), time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)

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
            objective=FLAGS.objective if FLAGS.compare_fast_paths else FLAGS.compare_objective,
            fast_paths=compared.uses_fast_paths,
            tokens_per_s_ratio=round(a / result["compared"]["median_ms"], 4),
            tokens_per_s_ratio_cpu=round(cpu_a / max(result["compared"]["cpu_median_ms"], 1e-9), 4))
    flops = step_matmul_flops(distiller, FLAGS.batch_size, FLAGS.seq_len)
    relations = distiller.student_relations
    tokens_dim = (FLAGS.batch_size * FLAGS.seq_len, relations.hidden_dim,
                  relations.encoder_layer.intermediate_dim)
    peak = matmul_peak(precision, jit, {
        "ffn_up": tokens_dim, "ffn_down": (tokens_dim[0], tokens_dim[2], tokens_dim[1]),
        "square_2048": (2048, 2048, 2048)})
    achieved = flops / (a / 1e3) / 1e9
    result["matmuls"] = dict(peak, step_flops=int(flops),
                             achieved_gflops=round(achieved, 3),
                             fraction_of_peak=round(achieved / peak["peak_gflops"], 3))
    losses = runners["_losses"]
    result["loss_first"], result["loss_last"] = float(losses[0]), float(losses[-1])
    if not all(np.isfinite(losses)):
        raise FloatingPointError(f"Non-finite distillation loss under {precision}: {losses}")
    result["memory"] = {
        "peak_rss_mb": round(maxrss_mb(), 1),
        "phase_peak_rss_mb": phase_peak,
        "tf_memory_info": tf_memory_info(),
    }
    if FLAGS.profile_steps > 0:
        result["profile"] = profile_step(distiller, runners["step"][0], precision, jit)
    result["load_average_end"] = load_average()
    del runners, distiller, compared, student, teacher
    return result


# --------------------------------------------------------------------------- profiling


def _relation_scopes(nodes, below_names: dict) -> dict:
    """Graph name scope of each relation layer, found through its truncated encoder.

    Keras uniquifies scope names inside a traced function (`x` may become
    `x_1`), so the scope that encloses `<backbone>_below_layer_<i>` is read
    from the op names themselves. Returns {part name: scope}.
    """
    scopes = {}
    for part, below in below_names.items():
        pattern = re.compile(r"(?:^|/)([^/]+)/" + re.escape(below) + r"(?:_\d+)?/")
        for node in nodes:
            if "gradient_tape/" in node:
                continue
            match = pattern.search(node)
            if match:
                scopes[part] = match.group(1)
                break
    return scopes


def _categorize(name: str, scopes: dict) -> str:
    if "gradient_tape/" in name:
        return "backward"
    if re.search(r"(^|/)(fused_)?adam_?w(_\d+)?/", name, re.I):
        return "optimizer"
    for part, scope in scopes.items():
        if f"/{scope}/" in name or name.startswith(scope + "/"):
            return part
    if re.search(r"(^|/)(mean|add_n)(_\d+)?/", name) or "AssignAddVariableOp" in name:
        return "metrics"
    return "relations + KL (forward)"


def summarize_xplane(path: str, below_names: dict, top: int, steps: int) -> dict:
    """Self time per TF op (type and node) on the host CPU plane of one xplane.pb.

    TF op events are those whose metadata has a display name (the op type)
    distinct from the node name; self time subtracts op events nested inside
    them on the same thread.
    """
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    with open(path, "rb") as f:
        space.ParseFromString(f.read())
    by_type, by_node = {}, {}
    total_ps = 0
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        meta = plane.event_metadata
        for line in plane.lines:
            events = []
            for e in line.events:
                md = meta[e.metadata_id]
                if md.display_name and md.display_name != md.name and not md.name.startswith(
                        "Iterator::"):
                    events.append((e.offset_ps, e.offset_ps + e.duration_ps, md.name,
                                   md.display_name))
            events.sort(key=lambda ev: (ev[0], -ev[1]))
            stack, self_ps = [], []
            for i, (start, end, _, _) in enumerate(events):
                while stack and events[stack[-1]][1] <= start:
                    stack.pop()
                self_ps.append(end - start)
                if stack:
                    self_ps[stack[-1]] -= min(end, events[stack[-1]][1]) - start
                stack.append(i)
            for (start, end, node, op_type), ps in zip(events, self_ps):
                ps = max(ps, 0)
                total_ps += ps
                by_type[op_type] = by_type.get(op_type, 0) + ps
                key = (node, op_type)
                by_node[key] = by_node.get(key, 0) + ps
    scopes = _relation_scopes([node for node, _ in by_node], below_names)
    by_part = {}
    for (node, _), ps in by_node.items():
        part = _categorize(node, scopes)
        by_part[part] = by_part.get(part, 0) + ps

    def ms(ps):
        return round(ps / 1e9 / max(1, steps), 3)

    def pct(ps):
        return round(100.0 * ps / total_ps, 1) if total_ps else 0.0

    return {
        "op_self_ms_per_step": ms(total_ps),
        "by_part": [{"part": k, "ms_per_step": ms(v), "percent": pct(v)}
                    for k, v in sorted(by_part.items(), key=lambda kv: -kv[1])],
        "top_op_types": [{"op": k, "ms_per_step": ms(v), "percent": pct(v)}
                         for k, v in sorted(by_type.items(), key=lambda kv: -kv[1])[:top]],
        "top_ops": [{"node": k[0], "op": k[1], "ms_per_step": ms(v), "percent": pct(v)}
                    for k, v in sorted(by_node.items(), key=lambda kv: -kv[1])[:top]],
    }


def profile_step(distiller, run_step, precision: str, jit: bool) -> dict:
    import glob

    import tensorflow as tf

    root = FLAGS.profile_dir or tempfile.mkdtemp(prefix="minilm_profile_")
    logdir = os.path.join(root, f"{precision}{'_xla' if jit else ''}")
    tf.profiler.experimental.start(logdir)
    t = time.perf_counter()
    for _ in range(FLAGS.profile_steps):
        run_step()
    wall = time.perf_counter() - t
    tf.profiler.experimental.stop()
    files = sorted(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True),
                   key=os.path.getmtime)
    if not files:
        return {"logdir": logdir, "error": "no xplane.pb written"}
    below_names = {"teacher forward": distiller.teacher_relations.below.name,
                   "student forward": distiller.student_relations.below.name}
    summary = summarize_xplane(files[-1], below_names, FLAGS.profile_top, FLAGS.profile_steps)
    summary.update(logdir=logdir, steps=FLAGS.profile_steps,
                   wall_ms_per_step=round(wall * 1e3 / FLAGS.profile_steps, 3))
    if jit:
        # XLA runs the step as a few compiled clusters: no per-part breakdown.
        summary["by_part"] = {"error": "XLA fuses the step; use --jit_compile=false for parts"}
    return summary


# --------------------------------------------------------------------------- output


def format_table(report: dict) -> str:
    cfg = report["config"]
    lines = [
        f"teacher={cfg['teacher']} student={cfg['student']} objective={cfg['objective']}"
        f"{' (R=%d)' % cfg['num_relation_heads'] if cfg['objective'] == 'minilmv2' else ''} "
        f"batch={cfg['batch_size']}x{cfg['seq_len']} real_tokens={cfg['real_tokens_per_step']} "
        f"threads={cfg['threads']}/{cfg['inter_op_threads']} jit={cfg['jit_compile']} "
        f"steps={cfg['steps']} (+{cfg['warmup_steps']} warm-up)",
        f"{'precision':<15} {'measurement':<24} {'median ms':>10} {'min ms':>9} {'max ms':>9} "
        f"{'tokens/s':>10} {'cpu ms':>9}",
    ]
    for r in report["results"]:
        for name in (n for n in PHASE_TITLES if n in r):
            s = r[name]
            lines.append(f"{r['precision']:<15} {PHASE_TITLES[name]:<24} {s['median_ms']:>10.1f} "
                         f"{s['min_ms']:>9.1f} {s['max_ms']:>9.1f} {s['tokens_per_s']:>10.0f} "
                         f"{s['cpu_median_ms']:>9.1f}")
        lines.append(f"{r['precision']:<15} overhead a/(b+c) = {r['overhead_ratio']:.3f} "
                     f"({r['overhead_ms']:+.1f} ms; by CPU time {r['overhead_ratio_cpu']:.3f}); "
                     f"peak RSS {r['memory']['peak_rss_mb']:.0f} MB; "
                     f"loss {r['loss_first']:.4f} -> {r['loss_last']:.4f}")
        if "compared" in r:
            other = r["compared"]
            lines.append(f"{'':<15} (a2) {other['objective']}, fast paths "
                         f"{'on' if other['fast_paths'] else 'off'}, runs at "
                         f"{100 * other['tokens_per_s_ratio']:.1f}% of (a)'s tokens/s "
                         f"({100 * other['tokens_per_s_ratio_cpu']:.1f}% by CPU time)")
        mm = r["matmuls"]
        lines.append(f"{'':<15} jit={r['jit_compile']}; fast paths "
                     f"{'on' if r['fast_paths'] else 'off'}; relation loss {r['relation_loss']}; "
                     f"matmuls {mm['step_flops'] / 1e9:.1f} GFLOP/step "
                     f"= {mm['achieved_gflops']:.0f} GFLOP/s, {100 * mm['fraction_of_peak']:.0f}% "
                     f"of this process's {mm['dtype']} matmul peak {mm['peak_gflops']:.0f} GFLOP/s")
        prof = r.get("profile")
        if prof and isinstance(prof.get("by_part"), list):
            parts = ", ".join(f"{p['part']} {p['ms_per_step']:.1f}" for p in prof["by_part"])
            lines.append(f"{'':<15} profile ms/step: {parts}")
            ops = ", ".join(f"{o['op']} {o['percent']:.0f}%" for o in prof["top_op_types"][:8])
            lines.append(f"{'':<15} top op types: {ops}")
    return "\n".join(lines)


def run_benchmark() -> dict:
    import keras
    import tensorflow as tf

    if FLAGS.threads:
        tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)
    if FLAGS.inter_op_threads:
        tf.config.threading.set_inter_op_parallelism_threads(FLAGS.inter_op_threads)
    if FLAGS.steps < 1:
        raise ValueError("--steps must be at least 1.")
    parse_student(FLAGS.student)
    import keras_hub

    config = {
        "teacher": FLAGS.teacher, "student": FLAGS.student,
        "student_intermediate_dim": FLAGS.student_intermediate_dim,
        "student_dropout": FLAGS.student_dropout,
        "objective": FLAGS.objective,
        "num_relation_heads": FLAGS.num_relation_heads or (48 if FLAGS.objective == "minilmv2"
                                                          else None),
        "batch_size": FLAGS.batch_size, "seq_len": FLAGS.seq_len,
        "padding_fraction": FLAGS.padding_fraction,
        "tokens_per_step": FLAGS.batch_size * FLAGS.seq_len,
        "real_tokens_per_step": int(make_batch(FLAGS.batch_size, FLAGS.seq_len, 2000,
                                               FLAGS.padding_fraction, 0)["padding_mask"].sum()),
        "precisions": list(FLAGS.precisions), "jit_compile": FLAGS.jit_compile,
        "threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "warmup_steps": FLAGS.warmup_steps, "steps": FLAGS.steps,
        "learning_rate": FLAGS.learning_rate, "seed": FLAGS.seed,
        "command": " ".join([os.path.relpath(sys.argv[0], _REPO)] + sys.argv[1:]),
    }
    environment = machine_info()
    environment.update(tensorflow=tf.__version__, keras=keras.__version__,
                       keras_hub=keras_hub.__version__, load_average_start=load_average())
    results = []
    try:
        for precision in FLAGS.precisions:
            results.append(measure_precision(precision))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    environment["load_average_end"] = load_average()
    return {"config": config, "environment": environment, "results": results}


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    try:
        report = run_benchmark()
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(format_table(report))
    if FLAGS.output_json:
        directory = os.path.dirname(os.path.abspath(FLAGS.output_json))
        os.makedirs(directory, exist_ok=True)
        with open(FLAGS.output_json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
        print(f"wrote {FLAGS.output_json}")
    return 0


if __name__ == "__main__":
    app.run(main)
