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
import statistics
from typing import Callable, Mapping, Sequence

import keras

from minilm_tf.utils import workdir as workdirs
from minilm_tf.utils.fileio import atomic_savefig, atomic_write_json, atomic_write_text
from minilm_tf.losses import parse_objective
from minilm_tf.training.distillation import run_distillation
from minilm_tf.models.students import INITS
from minilm_tf.tasks.finetuned import REPORT_FILE
from minilm_tf.training.finetune_common import FinetuneConfig
from minilm_tf.training.finetuning import run_finetune

TEACHER = "teacher"
BASELINE = "none/teacher_layers"
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
    """

    distill: Mapping
    rows: list[Row]
    tasks: list[Task]
    seeds: list[int]
    steps: int
    finetune: dict = dataclasses.field(default_factory=dict)
    budgets: list[int] = dataclasses.field(default_factory=list)
    curve_row: Row | None = None

    def validate(self) -> None:
        if not self.rows or not self.tasks or not self.seeds:
            raise ValueError("A study needs at least one row, one task and one seed.")
        if self.steps < 1 or any(b < 1 for b in self.budgets):
            raise ValueError("Distillation steps and budgets must be positive.")
        if self.budgets and self.curve_row is None:
            raise ValueError("budgets need a curve_row (the row distilled at each budget).")
        unknown = set(self.finetune) - {f.name for f in dataclasses.fields(FinetuneConfig)}
        if unknown or {"model", "task", "workdir", "seed"} & set(self.finetune):
            raise ValueError(f"finetune settings: unknown or reserved keys {sorted(unknown)}.")

    def identity(self) -> dict:
        """The settings a resumed study must share with the saved one."""
        distill = self.distill.to_dict() if hasattr(self.distill, "to_dict") else dict(self.distill)
        distill = json.loads(json.dumps(distill))
        # Each row sets these itself.
        distill.pop("objective")
        distill["student"].pop("init")
        distill["train"].pop("steps")
        return {"distill": distill, "steps": self.steps,
                "finetune": dict(sorted(self.finetune.items()))}


def _row_config(config: StudyConfig, row: Row):
    recipe = copy.deepcopy(config.distill)
    recipe["objective"] = row.objective
    recipe["student"]["init"] = row.init
    recipe["train"]["steps"] = row.steps or config.steps
    return recipe


# Recipe settings added after a study may have started, with the value that
# reproduces what its runs did before the setting existed.
_ADDED_SETTINGS = {("train", "fast_paths"): "true"}


def _check_identity(workdir: str, config: StudyConfig) -> None:
    path = os.path.join(workdir, STUDY_CONFIG)
    identity = config.identity()
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
        for (section, key), value in _ADDED_SETTINGS.items():
            saved.get("distill", {}).get(section, {}).setdefault(key, value)
        if saved != identity:
            changed = sorted(k for k in identity if saved.get(k) != identity[k])
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

    def _finetune(self, model: Row | str, task: Task, seed: int) -> dict:
        slug = TEACHER if model == TEACHER else model.slug
        directory = os.path.join(self.workdir, "finetune", task.name, slug, f"seed{seed}")
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


def _metric(report: Mapping) -> float | None:
    value = report.get("test_metric")
    return report.get("validation_metric") if value is None else value


def _stats(values: Sequence[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def study_table(study: Study) -> dict:
    """The table: per model and task, the metric per seed, mean, std, retention."""
    config = study.config
    models = [TEACHER] + [r.name for r in config.rows]
    teacher_mean = {}
    rows = []
    for model in models:
        entry = {"model": model, "tasks": {}}
        row = next((r for r in config.rows if r.name == model), None)
        if row is not None and row in study.distilled:
            report = study.distilled[row]
            entry["distillation"] = _distillation_summary(report)
        for task in config.tasks:
            values = [_metric(study.results[(model, task.name, s)]) for s in config.seeds
                      if (model, task.name, s) in study.results]
            values = [v for v in values if v is not None]
            mean, std = _stats(values)
            if model == TEACHER:
                teacher_mean[task.name] = mean
            base = teacher_mean.get(task.name)
            entry["tasks"][task.name] = {
                "values": values, "mean": mean, "std": std,
                "retention_pct": 100.0 * mean / base if mean is not None and base else None,
                "retention_std_pct": 100.0 * std / base if std is not None and base else None,
            }
        rows.append(entry)
    metrics = {}
    for (_, task, _), report in study.results.items():
        metrics.setdefault(task, f"{report.get('main_metric')} on "
                           f"{'test' if report.get('test_metric') is not None else 'validation'}")
    return {"teacher": config.distill["teacher"], "steps": config.steps,
            "tokens_per_row": config.steps * config.distill["train"]["batch_size"]
            * config.distill["data"]["seq_length"],
            "seeds": list(config.seeds), "finetune": config.finetune,
            "metrics": metrics, "rows": rows}


def _distillation_summary(report: Mapping) -> dict:
    before, after = report.get("heldout_loss_before"), report.get("heldout_loss_after")
    return {"steps": report.get("steps"), "tokens": report.get("tokens_seen"),
            "wall_time_s": report.get("wall_time_s"),
            "heldout_loss_before": before and before.get("loss"),
            "heldout_loss_after": after and after.get("loss"),
            "teacher_layers_copied": (report.get("student_init") or {}).get("teacher_layers")}


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def study_markdown(table: Mapping) -> str:
    """The table as markdown, with each row's difference from `none/teacher_layers`."""
    tasks = list(table["rows"][0]["tasks"])
    base = next((r for r in table["rows"] if r["model"] == BASELINE), None)
    header = ["model", "distill s", "held-out loss"]
    for task in tasks:
        header += [f"{task} ({table['metrics'].get(task, '')})", "retention %",
                   f"vs {BASELINE} (pts / std)"]
    lines = [f"Teacher {table['teacher']}; {table['steps']} distillation steps "
             f"({table['tokens_per_row']:,} tokens) per row; fine-tuning seeds "
             f"{table['seeds']}; settings {table['finetune']}.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in table["rows"]:
        d = row.get("distillation") or {}
        cells = [row["model"], _fmt(d.get("wall_time_s"), ".0f"),
                 f"{_fmt(d.get('heldout_loss_before'), '.4f')} -> "
                 f"{_fmt(d.get('heldout_loss_after'), '.4f')}" if d.get("steps") else "-"]
        for task in tasks:
            t = row["tasks"][task]
            value = _fmt(t["mean"], ".4f")
            if t["std"] is not None:
                value += f" ± {t['std']:.4f}"
            value += f" (n={len(t['values'])})"
            reference = None if base is None or row is base else base["tasks"][task]
            cells += [value, _fmt(t["retention_pct"], ".1f"), _difference(t, reference)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _difference(entry: Mapping, base: Mapping | None) -> str:
    """Points above the baseline, and that difference in the larger seed std."""
    if base is None or entry["mean"] is None or base["mean"] is None:
        return "-"
    diff = 100.0 * (entry["mean"] - base["mean"])
    stds = [s for s in (entry["std"], base["std"]) if s]
    if not stds:
        return f"{diff:+.2f}"
    return f"{diff:+.2f} / {diff / (100.0 * max(stds)):+.1f}"


def study_chart(table: Mapping, path: str) -> None:
    """Retention per row and task, with seed-std error bars (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = table["rows"][1:]
    tasks = list(table["rows"][0]["tasks"])
    width = 0.8 / max(len(tasks), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(rows) + 2), 4.5))
    for i, task in enumerate(tasks):
        values = [r["tasks"][task]["retention_pct"] or 0.0 for r in rows]
        errors = [r["tasks"][task]["retention_std_pct"] or 0.0 for r in rows]
        xs = [j + (i - (len(tasks) - 1) / 2) * width for j in range(len(rows))]
        ax.bar(xs, values, width, yerr=errors, capsize=3, label=task)
    ax.axhline(100.0, color="gray", lw=0.8)
    ax.axhline(97.0, color="gray", lw=0.8, ls="--")
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([r["model"] for r in rows], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("retention, % of the teacher's test metric")
    low = min([r["tasks"][t]["retention_pct"] or 100.0 for r in rows for t in tasks] + [100.0])
    ax.set_ylim(max(0.0, low - 5.0), 102.0)
    ax.set_title(f"Students of {table['teacher']} at {table['tokens_per_row']:,} tokens")
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=100)
    plt.close(fig)


def curve_table(study: Study, table: Mapping) -> dict:
    """Retention of the curve row at each budget (0: its initialisation alone)."""
    config = study.config
    row = config.curve_row
    tokens_per_step = config.distill["train"]["batch_size"] * config.distill["data"]["seq_length"]
    teacher = table["rows"][0]["tasks"]
    points = []
    none_row = Row("none", row.init)
    budgets = [(0, none_row.name)] if none_row in config.rows else []
    budgets += [(steps, f"{row.name} ({steps} steps)") for steps in config.budgets]
    if row in config.rows and config.steps not in config.budgets:
        budgets.append((config.steps, row.name))
    for steps, model in sorted(budgets):
        point = {"steps": steps, "tokens": steps * tokens_per_step, "tasks": {}}
        for task in config.tasks:
            values = [_metric(study.results[(model, task.name, s)]) for s in config.seeds
                      if (model, task.name, s) in study.results]
            mean, std = _stats([v for v in values if v is not None])
            base = teacher[task.name]["mean"]
            point["tasks"][task.name] = {
                "mean": mean, "std": std, "n": len(values),
                "retention_pct": 100.0 * mean / base if mean is not None and base else None,
                "retention_std_pct": 100.0 * std / base if std is not None and base else None,
            }
        points.append(point)
    return {"row": row.name, "points": points}


def curve_chart(curve: Mapping, path: str) -> None:
    """Retention vs distillation tokens, one line per task (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    tasks = list(curve["points"][0]["tasks"]) if curve["points"] else []
    for task in tasks:
        points = [p for p in curve["points"] if p["tasks"][task]["retention_pct"] is not None]
        ax.errorbar([p["tokens"] / 1e6 for p in points],
                    [p["tasks"][task]["retention_pct"] for p in points],
                    yerr=[p["tasks"][task]["retention_std_pct"] or 0.0 for p in points],
                    marker="o", capsize=3, label=task)
    ax.axhline(97.0, color="gray", lw=0.8, ls="--")
    ax.set_xlabel("distillation tokens (millions)")
    ax.set_ylabel("retention, % of the teacher")
    ax.set_title(f"{curve['row']}: retention vs budget")
    ax.grid(alpha=0.3)
    if tasks:
        ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=100)
    plt.close(fig)

