"""A complete, resumable distillation run: config in, student and report out.

`run_distillation(config, workdir)` is what `tools/distill.py` calls. It
loads the teacher, builds the student and the corpus pipeline, distills with
`MiniLMDistiller.fit`, and writes to `workdir`:

- `checkpoints/`: `tf.train.CheckpointManager` checkpoints (student, optimizer,
  step); rerunning the same command resumes from the newest one;
- `run_config.json`: the config; a restart with an incompatible one refuses;
- `tensorboard/`: losses, learning rate, tokens/s;
- `metrics.csv` and `loss_curves.png`: loss components over steps (a resumed
  run first drops the rows after its checkpoint, so no step is listed twice);
- `student/`: the final student as a keras-hub preset directory;
- `report.json`: config, steps, tokens, wall time, throughput, losses.

The work directory is held with `minilm_tf.utils.workdir.hold` for the whole run:
one run at a time, no links leading outside it, leftovers of unfinished
writes removed at the start.

The config is a nested mapping (an `ml_collections.ConfigDict` from
`configs/`); see `configs/demo_cpu.py` for every key.
"""

import csv
import json
import math
import os
import time
from typing import Any, Mapping

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from minilm_tf import data as corpus
from minilm_tf.utils import workdir as workdirs
from minilm_tf.models.distiller import MiniLMDistiller
from minilm_tf.training.distribute import is_chief, make_strategy, resolve_jit_compile
from minilm_tf.utils.fileio import (
    atomic_directory,
    atomic_savefig,
    atomic_write_json,
    atomic_write_text,
)
from minilm_tf.training.checkpointing import RunInterrupted, StopSignals, save_checkpoint, seed_states
from minilm_tf.losses import parse_objective
from minilm_tf.optimizers.adamw import make_adamw
from minilm_tf.models.students import INITS, build_student, count_params
from minilm_tf.models.encoders import LoadedEncoder, load_teacher, save_encoder

CHECKPOINT_DIR = "checkpoints"
METRICS_FILE = "metrics.csv"

# Config keys that must not change when a run resumes.
_IDENTITY_KEYS = (
    ("teacher",),
    ("teacher_layer",),
    ("objective",),
    ("num_relation_heads",),
    ("student", "num_layers"),
    ("student", "hidden_dim"),
    ("student", "num_heads"),
    ("student", "intermediate_dim"),
    ("student", "init"),
    ("data", "seq_length"),
)


def _get(config: Mapping, path: tuple[str, ...]) -> Any:
    for key in path:
        config = config[key]
    return config


def _to_dict(config: Any) -> dict:
    return config.to_dict() if hasattr(config, "to_dict") else json.loads(json.dumps(config))


def validate_config(config: Mapping) -> None:
    """Clear errors for values that cannot work."""
    train, data = config["train"], config["data"]
    for name, value in (
        ("train.batch_size", train["batch_size"]),
        ("train.steps", train["steps"]),
        ("train.learning_rate", train["learning_rate"]),
        ("train.checkpoint_every", train["checkpoint_every"]),
        ("train.log_every", train["log_every"]),
        ("data.seq_length", data["seq_length"]),
    ):
        if not value > 0:
            raise ValueError(f"{name} must be positive, got {value}.")
    if data["seq_length"] < 8:
        raise ValueError(f"data.seq_length={data['seq_length']} is too short; use at least 8.")
    if not 0 < data["heldout_fraction"] < 1:
        raise ValueError(f"data.heldout_fraction must be in (0, 1), got {data['heldout_fraction']}.")
    try:
        resolve_jit_compile(train["jit_compile"])
    except ValueError as e:
        raise ValueError(f"train.{e}") from None
    if str(train.get("fast_paths", "true")).lower() not in FAST_PATHS:
        raise ValueError(f"train.fast_paths must be one of {sorted(FAST_PATHS)}, "
                         f"got {train['fast_paths']!r}.")
    parse_objective(config["objective"])
    if config["student"]["init"] not in INITS:
        raise ValueError(f"student.init must be one of {INITS}, got {config['student']['init']!r}.")


FAST_PATHS = {"auto": None, "true": True, "false": False}


def check_resume_compatible(saved: Mapping, config: Mapping) -> None:
    """Refuses to resume a run whose teacher/student/objective changed."""
    mismatches = []
    for path in _IDENTITY_KEYS:
        old, new = _get(saved, path), _get(config, path)
        if old != new:
            mismatches.append(f"{'.'.join(path)}: {old!r} in the saved run, {new!r} now")
    if mismatches:
        raise ValueError(
            "The work directory holds a run with a different setup ("
            + "; ".join(mismatches)
            + "). Use a new --workdir, or restore the original values."
        )


def _sources(spec: str) -> list[str]:
    """The entries of a comma-separated source list."""
    sources = [s.strip() for s in spec.split(",") if s.strip()]
    if not sources:
        raise ValueError("data.sources is empty; name files, globs, builtin:bbc_news or tfds:...")
    return sources


def _datasets(config: Mapping, teacher: LoadedEncoder, input_batch: int):
    data, train = config["data"], config["train"]
    texts, stats = corpus.read_text_sources(
        _sources(data["sources"]), mode=data["mode"], text_field=data["text_field"]
    )
    if isinstance(texts, list) and teacher.tokenizer is not None:
        start = 0
        for counts in stats.sources.values():
            counts["tokens"] = corpus.count_tokens(
                texts[start:start + counts["documents"]], teacher.tokenizer
            )
            start += counts["documents"]
    train_texts, heldout_texts = corpus.split_heldout(texts, data["heldout_fraction"], train["seed"])
    if isinstance(heldout_texts, list) and not heldout_texts:
        raise ValueError("The held-out split is empty; raise data.heldout_fraction or add text.")
    common = dict(
        tokenizer=teacher.tokenizer,
        seq_length=data["seq_length"],
        batch_size=input_batch,
        sentence_pairs=data["sentence_pairs"],
        tokenization=data["tokenization"],
    )
    train_ds = corpus.build_pretraining_dataset(
        train_texts, seed=train["seed"], shuffle_buffer=data["shuffle_buffer"], **common
    )
    heldout_ds = corpus.build_pretraining_dataset(
        heldout_texts, seed=train["seed"], shuffle_buffer=1, repeat=True, **common
    ).take(config["eval"]["heldout_batches"])
    heldout_ds = heldout_ds.cache()
    return train_ds, heldout_ds, stats


class _TrainingMonitor(keras.callbacks.Callback):
    """Logs, writes summaries and checkpoints; stops on signals and NaN."""

    def __init__(self, *, manager, step, total_steps, tokens_per_step, log_every,
                 checkpoint_every, summary_writer, csv_path, signals):
        super().__init__()
        self.manager = manager
        self.step = step
        self.total_steps = total_steps
        self.tokens_per_step = tokens_per_step
        self.log_every = log_every
        self.checkpoint_every = checkpoint_every
        self.writer = summary_writer
        self.csv_path = csv_path
        self.signals = signals
        self.last_logs: dict = {}
        self.nonfinite_step: int | None = None
        self._window_start = time.time()
        self._window_steps = 0

    def on_train_batch_end(self, batch, logs=None):
        self.step.assign_add(1)
        step = int(self.step.numpy())
        self._window_steps += 1
        logs = {k: float(np.mean(v)) for k, v in (logs or {}).items()}
        if not all(math.isfinite(v) for v in logs.values()):
            self.nonfinite_step = step
            self.model.stop_training = True
            return
        if step % self.log_every == 0 or step == self.total_steps:
            self._log(step, logs)
        if self.signals.received is not None:
            save_checkpoint(self.manager, step)
            self.model.stop_training = True
        elif step % self.checkpoint_every == 0 or step == self.total_steps:
            save_checkpoint(self.manager, step)

    def _log(self, step: int, logs: dict) -> None:
        elapsed = time.time() - self._window_start
        tokens_per_s = self._window_steps * self.tokens_per_step / max(elapsed, 1e-9)
        eta = (self.total_steps - step) * elapsed / max(self._window_steps, 1)
        lr = float(self.model.optimizer.learning_rate)
        parts = " ".join(f"{k}={v:.4f}" for k, v in sorted(logs.items()))
        logging.info(
            "step %d/%d %s lr=%.2e tokens/s=%.0f ETA %dm%02ds",
            step, self.total_steps, parts, lr, tokens_per_s, eta // 60, eta % 60,
        )
        with self.writer.as_default(step=step):
            for key, value in logs.items():
                tf.summary.scalar(f"train/{key}", value)
            tf.summary.scalar("train/learning_rate", lr)
            tf.summary.scalar("train/tokens_per_second", tokens_per_s)
        self.writer.flush()
        new_file = not os.path.exists(self.csv_path)
        row = {"step": step, "learning_rate": lr, "tokens_per_second": tokens_per_s, **logs}
        with open(self.csv_path, "a", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            if new_file:
                writer.writeheader()
            writer.writerow(row)
        self.last_logs = logs
        # Report the mean over the last window, not since the start.
        self.model.reset_metrics()
        self._window_start, self._window_steps = time.time(), 0


def plot_losses(csv_path: str, png_path: str) -> None:
    """Loss components over steps, one line each, from metrics.csv."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(csv_path, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    steps = [int(r["step"]) for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4))
    for key in rows[0]:
        if key.endswith("loss"):
            ax.plot(steps, [float(r[key]) for r in rows], label=key)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (KL in nats, MSE)")
    ax.set_title("Distillation losses")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    atomic_savefig(fig, png_path, dpi=110)
    plt.close(fig)


def truncate_metrics(csv_path: str, step: int) -> None:
    """Keeps the rows of metrics.csv up to `step` (where a resumed run
    continues), so steps repeated after a kill are not listed twice; a row
    cut short by a kill is dropped too."""
    if not os.path.exists(csv_path):
        return
    with open(csv_path, encoding="utf-8", newline="") as f:
        text = f.read()
    lines = text.splitlines(keepends=True)
    if not lines:
        return
    header = next(csv.reader([lines[0]]))
    kept = [lines[0]]
    for line in lines[1:]:
        fields = next(csv.reader([line]), [])
        if not line.endswith("\n") or len(fields) != len(header):
            break  # written half-way when the run was killed
        try:
            if int(fields[0]) > step:
                break
        except ValueError:
            break
        kept.append(line)
    if len(kept) == 1:
        os.remove(csv_path)  # the next row writes the header again
    elif len(kept) < len(lines):
        atomic_write_text(csv_path, "".join(kept))


def _set_precision(precision: str) -> None:
    if precision not in ("float32", "mixed_bfloat16", "mixed_float16"):
        raise ValueError(
            f"precision must be float32, mixed_bfloat16 or mixed_float16, got {precision!r}."
        )
    keras.mixed_precision.set_global_policy(precision)


def run_distillation(config: Mapping, workdir: str) -> dict:
    """Runs (or resumes) a distillation described by `config` in `workdir`.

    Returns the report dict (also written to `workdir/report.json`).

    Raises:
        RunInterrupted: after SIGTERM/SIGINT, once a checkpoint is saved.
        FloatingPointError: when the loss became non-finite (the last good
            checkpoint is kept).
        ValueError: for a bad config, or one incompatible with `workdir`;
            `minilm_tf.utils.workdir.WorkdirError` (a ValueError) when `workdir`
            holds a link leading outside it or another run holds it.
    """
    validate_config(config)
    train = config["train"]
    _set_precision(train["precision"])
    strategy = make_strategy(train["strategy"], train.get("tpu_address", ""))
    chief = is_chief(strategy)
    # Every worker must save; only the chief's checkpoints are kept, the
    # others go to .worker_<id>/, each worker holding its own lock.
    worker = "" if chief else f".worker_{strategy.cluster_resolver.task_id}"
    with workdirs.hold(workdir, temporaries_in=(worker, worker or CHECKPOINT_DIR),
                       lock_file=f"{worker}.lock" if worker else workdirs.LOCK_FILE) as held:
        return _run_distillation(config, held.root, strategy, chief,
                                 held.path(worker or CHECKPOINT_DIR))


def _run_distillation(config: Mapping, workdir: str, strategy, chief: bool,
                      checkpoint_dir: str) -> dict:
    train = config["train"]
    config_dict = _to_dict(config)
    config_path = os.path.join(workdir, "run_config.json")
    if os.path.exists(config_path):
        with open(config_path, encoding="utf-8") as f:
            check_resume_compatible(json.load(f), config_dict)

    keras.utils.set_random_seed(train["seed"])
    with strategy.scope():
        teacher = load_teacher(config["teacher"])
        max_len = teacher.backbone.max_sequence_length
        if config["data"]["seq_length"] > max_len:
            raise ValueError(
                f"data.seq_length={config['data']['seq_length']} exceeds the teacher's "
                f"position embeddings ({max_len})."
            )
        student_cfg = config["student"]
        student = build_student(
            teacher,
            num_layers=student_cfg["num_layers"],
            hidden_dim=student_cfg["hidden_dim"],
            num_heads=student_cfg["num_heads"],
            intermediate_dim=student_cfg["intermediate_dim"] or None,
            init=student_cfg["init"],
            dropout=student_cfg["dropout"],
            seed=train["seed"],
        )
    if config["objective"] == "none":
        if chief:
            atomic_write_json(config_path, config_dict)
        return _publish_undistilled(config_dict, workdir, teacher, student, chief)
    with strategy.scope():
        distiller = MiniLMDistiller(
            teacher,
            student,
            objective=config["objective"],
            teacher_layer=config["teacher_layer"],
            num_relation_heads=config["num_relation_heads"] or None,
            fast_paths=FAST_PATHS[str(train.get("fast_paths", "true")).lower()],
        )
        optimizer = make_adamw(
            train["learning_rate"],
            total_steps=train["steps"],
            warmup_steps=min(train["warmup_steps"], train["steps"]),
            weight_decay=train["weight_decay"],
            clipnorm=train["clipnorm"],
        )
        distiller.compile(
            optimizer=optimizer,
            jit_compile=resolve_jit_compile(train["jit_compile"]),
        )
        optimizer.build(distiller.distilled_variables)
        step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        checkpoint = tf.train.Checkpoint(student=student.backbone, optimizer=optimizer, step=step,
                                         rng=seed_states(student.backbone),
                                         **{layer.name: layer for layer in distiller.objective_layers})
    # Written only now that the teacher, student and distiller are built: a
    # start that fails on its config (seq_length beyond the teacher's position
    # embeddings, a bad teacher_layer) must not pin the workdir to that config.
    if chief:
        atomic_write_json(config_path, config_dict)

    manager = tf.train.CheckpointManager(checkpoint, checkpoint_dir, max_to_keep=3)
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        logging.info("Resumed from %s at step %d.", manager.latest_checkpoint, int(step.numpy()))
    start_step = int(step.numpy())
    csv_path = os.path.join(workdir, METRICS_FILE)
    if chief:
        truncate_metrics(csv_path, start_step)

    train_ds, heldout_ds, stats = _datasets(config, teacher, train["batch_size"])
    # The held-out set is exactly this many batches; saying so spares Keras'
    # "input ran out of data" warning (it cannot count a filtered dataset).
    heldout_steps = config["eval"]["heldout_batches"]
    padding = corpus.padding_fraction(train_ds, 4)
    tokens_per_step = train["batch_size"] * config["data"]["seq_length"]

    state_path = os.path.join(workdir, "heldout_before.json")
    if os.path.exists(state_path):
        with open(state_path, encoding="utf-8") as f:
            heldout_before = json.load(f)
    else:
        heldout_before = distiller.evaluate(heldout_ds, steps=heldout_steps, return_dict=True, verbose=0)
        if chief:
            atomic_write_json(state_path, heldout_before)

    remaining = train["steps"] - start_step
    started = time.time()
    monitor = None
    if remaining > 0:
        logging.info(
            "Distilling %s (%d params) -> student %dx%dx%d (%d params), %s, %d steps from %d.",
            config["teacher"], count_params(teacher.backbone), student_cfg["num_layers"],
            student_cfg["hidden_dim"], student_cfg["num_heads"], count_params(student.backbone),
            config["objective"], remaining, start_step,
        )
        writer = tf.summary.create_file_writer(os.path.join(workdir, "tensorboard"))
        with StopSignals() as signals:
            monitor = _TrainingMonitor(
                manager=manager, step=step, total_steps=train["steps"],
                tokens_per_step=tokens_per_step, log_every=train["log_every"],
                checkpoint_every=train["checkpoint_every"], summary_writer=writer,
                csv_path=csv_path, signals=signals,
            )
            distiller.fit(
                train_ds.skip(start_step), steps_per_epoch=remaining, epochs=1,
                callbacks=[monitor], verbose=0, shuffle=False,
            )
        if monitor.nonfinite_step is not None:
            raise FloatingPointError(
                f"The loss became non-finite at step {monitor.nonfinite_step}; stopped without "
                f"saving it. The last good checkpoint ({manager.latest_checkpoint or 'none yet'}) "
                "is kept. "
                "Lower train.learning_rate or set train.clipnorm, then rerun to resume."
            )
        if signals.received is not None:
            raise RunInterrupted(
                f"Interrupted by signal {signals.received} at step {int(step.numpy())}; "
                "checkpoint saved. Rerun the same command to resume."
            )
    wall = time.time() - started
    heldout_after = distiller.evaluate(heldout_ds, steps=heldout_steps, return_dict=True, verbose=0)
    reference = None
    if config["eval"]["reference_teacher"]:
        with strategy.scope():
            reference_distiller = MiniLMDistiller(
                load_teacher(config["eval"]["reference_teacher"]),
                student,
                objective=config["objective"],
                teacher_layer=config["eval"]["reference_teacher_layer"],
                num_relation_heads=config["num_relation_heads"] or None,
            )
            reference_distiller.compile()
        reference = reference_distiller.evaluate(heldout_ds, steps=heldout_steps, return_dict=True, verbose=0)
    report = _report_base(config_dict, workdir, teacher, student)
    report.update({
        "steps": int(step.numpy()),
        "steps_this_session": int(step.numpy()) - start_step,
        "resumed_from_step": start_step,
        "tokens_seen": int(step.numpy()) * tokens_per_step,
        "padding_fraction": padding,
        "wall_time_s": wall,
        "tokens_per_second": (int(step.numpy()) - start_step) * tokens_per_step / max(wall, 1e-9),
        "final_train_losses": monitor.last_logs if monitor else None,
        "heldout_loss_before": heldout_before,
        "heldout_loss_after": heldout_after,
        "heldout_loss_vs_reference_teacher": reference,
        "corpus": vars(stats),
    })
    if chief:
        if os.path.exists(csv_path):
            report["plot"] = os.path.join(workdir, "loss_curves.png")
            plot_losses(csv_path, report["plot"])
        _publish(report, student)
    return report


def _report_base(config_dict: dict, workdir: str, teacher, student) -> dict:
    """The report's fields of any run, distilled or not."""
    return {
        "config": config_dict,
        "steps": 0,
        "tokens_seen": 0,
        "heldout_loss_before": None,
        "heldout_loss_after": None,
        "teacher_params": count_params(teacher.backbone),
        "student_params": count_params(student.backbone),
        "student_init": student.metadata["init"],
        "student_dir": os.path.join(workdir, "student"),
    }


def _publish(report: dict, student: LoadedEncoder) -> None:
    """Writes the student preset, then report.json (its presence marks a finished run)."""
    with atomic_directory(report["student_dir"], overwrite=True) as tmp:
        save_encoder(student, tmp)
    atomic_write_json(os.path.join(os.path.dirname(report["student_dir"]), "report.json"), report)


def _publish_undistilled(config_dict, workdir, teacher, student, chief) -> dict:
    """objective='none': the initialised student is the result (a baseline)."""
    report = _report_base(config_dict, workdir, teacher, student)
    if chief:
        _publish(report, student)
    return report


def summarize(report: Mapping) -> str:
    """A short human-readable result of a run."""
    student = (
        f"student ({report['student_params']:,} params, teacher "
        f"{report['teacher_params']:,}; init {report['student_init']['mode']}): "
        f"{report['student_dir']}"
    )
    if report["heldout_loss_before"] is None:  # objective 'none'
        return f"no distillation (objective 'none'): the initialised {student}"
    before, after = report["heldout_loss_before"]["loss"], report["heldout_loss_after"]["loss"]
    return "\n".join(
        [
            f"steps: {report['steps']} ({report['steps_this_session']} this session), "
            f"tokens seen: {report['tokens_seen']:,}",
            f"throughput: {report['tokens_per_second']:,.0f} tokens/s "
            f"(padding {100 * report['padding_fraction']:.1f}%), wall {report['wall_time_s']:.0f} s",
            f"held-out distillation loss: {before:.4f} before -> {after:.4f} after "
            f"({100 * (1 - after / before):.1f}% lower)",
            student,
            f"report: {os.path.join(os.path.dirname(report['student_dir']), 'report.json')}",
        ]
    )

