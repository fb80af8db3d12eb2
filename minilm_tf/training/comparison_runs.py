"""The runs of a teacher-vs-students comparison (tools/compare.py).

Every model is fine-tuned once per seed into
`<workdir>/runs/<i>-<name>/` (with seeds: `.../seed<S>/`) by a function the
caller gives (classification, regression and QA: `run_finetune`; generation:
`run_seq2seq`); runs whose `report.json` exists are reused when asked. The
table (`compare.json`, `compare.md`) and its chart (`compare.png`) are
written atomically next to the runs.
"""

import gc
import json
import os
from typing import Any, Callable, Dict, List, Optional, Sequence

from minilm_tf.tasks.comparison import comparison_chart, model_slug
from minilm_tf.tasks.finetuned import REPORT_FILE
from minilm_tf.utils.fileio import atomic_write_json, atomic_write_text

RUNS_DIR = "runs"
OUTPUT_FILES = ("compare.json", "compare.md", "compare.png")

FineTune = Callable[[str, str, Optional[int]], Dict[str, Any]]


def check_outputs(workdir: str, overwrite: bool) -> None:
    """Refuses a work directory that already holds a comparison table."""
    if not overwrite and any(os.path.exists(os.path.join(workdir, n)) for n in OUTPUT_FILES):
        raise FileExistsError(f"{workdir} already holds a comparison; use a new `workdir` or "
                              "pass `overwrite=True`.")


def run_dir(workdir: str, index: int, spec: str, seed: Optional[int]) -> str:
    model_dir = os.path.join(workdir, RUNS_DIR, f"{index}-{model_slug(spec)}")
    return model_dir if seed is None else os.path.join(model_dir, f"seed{seed}")


def fine_tune_each(workdir: str, models: Sequence[str], seeds: Optional[Sequence[int]],
                   fine_tune: FineTune, reuse_runs: bool = False,
                   log: Callable[[str], None] = print) -> List[List[Dict[str, Any]]]:
    """`runs[i]`: model `i`'s reports, one per seed (`seeds` None: one run
    with the recipe's seed). `fine_tune(spec, run_dir, seed)` returns a
    report; its `_`-prefixed keys are dropped and `_workdir` is set."""
    import keras

    runs = []
    for i, spec in enumerate(models):
        reports = []
        for seed in seeds or [None]:
            directory = run_dir(workdir, i, spec, seed if seeds else None)
            report_path = os.path.join(directory, REPORT_FILE)
            if reuse_runs and os.path.exists(report_path):
                log(f"reusing {report_path}")
                with open(report_path, encoding="utf-8") as f:
                    report = json.load(f)
            else:
                log(f"[{i + 1}/{len(models)}] fine-tuning {spec}"
                    + ("" if seed is None else f" (seed {seed})"))
                report = fine_tune(spec, directory, seed)
                report = {k: v for k, v in report.items() if not k.startswith("_")}
                keras.backend.clear_session()
                gc.collect()
            report["_workdir"] = directory
            reports.append(report)
        runs.append(reports)
    return runs


def write_comparison(workdir: str, task: str, models: Sequence[str], rows,
                     table: str) -> List[str]:
    """Writes compare.json, compare.md and compare.png; returns their paths."""
    paths = [os.path.join(workdir, n) for n in OUTPUT_FILES]
    atomic_write_json(paths[0], {"task": task, "teacher": models[0], "rows": rows})
    atomic_write_text(paths[1], table)
    comparison_chart(rows, paths[2], task)
    return paths
