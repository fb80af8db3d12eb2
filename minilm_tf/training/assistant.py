"""Teacher assistant (MiniLM, section 3.3): teacher -> assistant -> student.

When the student is much smaller than the teacher (at most half its layers
and at most half its hidden size), MiniLM first distills the teacher into an
assistant with the teacher's depth and the student's width, then distills the
assistant into the student.

- `needs_assistant`: the paper's rule.
- `distill_via_assistant`: the two `MiniLMDistiller` stages in Python, for
  users who drive training themselves.
- `run_with_assistant`: the two stages as resumable runs of
  `run_distillation`, each in its own work directory, plus a combined report.
"""

import copy
import os
from typing import Any, Callable, Mapping

import keras
import tensorflow as tf
from absl import logging

from minilm_tf.utils import workdir as workdirs
from minilm_tf.models.distiller import MiniLMDistiller
from minilm_tf.utils.fileio import atomic_write_json
from minilm_tf.models.students import build_student
from minilm_tf.models.encoders import LoadedEncoder, load_teacher

ROUTES = ("off", "on", "auto")


def needs_assistant(
    teacher_layers: int, teacher_hidden: int, student_layers: int, student_hidden: int
) -> bool:
    """The paper's rule: student depth <= L/2 and width <= d/2."""
    return 2 * student_layers <= teacher_layers and 2 * student_hidden <= teacher_hidden


def distill_via_assistant(
    teacher: LoadedEncoder,
    student: LoadedEncoder,
    dataset: tf.data.Dataset,
    steps_per_stage: int,
    make_optimizer: Callable[[], keras.optimizers.Optimizer],
    objective: str = "minilm",
    **distiller_kwargs: Any,
) -> LoadedEncoder:
    """Distills teacher -> assistant -> student with two `MiniLMDistiller` fits.

    Args:
        teacher: the teacher.
        student: the (untrained) student; trained in place.
        dataset: repeated batches of encoder inputs.
        steps_per_stage: training steps of each stage.
        make_optimizer: returns a fresh optimizer for each stage.
        objective: `minilm` or `minilmv2`.
        **distiller_kwargs: passed to both `MiniLMDistiller`s.

    Returns:
        The trained assistant (the student is trained in place).

    Examples:
    ```python
    assistant = distill_via_assistant(
        teacher, student, dataset, steps_per_stage=1000,
        make_optimizer=lambda: keras.optimizers.AdamW(3e-4))
    ```
    """
    assistant = build_student(
        teacher,
        num_layers=teacher.backbone.num_layers,
        hidden_dim=student.backbone.hidden_dim,
        num_heads=student.backbone.num_heads,
        intermediate_dim=student.backbone.intermediate_dim,
    )
    for stage_teacher, stage_student in ((teacher, assistant), (assistant, student)):
        distiller = MiniLMDistiller(stage_teacher, stage_student, objective, **distiller_kwargs)
        distiller.compile(optimizer=make_optimizer())
        distiller.fit(dataset, steps_per_epoch=steps_per_stage, epochs=1, verbose=0)
    return assistant


def _teacher_shape(spec: str) -> tuple[int, int]:
    backbone = load_teacher(spec).backbone
    return backbone.num_layers, backbone.hidden_dim


def choose_route(config: Mapping, mode: str) -> tuple[bool, str]:
    """Whether to use an assistant for `config`, and a sentence saying why."""
    if mode not in ROUTES:
        raise ValueError(f"assistant must be one of {', '.join(ROUTES)}, got {mode!r}.")
    student = config["student"]
    if mode == "off":
        return False, "direct route (assistant off)"
    layers, hidden = _teacher_shape(config["teacher"])
    if mode == "on":
        return True, f"assistant requested: {layers}x{student['hidden_dim']} assistant"
    use = needs_assistant(layers, hidden, student["num_layers"], student["hidden_dim"])
    shape = (
        f"student {student['num_layers']}x{student['hidden_dim']} vs teacher {layers}x{hidden}"
    )
    if use:
        return True, (
            f"assistant route: {shape} is at most half the depth and half the width, so a "
            f"{layers}x{student['hidden_dim']} assistant is distilled first (MiniLM 3.3)"
        )
    return False, f"direct route: {shape} is not at most half the depth and half the width"


def run_with_assistant(config: Mapping, workdir: str, run_distillation: Callable) -> dict:
    """Runs stage 1 (teacher -> assistant) and stage 2 (assistant -> student).

    Each stage is a normal resumable run in `workdir/stage1_assistant` and
    `workdir/stage2_student`; a finished stage 1 is not repeated. The total
    step budget `train.steps` is split by `assistant.steps_fraction`. The
    final student's held-out loss is also measured against the original
    teacher, so routes can be compared. Writes `workdir/report.json`.
    """
    with workdirs.hold(workdir) as held:
        return _run_with_assistant(config, held.root, run_distillation)


def _run_with_assistant(config: Mapping, workdir: str, run_distillation: Callable) -> dict:
    total = config["train"]["steps"]
    stage1_steps = max(1, round(total * config["assistant"]["steps_fraction"]))
    stage2_steps = max(1, total - stage1_steps)

    stage1 = copy.deepcopy(config)
    stage1["assistant"]["mode"] = "off"
    teacher_layers, _ = _teacher_shape(config["teacher"])
    stage1["student"]["num_layers"] = teacher_layers
    stage1["train"]["steps"] = stage1_steps
    stage1["train"]["warmup_steps"] = min(config["train"]["warmup_steps"], stage1_steps)
    stage1_dir = os.path.join(workdir, "stage1_assistant")
    logging.info("Stage 1: %s -> assistant %dx%d, %d steps.", config["teacher"],
                 teacher_layers, config["student"]["hidden_dim"], stage1_steps)
    report1 = run_distillation(stage1, stage1_dir)

    stage2 = copy.deepcopy(config)
    stage2["assistant"]["mode"] = "off"
    stage2["teacher"] = report1["student_dir"]
    stage2["teacher_layer"] = -1
    stage2["eval"]["reference_teacher"] = config["teacher"]
    stage2["eval"]["reference_teacher_layer"] = config["teacher_layer"]
    stage2["train"]["steps"] = stage2_steps
    stage2["train"]["warmup_steps"] = min(config["train"]["warmup_steps"], stage2_steps)
    stage2_dir = os.path.join(workdir, "stage2_student")
    logging.info("Stage 2: assistant -> student, %d steps.", stage2_steps)
    report2 = run_distillation(stage2, stage2_dir)

    report = {
        "route": "assistant",
        "stage1": _brief(report1),
        "stage2": _brief(report2),
        "steps": report1["steps"] + report2["steps"],
        "tokens_seen": report1["tokens_seen"] + report2["tokens_seen"],
        "wall_time_s": report1["wall_time_s"] + report2["wall_time_s"],
        "student_dir": report2["student_dir"],
        "student_params": report2["student_params"],
        "teacher_params": report1["teacher_params"],
        "heldout_loss_vs_teacher": report2["heldout_loss_vs_reference_teacher"],
    }
    atomic_write_json(os.path.join(workdir, "report.json"), report)
    return report


def _brief(report: Mapping) -> dict:
    keys = ("steps", "tokens_seen", "wall_time_s", "tokens_per_second", "heldout_loss_before",
            "heldout_loss_after", "student_dir", "student_params")
    return {key: report[key] for key in keys}


def summarize_assistant(report: Mapping) -> str:
    """A short human-readable result of a two-stage run."""
    lines = []
    for name, label in (("stage1", "teacher -> assistant"), ("stage2", "assistant -> student")):
        stage = report[name]
        lines.append(
            f"{name} ({label}): {stage['steps']} steps, {stage['tokens_per_second']:,.0f} "
            f"tokens/s, held-out loss {stage['heldout_loss_before']['loss']:.4f} -> "
            f"{stage['heldout_loss_after']['loss']:.4f}"
        )
    lines += [
        f"final student vs the original teacher: held-out distillation loss "
        f"{report['heldout_loss_vs_teacher']['loss']:.4f}",
        f"student ({report['student_params']:,} params): {report['student_dir']}",
    ]
    return "\n".join(lines)
