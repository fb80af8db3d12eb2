"""tools/kill_campaign.py: 20 SIGKILLs across a distillation and a fine-tuning
run, resumed each time (slow: about 25 process starts)."""

import json
import os
import re
import subprocess
import sys

import keras_hub
import numpy as np
import pytest
from locations import REPO_ROOT, TOOLS_DIR



@pytest.mark.slow
def test_twenty_kills_lose_nothing(tmp_path):
    workdir = tmp_path / "campaign"
    proc = subprocess.run(
        [sys.executable, os.path.join(TOOLS_DIR, "kill_campaign.py"),
         f"--workdir={workdir}", "--kills=20", "--seed=0"],
        capture_output=True, text=True, timeout=3600, cwd=REPO_ROOT,
        env=dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    check_campaign(workdir)


def check_campaign(workdir):
    """The campaign's own verdict, then its figures checked independently."""
    summary = json.loads((workdir / "campaign.json").read_text())
    assert summary["ok"] and summary["failures"] == []
    distill, finetune = summary["distillation"], summary["fine-tuning"]

    # Twenty sessions really died of SIGKILL, some of them mid-write.
    killed = [r for part in (distill, finetune) for r in part["records"]
              if not r["finished_first"]]
    assert len(killed) == 20 and all(r["returncode"] == -9 for r in killed)
    assert sum(r["killed_mid_write"] for r in killed) >= 1
    assert {r["aim"] for r in killed} >= {"random", "checkpoint write",
                                         "after the last checkpoint"}

    # The figures agree with the logs (read here, independently of the tool):
    # the last step a killed session logged, and where the next one resumed.
    for part, step_re, resume_re in (
            (distill, r"\] step (\d+)/", r"Resumed from \S+ at step (\d+)\."),
            (finetune, r"\] epoch (\d+) step (\d+)/",
             r"resuming from \S+: epoch (\d+), batch (\d+)")):
        spe = part["interval"] if part is finetune else None
        records = part["records"]
        logs = [r["log"] for r in records[1:]] + [
            os.path.join(os.path.dirname(records[0]["log"]), "final.log")]
        for record, next_log in zip(records, logs):
            text, following = open(record["log"]).read(), open(next_log).read()
            steps = [int(m.group(1)) if spe is None else
                     (int(m.group(1)) - 1) * spe + int(m.group(2))
                     for m in re.finditer(step_re, text)]
            match = re.search(resume_re, following)
            resumed = 0 if not match else (int(match.group(1)) if spe is None else
                                           (int(match.group(1)) - 1) * spe + int(match.group(2)))
            assert record["last_step_logged"] == max(steps, default=0)
            assert record["resumed_from"] == resumed
            assert 0 <= max(steps, default=0) - resumed <= part["interval"]

    # Final weights: the same as the uninterrupted runs, loaded with keras-hub.
    pairs = [(keras_hub.models.Backbone, "student", distill),
             (keras_hub.models.TextClassifier, "model", finetune)]
    for cls, subdir, part in pairs:
        a = cls.from_preset(os.path.join(part["straight"], subdir)).get_weights()
        b = cls.from_preset(os.path.join(part["killed"], subdir)).get_weights()
        assert len(a) == len(b) > 0
        for x, y in zip(a, b):
            np.testing.assert_allclose(y, x, rtol=1e-5, atol=1e-6)

    # Nothing partial left: no temporary names, no lock, every checkpoint
    # file named by the index, metrics.csv with each step once.
    for part in (distill, finetune):
        for directory, dirs, files in os.walk(part["killed"]):
            for name in dirs + files:
                assert not (name.endswith("_temp") or name.startswith(".tmp")
                            or ".tmp-" in name or name.endswith(".lock")
                            or name.startswith("checkpoint.tmp")), os.path.join(directory, name)
    index = (workdir / "distillation_killed" / "checkpoints" / "checkpoint").read_text()
    named = set(re.findall(r'all_model_checkpoint_paths: "([^"]+)"', index))
    for path in (workdir / "distillation_killed" / "checkpoints").glob("ckpt-*"):
        assert path.name.split(".")[0] in named
    report = workdir / "distillation_uninterrupted" / "report.json"
    steps = json.loads(report.read_text())["steps"]
    rows = (workdir / "distillation_killed" / "metrics.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == list(range(1, steps + 1))
    assert not (workdir / "finetuning_killed" / "checkpoints").exists()
