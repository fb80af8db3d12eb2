"""Teacher assistant: the paper's rule, the Python chain and the two-stage tool run."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import random_batch, tiny_encoder
from minilm_tf import build_student
from minilm_tf.training.assistant import choose_route, distill_via_assistant, needs_assistant
from locations import REPO_ROOT, TOOLS_DIR



@pytest.mark.parametrize(
    "student,expected",
    [((3, 384), True), ((6, 384), True), ((3, 768), False), ((6, 512), False), ((7, 384), False)],
)
def test_paper_rule_for_bert_base(student, expected):
    assert needs_assistant(12, 768, *student) is expected


def test_route_messages():
    config = {"teacher": "all-minilm-l6-v2", "student": {"num_layers": 3, "hidden_dim": 192}}
    use, why = choose_route(config, "auto")
    assert use and "6x192 assistant" in why
    config["student"]["hidden_dim"] = 384
    use, why = choose_route(config, "auto")
    assert not use and why.startswith("direct route")
    assert choose_route(config, "off") == (False, "direct route (assistant off)")
    with pytest.raises(ValueError, match="assistant must be one of"):
        choose_route(config, "maybe")


def test_python_chain_trains_assistant_then_student():
    teacher = tiny_encoder(num_layers=4, hidden_dim=32, num_heads=4, seed=1)
    student = build_student(teacher, num_layers=2, hidden_dim=16, num_heads=4, seed=2)
    before = [w.numpy().copy() for w in student.backbone.weights]
    data = tf.data.Dataset.from_tensors(random_batch(batch=4, length=10)).repeat()
    assistant = distill_via_assistant(
        teacher, student, data, steps_per_stage=3,
        make_optimizer=lambda: keras.optimizers.Adam(1e-3),
    )
    assert (assistant.backbone.num_layers, assistant.backbone.hidden_dim) == (4, 16)
    changed = [not np.array_equal(b, w.numpy()) for b, w in zip(before, student.backbone.weights)]
    assert any(changed)


@pytest.mark.slow  # four real distillation runs; the Python chain above runs by default
def test_tool_assistant_auto_two_stages_and_resume(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"Line {i} about topic {i % 9} and more words." for i in range(300)))
    args = [
        sys.executable, os.path.join(TOOLS_DIR, "distill.py"), f"--workdir={tmp_path / 'run'}",
        "--assistant=auto", f"--config.data.sources={corpus}", "--config.data.mode=lines",
        "--config.student.init=random",
        "--config.student.num_layers=2", "--config.student.hidden_dim=96",
        "--config.student.num_heads=12", "--config.train.batch_size=2",
        "--config.data.seq_length=16", "--config.train.steps=4", "--config.train.log_every=2",
        "--config.train.checkpoint_every=2", "--config.eval.heldout_batches=1",
        "--config.data.heldout_fraction=0.2",
    ]
    first = subprocess.run(args, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "assistant route" in first.stdout and "6x96 assistant" in first.stdout
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["route"] == "assistant"
    assert report["stage1"]["steps"] == 2 and report["stage2"]["steps"] == 2
    assert report["heldout_loss_vs_teacher"]["loss"] > 0
    stage1 = json.loads((tmp_path / "run" / "stage1_assistant" / "report.json").read_text())
    assert stage1["student_params"] > report["student_params"]

    again = subprocess.run(args, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "stage1_assistant/checkpoints/ckpt-2 at step 2" in again.stderr
    assert "Distilling" not in again.stderr  # neither stage trains again
