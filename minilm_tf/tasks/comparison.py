"""The teacher-vs-students table of tools/compare.py: rows, markdown, chart.

Each model may have been fine-tuned with several seeds: its row reports the
mean of the main metric over the seeds, their standard deviation and the
per-seed values; retention is the student's mean as a percentage of the
teacher's mean. Classification, regression and QA rows come from
`run_finetune` reports (`comparison_rows`), generation rows from
`run_seq2seq` reports (`generation_rows`: ROUGE-1/2/L and BLEU-4, each with
its retention, and generated tokens per second).
"""

import os
import re
import statistics
from typing import Any, Dict, List, Optional, Sequence


def model_slug(spec: str) -> str:
    """A file-name-safe short name for a model spec."""
    base = os.path.basename(os.path.normpath(spec)) or spec
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", base)[:60] or "model"


def _metric_value(report, split):
    metrics = (report.get("metrics") or {}).get(split) or {}
    return metrics.get(report.get("main_metric"))


def _mean(values: Sequence[Optional[float]]) -> Optional[float]:
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def comparison_rows(runs: Sequence[Sequence[Dict[str, Any]]], models: Sequence[str]):
    """Rows of the table from `run_finetune` reports: `runs[i]` holds model
    `i`'s reports (one per seed); model 0 is the teacher. The metric is on
    test when every run has test labels, else on validation."""
    runs = [list(r) for r in runs]
    everything = [r for reports in runs for r in reports]
    split = "test" if all(_metric_value(r, "test") is not None
                          for r in everything) else "validation"
    t_value = _mean([_metric_value(r, split) for r in runs[0]])
    t_latency = _mean([r.get("latency_ms_per_example") for r in runs[0]])
    rows = []
    for i, (spec, reports) in enumerate(zip(models, runs)):
        values = [_metric_value(r, split) for r in reports]
        value = _mean(values)
        latency = _mean([r.get("latency_ms_per_example") for r in reports])
        params = reports[0].get("parameters") or {}
        rows.append({
            "model": spec,
            "role": "teacher" if i == 0 else "student",
            "metric": reports[0].get("main_metric"),
            "split": split,
            "value": value,
            "value_std": (statistics.stdev(values)
                          if len(values) > 1 and None not in values else None),
            "values": values,
            "seeds": [(r.get("hyperparameters") or {}).get("seed") for r in reports],
            "validation_value": _mean([_metric_value(r, "validation") for r in reports]),
            "retention_pct": (100.0 * value / t_value
                              if value is not None and t_value not in (None, 0) else None),
            "parameters_total": params.get("total"),
            "parameters_backbone": params.get("backbone"),
            "latency_ms_per_example": latency,
            "speedup": (t_latency / latency if latency and t_latency else None),
            "train_examples_per_sec": _mean([(r.get("throughput") or {}).get(
                "train_examples_per_sec") for r in reports]),
            "workdirs": [r.get("_workdir") for r in reports],
        })
    return rows


GENERATION_METRICS = ("rouge1", "rouge2", "rougeL", "bleu")


def _generation_value(report, split, metric):
    result = (report.get("results") or {}).get(split) or {}
    return (result.get("metrics") or {}).get(metric)


def _std(values):
    return statistics.stdev(values) if len(values) > 1 and None not in values else None


def generation_rows(runs: Sequence[Sequence[Dict[str, Any]]], models: Sequence[str]):
    """Rows of the table from `run_seq2seq` reports (`runs[i]`: model `i`'s
    reports, one per seed; model 0 is the teacher). The main metric is
    ROUGE-L; every metric of `GENERATION_METRICS` has its mean, std and
    retention under `metrics`. Scores are on test when every run has a test
    split, else on validation; the speed-up is the ratio of generated tokens
    per second on that split."""
    runs = [list(r) for r in runs]
    everything = [r for reports in runs for r in reports]
    split = "test" if all(_generation_value(r, "test", "rougeL") is not None
                          for r in everything) else "validation"

    def speed(report):
        return (report.get("generation_tokens_per_second") or {}).get(split)

    teacher = {m: _mean([_generation_value(r, split, m) for r in runs[0]])
               for m in GENERATION_METRICS}
    t_speed = _mean([speed(r) for r in runs[0]])
    rows = []
    for i, (spec, reports) in enumerate(zip(models, runs)):
        metrics = {}
        for m in GENERATION_METRICS:
            values = [_generation_value(r, split, m) for r in reports]
            value = _mean(values)
            metrics[m] = {"value": value, "std": _std(values), "values": values,
                          "retention_pct": (100.0 * value / teacher[m] if value is not None
                                            and teacher[m] not in (None, 0) else None)}
        tokens_per_second = _mean([speed(r) for r in reports])
        main = metrics["rougeL"]
        rows.append({
            "model": spec,
            "role": "teacher" if i == 0 else "student",
            "metric": "rougeL",
            "split": split,
            "value": main["value"],
            "value_std": main["std"],
            "values": main["values"],
            "retention_pct": main["retention_pct"],
            "metrics": metrics,
            "seeds": [(r.get("config") or {}).get("seed") for r in reports],
            "parameters_total": reports[0].get("parameters"),
            "parameters_backbone": None,
            "tokens_per_second": tokens_per_second,
            "speedup": (tokens_per_second / t_speed if tokens_per_second and t_speed
                        else None),
            "workdirs": [r.get("_workdir") for r in reports],
        })
    return rows


def generation_markdown(rows: List[Dict[str, Any]], task: str) -> str:
    split = rows[0]["split"]
    seeds = max(len(r["values"]) for r in rows)
    over = f", mean ± std over {seeds} seeds" if seeds > 1 else ""
    lines = [
        f"Task: {task}; generation scores on {split} (x100{over}; in brackets: % of the "
        "teacher); speed: generated tokens per second.",
        "",
        "| model | role | ROUGE-1 | ROUGE-2 | ROUGE-L | BLEU-4 | params | tokens/s | speed-up |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        cells = []
        for m in GENERATION_METRICS:
            entry = r["metrics"][m]
            cell = _fmt(entry["value"], ".2f")
            if entry["std"] is not None:
                cell += f" ± {entry['std']:.2f}"
            if r["role"] != "teacher":
                cell += f" ({_fmt(entry['retention_pct'], '.1f')}%)"
            cells.append(cell)
        lines.append(f"| {r['model']} | {r['role']} | {' | '.join(cells)} "
                     f"| {_fmt(r['parameters_total'], ',')} "
                     f"| {_fmt(r['tokens_per_second'], '.1f')} | {_fmt(r['speedup'], '.2f')}x |")
    return "\n".join(lines) + "\n"


def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return "-" if value is None else str(value)


def metrics_table(metrics: Dict[str, Optional[Dict[str, Any]]]) -> List[str]:
    """Markdown lines of a run's metrics, `{split: {metric: value}}`: one row
    per split with metrics, one column per metric (4 decimals; "-" missing)."""
    names = sorted({m for values in metrics.values() if values for m in values})
    lines = ["| split | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for split, values in metrics.items():
        if values:
            lines.append(f"| {split} | " + " | ".join(_cell(values.get(m)) for m in names)
                         + " |")
    return lines


def comparison_markdown(rows: List[Dict[str, Any]], task: str) -> str:
    metric, split = rows[0]["metric"], rows[0]["split"]
    seeds = max(len(r["values"]) for r in rows)
    over = f" (mean ± std over {seeds} seeds)" if seeds > 1 else ""
    lines = [
        f"Task: {task}; metric: {metric} on {split}{over}; latency: ms/example, batched "
        "inference after warm-up.",
        "",
        f"| model | role | {metric} | retention % | params (backbone) | params (total) "
        "| latency ms/ex | speed-up |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        value = _fmt(r["value"], ".4f")
        if r["value_std"] is not None:
            value += f" ± {r['value_std']:.4f}"
        lines.append(
            f"| {r['model']} | {r['role']} | {value} "
            f"| {_fmt(r['retention_pct'], '.1f')} | {_fmt(r['parameters_backbone'], ',')} "
            f"| {_fmt(r['parameters_total'], ',')} | {_fmt(r['latency_ms_per_example'], '.3f')} "
            f"| {_fmt(r['speedup'], '.2f')}x |")
    return "\n".join(lines) + "\n"


def comparison_chart(rows: List[Dict[str, Any]], path: str, task: str) -> None:
    """Bar chart PNG (matplotlib, Agg backend) of the comparison rows; the
    metric panel has std error bars when there are several seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{i}: {model_slug(r['model'])}" for i, r in enumerate(rows)]
    colors = ["#4c72b0" if r["role"] == "teacher" else "#dd8452" for r in rows]
    panels = [
        (f"{rows[0]['metric']} ({rows[0]['split']})", [r["value"] for r in rows],
         [r["value_std"] or 0.0 for r in rows]),
        ("retention % of teacher", [r["retention_pct"] for r in rows], None),
        (("generated tokens / s", [r["tokens_per_second"] for r in rows], None)
         if "tokens_per_second" in rows[0] else
         ("latency ms / example", [r["latency_ms_per_example"] for r in rows], None)),
        ("parameters (millions)", [None if r["parameters_total"] is None
                                   else r["parameters_total"] / 1e6 for r in rows], None),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.2))
    for ax, (title, values, errors) in zip(axes, panels):
        vals = [0.0 if v is None else v for v in values]
        bars = ax.bar(range(len(vals)), vals, color=colors, yerr=errors,
                      capsize=4 if errors else 0)
        for b, v in zip(bars, values):
            ax.annotate("-" if v is None else f"{v:.3g}", (b.get_x() + b.get_width() / 2,
                        b.get_height()), ha="center", va="bottom", fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_xticks(range(len(vals)))
        ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    fig.suptitle(f"{task}: teacher vs students")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
