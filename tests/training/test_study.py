"""tools/study.py end to end on a tiny teacher: table, JSON, charts, resume after SIGKILL."""

import json
import os
import signal
import subprocess
import sys

import keras
import keras_hub
import pytest

from minilm_tf.models.encoders import LoadedEncoder, save_encoder
from minilm_tf.training import study

from locations import REPO_ROOT, TOOLS_DIR
from toy_tasks import toy_rows, vocab_path, write_jsonl

ROWS = "none/teacher_layers,minilm/teacher_layers"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    keras.utils.set_random_seed(0)
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocab_path(), lowercase=True)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=tokenizer.vocabulary_size(), num_layers=2, num_heads=2,
        hidden_dim=32, intermediate_dim=64, max_sequence_length=64)
    save_encoder(LoadedEncoder(backbone, tokenizer, "tiny", "gelu_approximate"),
                 str(root / "teacher"))
    task = root / "toy"
    task.mkdir()
    for split, n, seed in (("train", 48, 0), ("validation", 16, 1), ("test", 16, 2)):
        write_jsonl(task / f"{split}.jsonl", toy_rows(n, seed))
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(r["text"] for r in toy_rows(200, 3)))
    return root


def _command(root, workdir):
    return [
        sys.executable, os.path.join(TOOLS_DIR, "study.py"), f"--workdir={workdir}",
        "--config", os.path.join(REPO_ROOT, "configs", "base.py"),
        f"--config.teacher={root / 'teacher'}", f"--config.data.sources={root / 'corpus.txt'}",
        "--config.data.mode=lines", "--config.student.num_layers=1",
        "--config.student.hidden_dim=32", "--config.student.num_heads=2",
        "--config.train.batch_size=4", "--config.data.seq_length=16",
        "--config.train.warmup_steps=1", "--config.eval.heldout_batches=1",
        "--config.data.shuffle_buffer=16", "--config.data.heldout_fraction=0.2",
        f"--rows={ROWS}", f"--tasks=toy={root / 'toy'}", "--seeds=0,1", "--steps=2",
        "--budgets=1", "--curve_row=minilm/teacher_layers",
        "--epochs=1", "--sequence_length=16", "--max_train_examples=32",
    ]


def test_study_writes_table_charts_and_resumes_after_sigkill(setup, read_until):
    workdir = setup / "run"
    proc = subprocess.Popen(_command(setup, workdir), cwd=REPO_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    # Killed while the second model fine-tunes: the teacher's run is finished.
    read_until(proc, "fine-tuning none__teacher_layers on toy (seed 0)")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    teacher_report = workdir / "finetune" / "toy" / "teacher" / "seed0" / "report.json"
    assert teacher_report.exists()
    stamp = teacher_report.stat().st_mtime_ns

    result = subprocess.run(_command(setup, workdir), cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert teacher_report.stat().st_mtime_ns == stamp  # reused, not run again
    assert "fine-tuning teacher on toy (seed 0)" not in result.stderr

    table = json.loads((workdir / "study.json").read_text())
    assert [r["model"] for r in table["rows"]] == ["teacher", *ROWS.split(",")]
    for row in table["rows"]:
        entry = row["tasks"]["toy"]
        slug = "teacher" if row["model"] == "teacher" else study.parse_rows([row["model"]])[0].slug
        values = [json.loads((workdir / "finetune" / "toy" / slug / f"seed{s}" / "report.json")
                             .read_text())["test_metric"] for s in (0, 1)]
        assert entry["values"] == values
        assert entry["mean"] == pytest.approx(sum(values) / 2)
        teacher_mean = table["rows"][0]["tasks"]["toy"]["mean"]
        assert entry["retention_pct"] == pytest.approx(100 * entry["mean"] / teacher_mean)
    distilled = {r["model"]: r.get("distillation") for r in table["rows"]}
    assert distilled["none/teacher_layers"]["steps"] == 0
    assert distilled["minilm/teacher_layers"]["steps"] == 2
    assert distilled["minilm/teacher_layers"]["teacher_layers_copied"] == [0]
    markdown = (workdir / "study.md").read_text()
    assert "| minilm/teacher_layers |" in markdown and "vs none/teacher_layers" in markdown
    verdict = table["verdicts"]["toy"]["against_baseline"]
    assert [v["model"] for v in verdict] == ["minilm/teacher_layers"]
    assert verdict[0]["seeds_paired"] == 2
    assert f"  - `minilm/teacher_layers`: {verdict[0]['points']:+.2f} pts" in markdown
    for png in ("study.png", "curve.png"):
        assert (workdir / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    curve = json.loads((workdir / "curve.json").read_text())
    assert [p["steps"] for p in curve["points"]] == [0, 1, 2]
    assert all(p["tasks"]["toy"]["n"] == 2 for p in curve["points"])


def test_study_refuses_other_settings_in_the_same_workdir(setup):
    workdir = setup / "run"
    command = [a for a in _command(setup, workdir) if not a.startswith("--epochs")]
    result = subprocess.run(command + ["--epochs=2"], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 1
    assert "error: The work directory holds a study with other settings (finetune)" in result.stderr
    assert "Traceback" not in result.stderr


def test_rows_and_tasks_parse_with_clear_errors(tmp_path):
    rows = study.parse_rows(["minilm+300*embedding_mse/teacher_layers", "none/random"])
    assert rows[0].objective == "minilm+300*embedding_mse" and rows[0].init == "teacher_layers"
    assert rows[0].slug == "minilm_300_embedding_mse__teacher_layers"
    for bad, message in [("minilm", "OBJECTIVE/INIT"), ("minilm/copy", "init must be one of"),
                         ("attention/random", "Unknown objective")]:
        with pytest.raises(ValueError, match=message):
            study.parse_rows([bad])
    with pytest.raises(ValueError, match="listed twice"):
        study.parse_rows(["none/random", "none/random"])
    with pytest.raises(FileNotFoundError, match="no train.jsonl"):
        study.parse_tasks([f"mine={tmp_path}"])[0].files()


def test_a_study_saved_before_a_recipe_setting_existed_resumes(tmp_path):
    """A saved identity without `train.fast_paths` matches the value that reproduces it."""
    from configs import base

    config = study.StudyConfig(distill=base.get_config(), rows=study.parse_rows(ROWS.split(",")),
                               tasks=study.parse_tasks(["rotten_tomatoes"]), seeds=[0], steps=2)
    saved = config.identity()
    del saved["distill"]["train"]["fast_paths"]
    (tmp_path / study.STUDY_CONFIG).write_text(json.dumps(saved))
    study._check_identity(str(tmp_path), config)  # accepted
    config.distill.train.fast_paths = "false"
    with pytest.raises(ValueError, match=r"other settings \(distill\)"):
        study._check_identity(str(tmp_path), config)


# Slow (a second whole study): the task-stage step itself is
# test_finetune.py::test_task_stage_distillation_follows_the_teacher.
@pytest.mark.slow
def test_study_with_task_stage_distillation_uses_each_seeds_teacher(setup):
    """--kd_alpha: each student's fine-tune learns from the teacher's
    fine-tune of the same task and seed (kept as a model for that)."""
    workdir = setup / "kd"
    command = [a for a in _command(setup, workdir)
               if not a.startswith(("--rows", "--budgets", "--curve_row"))]
    command += ["--rows=none/teacher_layers", "--kd_alpha=0.7", "--kd_temperature=3"]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    for seed in (0, 1):
        teacher_dir = workdir / "finetune" / "toy" / "teacher" / f"seed{seed}"
        assert (teacher_dir / "model" / "labels.json").exists()
        student = json.loads((workdir / "finetune" / "toy" / "none__teacher_layers"
                              / f"seed{seed}" / "report.json").read_text())
        kd = student["task_distillation"]
        assert kd["teacher_run"] == str(teacher_dir)
        assert (kd["alpha"], kd["temperature"]) == (0.7, 3.0)
        assert "task_distillation" not in json.loads((teacher_dir / "report.json").read_text())
    identity = json.loads((workdir / study.STUDY_CONFIG).read_text())
    assert identity["task_distillation"] == {"kd_alpha": 0.7, "kd_temperature": 3.0}
    again = subprocess.run([a for a in command if not a.startswith("--kd_alpha")],
                           cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 1 and "other settings (task_distillation)" in again.stderr
