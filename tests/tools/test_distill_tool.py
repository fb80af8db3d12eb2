"""tools/distill.py end to end on a tiny run: outputs, resume, config errors."""

import json
import os
import resource
import shlex
import signal
import subprocess
import sys

import keras_hub
import numpy as np
import pytest
import crash_report
from locations import REPO_ROOT, TOOLS_DIR

TINY = [
    "--config.student.init=random",
    "--config.data.sources=builtin:bbc_news",
    "--config.student.num_layers=1",
    "--config.student.hidden_dim=48",
    "--config.train.batch_size=4",
    "--config.data.seq_length=32",
    "--config.train.log_every=2",
    "--config.train.checkpoint_every=2",
    "--config.train.warmup_steps=1",
    "--config.eval.heldout_batches=2",
    "--config.data.shuffle_buffer=64",
]


def distill(workdir, *args, check=True, preexec_fn=None):
    result = subprocess.run(
        [sys.executable, os.path.join(TOOLS_DIR, "distill.py"), f"--workdir={workdir}", *args],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=600, preexec_fn=preexec_fn,
    )
    if check and result.returncode != 0:
        raise AssertionError(result.stdout + crash_report.excerpt(result.stderr))
    return result


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("distill")
    first = distill(workdir, *TINY, "--config.train.steps=4")
    return workdir, first


def test_run_writes_student_report_events_and_plot(finished_run):
    workdir, first = finished_run
    assert "held-out distillation loss" in first.stdout
    assert "ran out of data" not in first.stderr  # the evaluations know their length
    assert "cudart_stub" not in first.stderr and "XLA service" not in first.stderr
    report = json.loads((workdir / "report.json").read_text())
    assert report["steps"] == 4 and report["tokens_seen"] == 4 * 4 * 32
    for key in ("wall_time_s", "tokens_per_second", "heldout_loss_before", "heldout_loss_after"):
        assert report[key]
    assert set(report["final_train_losses"]) >= {"loss", "attention_loss", "value_relation_loss"}
    events = [f for _, _, fs in os.walk(workdir / "tensorboard") for f in fs if "tfevents" in f]
    assert events
    assert (workdir / "loss_curves.png").read_bytes()[:4] == b"\x89PNG"
    student = keras_hub.models.BertBackbone.from_preset(str(workdir / "student"))
    assert student.num_layers == 1 and student.hidden_dim == 48
    ids = np.array([[101, 2023, 102]], "int32")
    out = student({"token_ids": ids, "segment_ids": ids * 0, "padding_mask": ids * 0 + 1})
    assert out["sequence_output"].shape == (1, 3, 48)


def test_rerun_resumes_instead_of_restarting(finished_run):
    workdir, _ = finished_run
    second = distill(workdir, *TINY, "--config.train.steps=6")
    assert "Resumed from" in second.stderr and "at step 4" in second.stderr
    report = json.loads((workdir / "report.json").read_text())
    assert report["steps"] == 6 and report["resumed_from_step"] == 4
    assert report["steps_this_session"] == 2


def test_incompatible_restart_refuses(finished_run):
    workdir, _ = finished_run
    result = distill(workdir, *TINY, "--config.student.hidden_dim=96", check=False)
    assert result.returncode != 0
    assert "student.hidden_dim: 48 in the saved run, 96 now" in result.stderr


def test_unknown_config_key_is_a_clear_error(tmp_path):
    result = distill(tmp_path, "--config.train.stepz=3", check=False)
    assert result.returncode != 0
    assert "unknown config key" in result.stderr and "stepz" in result.stderr


def test_unknown_config_key_error_names_only_the_bad_key(tmp_path):
    result = distill(tmp_path, "--config.train.steps=3", "--config.trian.lr=1",
                     "--config.data.seq_length=16", check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        'error: unknown config key --config.trian.lr (did you mean "train"?); '
        "configs/base.py lists every valid key."
    )
    nested = distill(tmp_path, "--config.train.steps.x=1", "--config.data.mode=lines",
                     check=False)
    assert nested.stderr.strip().splitlines()[-1] == (
        "error: unknown config key --config.train.steps.x; configs/base.py lists every valid key."
    )


def test_invalid_value_is_a_clear_error(tmp_path):
    result = distill(tmp_path, *TINY, "--config.train.steps=0", check=False)
    assert "train.steps must be positive, got 0" in result.stderr


def test_bad_jit_compile_value_is_a_one_line_error(tmp_path):
    result = distill(tmp_path, *TINY, "--config.train.jit_compile=maybe", check=False)
    assert result.returncode == 1
    assert "error: train.jit_compile must be one of ('auto', 'true', 'false')" in result.stderr
    assert "Traceback" not in result.stderr


def test_objective_none_publishes_the_initialised_student(tmp_path, all_minilm):
    result = distill(tmp_path, *TINY, "--config.objective=none",
                     "--config.student.hidden_dim=384", "--config.student.init=teacher_bottom")
    assert "no distillation (objective 'none')" in result.stdout
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["steps"] == 0 and report["heldout_loss_after"] is None
    assert report["student_init"]["teacher_layers"] == [0]
    student = keras_hub.models.BertBackbone.from_preset(str(tmp_path / "student"))
    for a, b in zip(student.transformer_layers[0].get_weights(),
                    all_minilm.backbone.transformer_layers[0].get_weights()):
        np.testing.assert_array_equal(a, b)
    assert not (tmp_path / "checkpoints").exists()


def test_composite_objective_with_projection_resumes(tmp_path):
    objective = "--config.objective=minilm+300*embedding_mse"
    distill(tmp_path, *TINY, objective, "--config.train.steps=2")
    second = distill(tmp_path, *TINY, objective, "--config.train.steps=4")
    assert "at step 2" in second.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["steps"] == 4
    assert set(report["heldout_loss_after"]) == {
        "loss", "attention_loss", "value_relation_loss", "embedding_mse_loss"}
    bbc = report["corpus"]["sources"]["builtin:bbc_news"]
    assert bbc["documents"] == 1777 and bbc["tokens"] > 800_000  # the task's train articles


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("".join(
        f"Sentence number {i} talks about {w} and the weather in town {i % 7}.\n"
        for i, w in enumerate(["cats", "markets", "music", "football", "science"] * 40)
    ))
    return str(path)


def _small(corpus, steps):
    """TINY on a 200-line corpus file instead of the 2225 bbc_news articles."""
    return [a for a in TINY if not a.startswith("--config.data.sources=")] + [
        f"--config.data.sources={corpus}", "--config.data.mode=lines",
        "--config.data.heldout_fraction=0.2", "--config.eval.heldout_batches=1",
        f"--config.train.steps={steps}",
    ]


def test_full_disk_during_checkpoint_is_a_one_line_error(tmp_path, small_corpus):
    def small_disk():  # files larger than 4 MB fail to write, like a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4 << 20, 4 << 20))

    result = distill(tmp_path, *_small(small_corpus, 2), check=False, preexec_fn=small_disk)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Could not write checkpoint 2" in errors[0]
    assert "free disk space and rerun the same command to resume" in errors[0]


def test_next_command_is_quoted_and_uses_this_interpreter(tmp_path, small_corpus):
    workdir = tmp_path / "my run; dir"
    result = distill(workdir, *_small(small_corpus, 2))
    lines = result.stdout.splitlines()
    command = shlex.split(lines[lines.index("next: fine-tune and evaluate the student with") + 1])
    assert command[:2] == [sys.executable, os.path.join(TOOLS_DIR, "finetune.py")]
    args = dict(zip(command[2::2], command[3::2]))
    assert args == {
        "--model": str(workdir / "student"),
        "--task": "rotten_tomatoes",
        "--pooling": "auto",
        "--learning_rate": "1e-4",
        "--sequence_length": "64",
        "--workdir": str(workdir / "finetune_rotten_tomatoes"),
    }
    assert (workdir / "student" / "config.json").is_file()
    report = json.loads((workdir / "report.json").read_text())
    card = (workdir / "student" / "README.md").read_text()  # the student's model card
    after = report["heldout_loss_after"]["loss"]
    assert f"`{report['config']['objective']}`" in card and "| loss |" in card
    assert f"{after:.4f} |" in card and f"{report['tokens_seen']:,} tokens" in card
