"""tools/kill_campaign.py's checks of a finished campaign: the killed run's
final weights against the uninterrupted run's, steps lost per kill, files
left behind, metrics.csv rows."""

import glob
import json
import os
import re


def compare_weights(a_dir: str, b_dir: str, rtol: float, atol: float) -> dict:
    """Every array of every *.weights.h5 in the two directories, float arrays
    within |a - b| <= atol + rtol * |b|."""
    import h5py
    import numpy as np

    names = sorted(os.path.basename(p) for p in glob.glob(os.path.join(a_dir, "*.weights.h5")))
    worst, arrays, bad = 0.0, 0, []
    for name in names:
        with h5py.File(os.path.join(a_dir, name)) as fa, h5py.File(os.path.join(b_dir, name)) as fb:
            paths = []
            fa.visititems(lambda p, o: paths.append(p) if isinstance(o, h5py.Dataset) else None)
            for path in paths:
                x, y = np.asarray(fa[path]), np.asarray(fb[path])
                arrays += 1
                if x.shape != y.shape:
                    bad.append(f"{name}:{path} shape {y.shape} != {x.shape}")
                    continue
                if x.size and x.dtype.kind == "f":
                    worst = max(worst, float(np.max(np.abs(x - y))))
                    if not np.allclose(y, x, rtol=rtol, atol=atol):
                        bad.append(f"{name}:{path} differs")
                elif not np.array_equal(x, y):
                    bad.append(f"{name}:{path} differs")
    return {"files": names, "arrays": arrays, "max_abs_diff": worst, "mismatches": bad}


def leftovers(workdir: str) -> list[str]:
    """Temporary names, lock files and checkpoint files the index does not name."""
    from minilm_tf.utils import workdir as workdirs

    found = []
    for directory, dirnames, filenames in os.walk(workdir):
        for name in dirnames + filenames:
            if (workdirs.is_temporary(name, name in dirnames) or name == workdirs.LOCK_FILE
                    or name.endswith(".lock")):
                found.append(os.path.relpath(os.path.join(directory, name), workdir))
    index = os.path.join(workdir, "checkpoints", "checkpoint")
    if os.path.exists(index):
        with open(index, encoding="utf-8") as f:
            named = set(re.findall(r'all_model_checkpoint_paths: "([^"]+)"', f.read()))
        for path in glob.glob(os.path.join(glob.escape(workdir), "checkpoints", "ckpt-*")):
            if os.path.basename(path).split(".")[0] not in named:
                found.append(os.path.relpath(path, workdir))
    return sorted(found)


def metrics_steps_problem(workdir: str, total: int) -> str | None:
    path = os.path.join(workdir, "metrics.csv")
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        steps = [int(line.split(",", 1)[0]) for line in f.read().splitlines()[1:]]
    if steps != list(range(1, total + 1)):
        return f"metrics.csv steps are not 1..{total} once each: {steps}"
    return None


def check(tool, result: dict, model_subdir: str, rtol: float, atol: float) -> list[str]:
    """What went wrong in one tool's campaign `result` (a `kill_campaign.Tool`
    run killed and straight); records the measurements in `result`."""
    failures = []
    weights = compare_weights(os.path.join(result["straight"], model_subdir),
                              os.path.join(result["killed"], model_subdir), rtol, atol)
    result["weights"] = weights
    if not weights["files"] or weights["mismatches"]:
        failures.append(f"{tool.name}: final weights differ: {weights['mismatches'][:5]}")
    lost = [r["steps_lost"] for r in result["records"] if not r["finished_first"]]
    result.update(kills=sum(not r["finished_first"] for r in result["records"]),
                  kills_mid_write=sum(r["killed_mid_write"] for r in result["records"]),
                  interval=tool.interval, steps_lost=lost, max_steps_lost=max(lost, default=0))
    if result["max_steps_lost"] > tool.interval:
        failures.append(f"{tool.name}: a kill lost {result['max_steps_lost']} steps, more than "
                        f"the checkpoint interval ({tool.interval})")
    result["leftovers"] = leftovers(result["killed"])
    if result["leftovers"]:
        failures.append(f"{tool.name}: left behind {result['leftovers']}")
    if tool.name == "fine-tuning" and os.path.exists(os.path.join(result["killed"], "checkpoints")):
        failures.append("fine-tuning: checkpoints/ left after the finished run")
    problem = metrics_steps_problem(result["killed"], tool.total_steps)
    if problem:
        failures.append(f"{tool.name}: {problem}")
    with open(os.path.join(result["straight"], "report.json"), encoding="utf-8") as f:
        a = json.load(f)
    with open(os.path.join(result["killed"], "report.json"), encoding="utf-8") as f:
        b = json.load(f)
    if tool.name == "fine-tuning":
        same = [h.get("validation_accuracy") for h in a["history"]] == [
            h.get("validation_accuracy") for h in b["history"]]
        result["same_validation_history"] = same
        if not same:
            failures.append("fine-tuning: the validation history differs")
    elif b["steps"] != tool.total_steps:
        failures.append(f"distillation: report says {b['steps']} steps")
    return failures
