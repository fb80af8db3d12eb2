"""Where the time of a step goes, from the TensorFlow profiler: self time per
op, and per part of the step (teacher forward, student forward, relations and
KL, backward, optimizer, metrics)."""

import glob
import os
import re
import tempfile
import time
from typing import Callable

import tensorflow as tf

from minilm_tf.benchmarks.config import BenchmarkConfig
from minilm_tf.models.distiller import MiniLMDistiller


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


def profile_step(config: BenchmarkConfig, distiller: MiniLMDistiller,
                 run_step: Callable[[], None], precision: str, jit: bool) -> dict:
    """Traces `config.profile_steps` calls of `run_step` and summarizes them.

    The trace goes under `config.profile_dir` (a temporary directory when
    unset), one subdirectory per precision and XLA setting.
    """
    root = config.profile_dir or tempfile.mkdtemp(prefix="minilm_profile_")
    logdir = os.path.join(root, f"{precision}{'_xla' if jit else ''}")
    tf.profiler.experimental.start(logdir)
    t = time.perf_counter()
    for _ in range(config.profile_steps):
        run_step()
    wall = time.perf_counter() - t
    tf.profiler.experimental.stop()
    files = sorted(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True),
                   key=os.path.getmtime)
    if not files:
        return {"logdir": logdir, "error": "no xplane.pb written"}
    below_names = {"teacher forward": distiller.teacher_relations.below.name,
                   "student forward": distiller.student_relations.below.name}
    summary = summarize_xplane(files[-1], below_names, config.profile_top, config.profile_steps)
    summary.update(logdir=logdir, steps=config.profile_steps,
                   wall_ms_per_step=round(wall * 1e3 / config.profile_steps, 3))
    if jit:
        # XLA runs the step as a few compiled clusters: no per-part breakdown.
        summary["by_part"] = {"error": "XLA fuses the step; use jit_compile='false' for parts"}
    return summary
