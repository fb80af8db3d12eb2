"""The objective study's results: its table (retention, seed std, the
difference from the baseline in seed stds), the verdict per task (does a
distilled student beat keeping teacher layers?), markdown, bar chart, and
the retention-vs-tokens curve."""

from __future__ import annotations

import statistics
from typing import Mapping, Sequence

from minilm_tf.utils.fileio import atomic_savefig

TEACHER = "teacher"
BASELINE = "none/teacher_layers"


def _metric(report: Mapping) -> float | None:
    value = report.get("test_metric")
    return report.get("validation_metric") if value is None else value


def _stats(values: Sequence[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def study_table(study) -> dict:
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
            by_seed = {s: _metric(study.results[(model, task.name, s)]) for s in config.seeds
                       if (model, task.name, s) in study.results}
            by_seed = {s: v for s, v in by_seed.items() if v is not None}
            values = list(by_seed.values())
            mean, std = _stats(values)
            if model == TEACHER:
                teacher_mean[task.name] = mean
            base = teacher_mean.get(task.name)
            entry["tasks"][task.name] = {
                "values": values, "seeds": list(by_seed), "mean": mean, "std": std,
                "retention_pct": 100.0 * mean / base if mean is not None and base else None,
                "retention_std_pct": 100.0 * std / base if std is not None and base else None,
            }
        rows.append(entry)
    metrics = {}
    for (_, task, _), report in study.results.items():
        metrics.setdefault(task, f"{report.get('main_metric')} on "
                           f"{'test' if report.get('test_metric') is not None else 'validation'}")
    table = {"teacher": config.distill["teacher"], "steps": config.steps,
             "tokens_per_row": config.steps * config.distill["train"]["batch_size"]
             * config.distill["data"]["seq_length"],
             "seeds": list(config.seeds), "finetune": config.finetune,
             "metrics": metrics, "rows": rows}
    table["verdicts"] = verdicts(table)
    return table


def verdicts(table: Mapping) -> dict:
    """Per task: the best student, and every other student against
    `none/teacher_layers` (the same shape without distillation): the
    difference in points and in seed stds (the larger of the two rows'), the
    seeds at which it is ahead (paired by fine-tuning seed), and the reading:
    `beats` / `worse` beyond one seed std, else `within the seed noise`."""
    base = next((r for r in table["rows"] if r["model"] == BASELINE), None)
    out = {}
    for task in table["rows"][0]["tasks"]:
        students = [r for r in table["rows"]
                    if r["model"] != TEACHER and r["tasks"][task]["mean"] is not None]
        if not students:
            continue
        best = max(students, key=lambda r: r["tasks"][task]["mean"])
        entry = {"best": best["model"], "best_retention_pct": best["tasks"][task]["retention_pct"],
                 "against_baseline": []}
        b = base and base["tasks"][task]
        if b and b["mean"] is not None:
            base_by_seed = dict(zip(b["seeds"], b["values"]))
            for row in students:
                if row is base:
                    continue
                t = row["tasks"][task]
                diff, std = _gap(t, b)
                paired = [v - base_by_seed[s] for s, v in zip(t["seeds"], t["values"])
                          if s in base_by_seed]
                if std is None:
                    reading = "no seed std to judge by (one seed)"
                elif diff > std:
                    reading = "beats"
                elif diff < -std:
                    reading = "worse"
                else:
                    reading = "within the seed noise"
                entry["against_baseline"].append({
                    "model": row["model"], "points": diff,
                    "stds": diff / std if std else None,
                    "seeds_ahead": sum(d > 0 for d in paired), "seeds_paired": len(paired),
                    "reading": reading})
        out[task] = entry
    return out


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
    lines += _verdict_lines(table.get("verdicts") or {})
    return "\n".join(lines) + "\n"


def _verdict_lines(by_task: Mapping) -> list[str]:
    if not by_task:
        return []
    lines = ["", f"Against `{BASELINE}` (the same student shape, teacher layers kept, "
             "no distillation); a difference counts beyond one seed std (the larger of "
             "the two rows'); seeds ahead are paired by fine-tuning seed:", ""]
    for task, v in by_task.items():
        best = f"best student `{v['best']}` ({_fmt(v['best_retention_pct'], '.1f')}% of the teacher)"
        lines.append(f"- {task}: {best}.")
        for a in v["against_baseline"]:
            stds = "" if a["stds"] is None else f", {a['stds']:+.1f} std"
            lines.append(f"  - `{a['model']}`: {a['points']:+.2f} pts{stds}, ahead at "
                         f"{a['seeds_ahead']} of {a['seeds_paired']} seeds: {a['reading']}")
    return lines


def _gap(entry: Mapping, base: Mapping) -> tuple[float, float | None]:
    """Points above the baseline, and the larger of the two seed stds in
    points (None without one)."""
    stds = [s for s in (entry["std"], base["std"]) if s]
    return 100.0 * (entry["mean"] - base["mean"]), (100.0 * max(stds) if stds else None)


def _difference(entry: Mapping, base: Mapping | None) -> str:
    """Points above the baseline, and that difference in the larger seed std."""
    if base is None or entry["mean"] is None or base["mean"] is None:
        return "-"
    diff, std = _gap(entry, base)
    return f"{diff:+.2f}" if std is None else f"{diff:+.2f} / {diff / std:+.1f}"


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


def curve_table(study, table: Mapping) -> dict:
    """Retention of the curve row at each budget (0: its initialisation alone)."""
    config = study.config
    row = config.curve_row
    tokens_per_step = config.distill["train"]["batch_size"] * config.distill["data"]["seq_length"]
    teacher = table["rows"][0]["tasks"]
    points = []
    none_name = f"none/{row.init}"
    has_none = any(r.name == none_name and r.steps is None for r in config.rows)
    budgets = [(0, none_name)] if has_none else []
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
