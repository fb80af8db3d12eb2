"""The objective study: which way of making a small student wins at a budget.

For a list of rows, each an (objective, student initialisation) pair, the
study distils one student per row from the same recipe with the same token
budget (`objective='none'` rows are the initialised student as it is), then
fine-tunes the teacher and every student on each task over several seeds
with the same settings, and tabulates the test metric, its retention (% of
the teacher's) and its standard deviation over seeds. With `budgets`, one
row is also distilled at several budgets: a retention-vs-tokens curve.

Everything is resumable: distillations and fine-tunes resume from their own
checkpoints, finished ones (a `report.json`) are reused, so rerunning the
same study after a kill continues where it stopped. The tables are
rewritten after every finished fine-tune, so a partial study is readable.

Work directory layout:
    study_config.json                   the settings that must not change
    distill/<row>/                      one `run_distillation` per row
    finetune/<task>/<model>/seed<S>/    one `run_finetune` per model, task, seed
    study.json, study.md, study.png     the table and its chart
    curve.json, curve.png               the retention-vs-tokens curve
"""

from __future__ import annotations

import copy
import dataclasses
import gc
import json
import os
import re
from typing import Callable, Mapping, Sequence

import keras

from minilm_tf.utils import workdir as workdirs
from minilm_tf.utils.fileio import atomic_write_json, atomic_write_text
from minilm_tf.losses import parse_objective
from minilm_tf.training.distillation import run_distillation
from minilm_tf.models.students import INITS
from minilm_tf.tasks.finetuned import REPORT_FILE
from minilm_tf.training.finetune_common import FinetuneConfig
from minilm_tf.training.finetuning import run_finetune
from minilm_tf.training.study_report import (
    TEACHER,
    curve_chart,
    curve_table,
    study_chart,
    study_markdown,
    study_table,
)

STUDY_CONFIG = "study_config.json"


@dataclasses.dataclass(frozen=True)
class Row:
    """One way of making the student: an objective and an initialisation."""

    objective: str
    init: str
    steps: int | None = None  # None: the study's budget

    @property
    def name(self) -> str:
        return f"{self.objective}/{self.init}"

    @property
    def slug(self) -> str:
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{self.objective}__{self.init}")
        return slug if self.steps is None else f"{slug}__{self.steps}steps"


@dataclasses.dataclass(frozen=True)
class Task:
    """A task of `tools/finetune.py`: a built-in name, or local files in `directory`
    (`train.*`, `validation.*`, `test.*` with a .jsonl/.csv/.tsv extension)."""

    name: str
    directory: str | None = None

    def files(self) -> dict[str, str]:
        if self.directory is None:
            return {}
        found = {}
        for split, key in (("train", "train_file"), ("validation", "validation_file"),
                           ("test", "test_file")):
            for ext in (".jsonl", ".csv", ".tsv"):
                path = os.path.join(self.directory, split + ext)
                if os.path.exists(path):
                    found[key] = path
        if "train_file" not in found:
            raise FileNotFoundError(
                f"Task {self.name}: no train.jsonl/.csv/.tsv in {self.directory}."
            )
        return found


def parse_rows(specs: Sequence[str]) -> list[Row]:
    """`["minilm/teacher_layers", "none/random"]` -> rows (objective/init)."""
    rows = []
    for spec in specs:
        objective, sep, init = spec.strip().rpartition("/")
        if not sep or not objective:
            raise ValueError(f"A study row is OBJECTIVE/INIT (e.g. minilm/teacher_layers), got {spec!r}.")
        parse_objective(objective)
        if init not in INITS:
            raise ValueError(f"Row {spec!r}: init must be one of {INITS}.")
        rows.append(Row(objective, init))
    if len(set(rows)) < len(rows):
        raise ValueError(f"A study row is listed twice in {list(specs)}.")
    return rows


def parse_tasks(specs: Sequence[str]) -> list[Task]:
    """`["rotten_tomatoes", "mine=path/to/dir"]` -> tasks."""
    tasks = []
    for spec in specs:
        name, sep, directory = spec.strip().partition("=")
        if not name:
            raise ValueError(f"A study task is NAME or NAME=DIRECTORY, got {spec!r}.")
        tasks.append(Task(name, os.path.abspath(directory) if sep else None))
    return tasks


@dataclasses.dataclass
class StudyConfig:
    """What the study runs.

    Attributes:
        distill: the distillation recipe (a `configs/` ConfigDict or a dict);
            each row overrides `objective`, `student.init` and `train.steps`.
        rows: the rows, in the order they run.
        tasks: the tasks every model is fine-tuned on.
        seeds: fine-tuning seeds (the distillation keeps the recipe's seed).
        steps: distillation steps of every row (the equal token budget).
        finetune: `FinetuneConfig` fields shared by every fine-tune
            (e.g. epochs, sequence_length, max_train_examples).
        budgets: distillation steps of the curve (with `curve_row`).
        curve_row: the row distilled at every budget.
        kd_alpha: > 0: every student is fine-tuned with task-stage
            distillation from the teacher's fine-tune of the same task and
            seed (`FinetuneConfig.teacher_run`), this weight on the teacher
            term; 0: labels only.
        kd_temperature: the teacher term's temperature (with `kd_alpha`).
    """

    distill: Mapping
    rows: list[Row]
    tasks: list[Task]
    seeds: list[int]
    steps: int
    finetune: dict = dataclasses.field(default_factory=dict)
    budgets: list[int] = dataclasses.field(default_factory=list)
    curve_row: Row | None = None
    kd_alpha: float = 0.0
    kd_temperature: float = 2.0

    def validate(self) -> None:
        if not self.rows or not self.tasks or not self.seeds:
            raise ValueError("A study needs at least one row, one task and one seed.")
        if self.steps < 1 or any(b < 1 for b in self.budgets):
            raise ValueError("Distillation steps and budgets must be positive.")
        if self.budgets and self.curve_row is None:
            raise ValueError("budgets need a curve_row (the row distilled at each budget).")
        unknown = set(self.finetune) - {f.name for f in dataclasses.fields(FinetuneConfig)}
        reserved = {"model", "task", "workdir", "seed", "teacher_run", "kd_alpha",
                    "kd_temperature"} & set(self.finetune)
        if unknown or reserved:
            raise ValueError(f"finetune settings: unknown or reserved keys "
                             f"{sorted(unknown | reserved)} (task-stage distillation: "
                             "kd_alpha, kd_temperature).")
        if not 0.0 <= self.kd_alpha <= 1.0 or not self.kd_temperature > 0:
            raise ValueError("kd_alpha must be in [0, 1] and kd_temperature > 0.")

    def identity(self) -> dict:
        """The settings a resumed study must share with the saved one."""
        distill = self.distill.to_dict() if hasattr(self.distill, "to_dict") else dict(self.distill)
        distill = json.loads(json.dumps(distill))
        # Each row sets these itself.
        distill.pop("objective")
        distill["student"].pop("init")
        distill["train"].pop("steps")
        identity = {"distill": distill, "steps": self.steps,
                    "finetune": dict(sorted(self.finetune.items()))}
        if self.kd_alpha:
            identity["task_distillation"] = {"kd_alpha": self.kd_alpha,
                                             "kd_temperature": self.kd_temperature}
        return identity


def _row_config(config: StudyConfig, row: Row):
    recipe = copy.deepcopy(config.distill)
    recipe["objective"] = row.objective
    recipe["student"]["init"] = row.init
    recipe["train"]["steps"] = row.steps or config.steps
    return recipe


# Recipe settings added after a study may have started, with the value that
# reproduces what its runs did before the setting existed.
_ADDED_SETTINGS = {("train", "fast_paths"): "true", ("student", "freeze_embeddings"): False}


def _check_identity(workdir: str, config: StudyConfig) -> None:
    path = os.path.join(workdir, STUDY_CONFIG)
    identity = config.identity()
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
        for (section, key), value in _ADDED_SETTINGS.items():
            saved.get("distill", {}).get(section, {}).setdefault(key, value)
        if saved != identity:
            changed = sorted(k for k in set(identity) | set(saved)
                             if saved.get(k) != identity.get(k))
            raise ValueError(
                f"The work directory holds a study with other settings ({', '.join(changed)}); "
                "use a new workdir or the original settings (rows, tasks and seeds may change)."
            )
    else:
        atomic_write_json(path, identity)


class Study:
    """Runs a `StudyConfig` in a work directory (see the module doc)."""

    def __init__(self, config: StudyConfig, workdir: str,
                 log: Callable[[str], None] = print):
        config.validate()
        self.config = config
        self.workdir = os.path.realpath(os.path.abspath(workdir))
        self.log = log
        self.distilled: dict[Row, dict] = {}
        self.results: dict[tuple[str, str, int], dict] = {}  # (model, task, seed) -> report

    @property
    def curve_rows(self) -> list[Row]:
        row = self.config.curve_row
        return [Row(row.objective, row.init, steps) for steps in self.config.budgets] if row else []

    def run(self) -> dict:
        """Distils and fine-tunes what is missing; returns the study table.
        Holds the work directory (`minilm_tf.utils.workdir.hold`) while it runs."""
        with workdirs.hold(self.workdir, what=f"the study directory {self.workdir}"):
            _check_identity(self.workdir, self.config)
            return self._run()

    def _run(self) -> dict:
        first, *others = self.config.seeds
        for task in self.config.tasks:
            self._finetune(TEACHER, task, first)
        for row in self.config.rows + self.curve_rows:
            self._distill(row)
            for task in self.config.tasks:
                self._finetune(row, task, first)
        for seed in others:
            for model in [TEACHER, *self.config.rows, *self.curve_rows]:
                for task in self.config.tasks:
                    self._finetune(model, task, seed)
        return self._write_tables()

    def _distill(self, row: Row) -> dict:
        directory = os.path.join(self.workdir, "distill", row.slug)
        report_path = os.path.join(directory, REPORT_FILE)
        if os.path.exists(report_path):
            with open(report_path, encoding="utf-8") as f:
                report = json.load(f)
        else:
            self.log(f"distilling {row.name} ({row.steps or self.config.steps} steps) in {directory}")
            report = run_distillation(_row_config(self.config, row), directory)
            _release_memory()
        self.distilled[row] = report
        return report

    def _finetune_dir(self, model: Row | str, task: Task, seed: int) -> str:
        slug = TEACHER if model == TEACHER else model.slug
        return os.path.join(self.workdir, "finetune", task.name, slug, f"seed{seed}")

    def _finetune(self, model: Row | str, task: Task, seed: int) -> dict:
        directory = self._finetune_dir(model, task, seed)
        slug = TEACHER if model == TEACHER else model.slug
        report_path = os.path.join(directory, REPORT_FILE)
        fresh = not os.path.exists(report_path)
        if not fresh:
            with open(report_path, encoding="utf-8") as f:
                report = json.load(f)
        else:
            spec = (self.config.distill["teacher"] if model == TEACHER
                    else self._distill(model)["student_dir"])
            self.log(f"fine-tuning {slug} on {task.name} (seed {seed})")
            settings = dict(latency_examples=0, save_model=False)
            settings.update(self.config.finetune)
            settings.update(task.files())
            if self.config.kd_alpha:
                if model == TEACHER:
                    settings["save_model"] = True  # the students' teacher_run
                else:
                    settings.update(teacher_run=self._finetune_dir(TEACHER, task, seed),
                                    kd_alpha=self.config.kd_alpha,
                                    kd_temperature=self.config.kd_temperature)
            report = run_finetune(FinetuneConfig(model=spec, task=task.name, workdir=directory,
                                                 seed=seed, **settings), log_fn=self.log)
            report = {k: v for k, v in report.items() if not k.startswith("_")}
            _release_memory()
        name = TEACHER if model == TEACHER else model.name + (
            f" ({model.steps} steps)" if model.steps else "")
        self.results[(name, task.name, seed)] = report
        if fresh:  # reused reports change nothing until the next new one (run() writes at the end)
            self._write_tables()
        return report

    def _write_tables(self) -> dict:
        table = study_table(self)
        atomic_write_json(os.path.join(self.workdir, "study.json"), table)
        atomic_write_text(os.path.join(self.workdir, "study.md"), study_markdown(table))
        study_chart(table, os.path.join(self.workdir, "study.png"))
        if self.curve_rows:
            curve = curve_table(self, table)
            atomic_write_json(os.path.join(self.workdir, "curve.json"), curve)
            curve_chart(curve, os.path.join(self.workdir, "curve.png"))
        return table


def _release_memory() -> None:
    keras.backend.clear_session()
    gc.collect()
