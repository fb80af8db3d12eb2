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
`configs/`; checks in `distillation_config`); see `configs/demo_cpu.py` for
every key. Each step of the run is one short function below: build, restore,
fit, evaluate, report, publish.
"""

import dataclasses
import json
import os
import time
from typing import Any, Mapping

import keras
import tensorflow as tf
from absl import logging

from minilm_tf import data as corpus
from minilm_tf.models.distiller import MiniLMDistiller
from minilm_tf.models.encoders import LoadedEncoder, load_teacher, save_encoder
from minilm_tf.training.model_cards import distillation_card
from minilm_tf.models.students import build_student, count_params, freeze_embeddings
from minilm_tf.optimizers.adamw import make_adamw
from minilm_tf.training.checkpointing import RunInterrupted, StopSignals, seed_states
from minilm_tf.training.distillation_config import (
    FAST_PATHS,
    check_resume_compatible,
    config_to_dict,
    validate_config,
)
from minilm_tf.training.distillation_metrics import (
    TrainingMonitor,
    plot_losses,
    truncate_metrics,
)
from minilm_tf.training.distribute import (hold_for_worker, is_chief, make_strategy,
                                           resolve_jit_compile)
from minilm_tf.utils.fileio import atomic_directory, atomic_write_json, atomic_write_text

METRICS_FILE = "metrics.csv"
CONFIG_FILE = "run_config.json"
HELDOUT_BEFORE_FILE = "heldout_before.json"


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
    keras.mixed_precision.set_global_policy(train["precision"])
    strategy = make_strategy(train["strategy"], train.get("tpu_address", ""))
    chief = is_chief(strategy)
    with hold_for_worker(workdir, strategy) as (held, checkpoint_dir):
        return _run_distillation(config, held.root, strategy, chief, checkpoint_dir)


@dataclasses.dataclass
class _Run:
    """What the steps of one distillation share."""

    config: Mapping
    config_dict: dict
    workdir: str
    strategy: Any
    chief: bool
    teacher: LoadedEncoder = None
    student: LoadedEncoder = None
    distiller: MiniLMDistiller = None
    step: tf.Variable = None
    manager: tf.train.CheckpointManager = None

    def path(self, name: str) -> str:
        return os.path.join(self.workdir, name)

    def evaluate(self, distiller, dataset) -> dict:
        return distiller.evaluate(dataset, steps=self.config["eval"]["heldout_batches"],
                                  return_dict=True, verbose=0)


def _run_distillation(config: Mapping, workdir: str, strategy, chief: bool,
                      checkpoint_dir: str) -> dict:
    run = _Run(config, config_to_dict(config), workdir, strategy, chief)
    if os.path.exists(run.path(CONFIG_FILE)):
        with open(run.path(CONFIG_FILE), encoding="utf-8") as f:
            check_resume_compatible(json.load(f), run.config_dict)
    keras.utils.set_random_seed(config["train"]["seed"])
    _build_models(run)
    if config["objective"] == "none":
        _write_config(run)
        return _publish_undistilled(run)
    checkpoint = _build_distiller(run)
    # Written only now that the teacher, student and distiller are built: a
    # start that fails on its config (seq_length beyond the teacher's position
    # embeddings, a bad teacher_layer) must not pin the workdir to that config.
    _write_config(run)
    start_step = _restore(run, checkpoint, checkpoint_dir)
    train_ds, heldout_ds, stats = _datasets(config, run.teacher, config["train"]["batch_size"])
    padding = corpus.padding_fraction(train_ds, 4)
    heldout_before = _heldout_before(run, heldout_ds)
    started = time.time()
    monitor = _fit(run, train_ds, start_step)
    wall = time.time() - started
    report = _report(run, start_step, wall, padding, stats, monitor, heldout_before,
                     run.evaluate(run.distiller, heldout_ds), _reference_loss(run, heldout_ds))
    if chief:
        if os.path.exists(run.path(METRICS_FILE)):
            report["plot"] = run.path("loss_curves.png")
            plot_losses(run.path(METRICS_FILE), report["plot"])
        _publish(report, run.student)
    return report


def _write_config(run: _Run) -> None:
    if run.chief:
        atomic_write_json(run.path(CONFIG_FILE), run.config_dict)


def _build_models(run: _Run) -> None:
    """The teacher, and the student initialised from it."""
    config, train = run.config, run.config["train"]
    with run.strategy.scope():
        run.teacher = load_teacher(config["teacher"])
        max_len = run.teacher.backbone.max_sequence_length
        if config["data"]["seq_length"] > max_len:
            raise ValueError(
                f"data.seq_length={config['data']['seq_length']} exceeds the teacher's "
                f"position embeddings ({max_len})."
            )
        student_cfg = config["student"]
        run.student = build_student(
            run.teacher,
            num_layers=student_cfg["num_layers"],
            hidden_dim=student_cfg["hidden_dim"],
            num_heads=student_cfg["num_heads"],
            intermediate_dim=student_cfg["intermediate_dim"],
            init=student_cfg["init"],
            dropout=student_cfg["dropout"],
            seed=train["seed"],
        )
        if student_cfg.get("freeze_embeddings"):
            run.student.metadata["init"]["frozen"] = freeze_embeddings(run.student.backbone)


def _build_distiller(run: _Run) -> tf.train.Checkpoint:
    """The compiled distiller and what a checkpoint of the run holds."""
    config, train = run.config, run.config["train"]
    with run.strategy.scope():
        run.distiller = MiniLMDistiller(
            run.teacher,
            run.student,
            objective=config["objective"],
            teacher_layer=config["teacher_layer"],
            num_relation_heads=config["num_relation_heads"],
            fast_paths=FAST_PATHS[str(train.get("fast_paths", "true")).lower()],
        )
        optimizer = make_adamw(
            train["learning_rate"],
            total_steps=train["steps"],
            warmup_steps=min(train["warmup_steps"], train["steps"]),
            weight_decay=train["weight_decay"],
            clipnorm=train["clipnorm"],
        )
        run.distiller.compile(optimizer=optimizer,
                              jit_compile=resolve_jit_compile(train["jit_compile"]))
        optimizer.build(run.distiller.distilled_variables)
        run.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        return tf.train.Checkpoint(
            student=run.student.backbone, optimizer=optimizer, step=run.step,
            rng=seed_states(run.student.backbone),
            **{layer.name: layer for layer in run.distiller.objective_layers})


def _restore(run: _Run, checkpoint: tf.train.Checkpoint, checkpoint_dir: str) -> int:
    """Resumes from the newest checkpoint, if any; returns the step to start from."""
    run.manager = tf.train.CheckpointManager(checkpoint, checkpoint_dir, max_to_keep=3)
    if run.manager.latest_checkpoint:
        checkpoint.restore(run.manager.latest_checkpoint).assert_existing_objects_matched()
        logging.info("Resumed from %s at step %d.", run.manager.latest_checkpoint,
                     int(run.step.numpy()))
    start_step = int(run.step.numpy())
    if run.chief:
        truncate_metrics(run.path(METRICS_FILE), start_step)
    return start_step


def _heldout_before(run: _Run, heldout_ds) -> dict:
    """The held-out loss of the initialised student (kept across resumes)."""
    if os.path.exists(run.path(HELDOUT_BEFORE_FILE)):
        with open(run.path(HELDOUT_BEFORE_FILE), encoding="utf-8") as f:
            return json.load(f)
    before = run.evaluate(run.distiller, heldout_ds)
    if run.chief:
        atomic_write_json(run.path(HELDOUT_BEFORE_FILE), before)
    return before


def _fit(run: _Run, train_ds, start_step: int):
    """Distils the remaining steps; None when there were none."""
    config, train = run.config, run.config["train"]
    remaining = train["steps"] - start_step
    if remaining <= 0:
        return None
    student_cfg = config["student"]
    logging.info(
        "Distilling %s (%d params) -> student %dx%dx%d (%d params), %s, %d steps from %d.",
        config["teacher"], count_params(run.teacher.backbone), student_cfg["num_layers"],
        student_cfg["hidden_dim"], student_cfg["num_heads"], count_params(run.student.backbone),
        config["objective"], remaining, start_step,
    )
    writer = tf.summary.create_file_writer(run.path("tensorboard"))
    with StopSignals() as signals:
        monitor = TrainingMonitor(
            manager=run.manager, step=run.step, total_steps=train["steps"],
            tokens_per_step=_tokens_per_step(config), log_every=train["log_every"],
            checkpoint_every=train["checkpoint_every"], summary_writer=writer,
            csv_path=run.path(METRICS_FILE), signals=signals,
        )
        run.distiller.fit(train_ds.skip(start_step), steps_per_epoch=remaining, epochs=1,
                          callbacks=[monitor], verbose=0, shuffle=False)
    if monitor.nonfinite_step is not None:
        raise FloatingPointError(
            f"The loss became non-finite at step {monitor.nonfinite_step}; stopped without "
            f"saving it. The last good checkpoint ({run.manager.latest_checkpoint or 'none yet'}) "
            "is kept. Lower train.learning_rate or set train.clipnorm, then rerun to resume."
        )
    if signals.received is not None:
        raise RunInterrupted(
            f"Interrupted by signal {signals.received} at step {int(run.step.numpy())}; "
            "checkpoint saved. Rerun the same command to resume."
        )
    return monitor


def _tokens_per_step(config: Mapping) -> int:
    return config["train"]["batch_size"] * config["data"]["seq_length"]


def _reference_loss(run: _Run, heldout_ds):
    """The held-out loss against `eval.reference_teacher` (None without one)."""
    config = run.config
    if not config["eval"]["reference_teacher"]:
        return None
    with run.strategy.scope():
        reference = MiniLMDistiller(
            load_teacher(config["eval"]["reference_teacher"]),
            run.student,
            objective=config["objective"],
            teacher_layer=config["eval"]["reference_teacher_layer"],
            num_relation_heads=config["num_relation_heads"],
        )
        reference.compile()
    return run.evaluate(reference, heldout_ds)


def _report(run: _Run, start_step, wall, padding, stats, monitor, before, after,
            reference) -> dict:
    steps = int(run.step.numpy())
    tokens_per_step = _tokens_per_step(run.config)
    report = _report_base(run)
    report.update({
        "steps": steps,
        "steps_this_session": steps - start_step,
        "resumed_from_step": start_step,
        "tokens_seen": steps * tokens_per_step,
        "padding_fraction": padding,
        "wall_time_s": wall,
        "tokens_per_second": (steps - start_step) * tokens_per_step / max(wall, 1e-9),
        "final_train_losses": monitor.last_logs if monitor else None,
        "heldout_loss_before": before,
        "heldout_loss_after": after,
        "heldout_loss_vs_reference_teacher": reference,
        "corpus": vars(stats),
    })
    return report


def _report_base(run: _Run) -> dict:
    """The report's fields of any run, distilled or not."""
    return {
        "config": run.config_dict,
        "steps": 0,
        "tokens_seen": 0,
        "heldout_loss_before": None,
        "heldout_loss_after": None,
        "teacher_params": count_params(run.teacher.backbone),
        "student_params": count_params(run.student.backbone),
        "student_init": run.student.metadata["init"],
        "student_dir": run.path("student"),
    }


def _publish(report: dict, student: LoadedEncoder) -> None:
    """Writes the student preset, then report.json (its presence marks a finished run)."""
    with atomic_directory(report["student_dir"], overwrite=True) as tmp:
        save_encoder(student, tmp)
        atomic_write_text(os.path.join(tmp, "README.md"), distillation_card(report))
    atomic_write_json(os.path.join(os.path.dirname(report["student_dir"]), "report.json"), report)


def _publish_undistilled(run: _Run) -> dict:
    """objective='none': the initialised student is the result (a baseline)."""
    report = _report_base(run)
    if run.chief:
        _publish(report, run.student)
    return report


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
