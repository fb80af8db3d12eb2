"""Runs that survive kills, signals, full disks and NaNs; bad config values."""

import json
import os
import resource
import signal
import subprocess
import sys
import time

import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from minilm_tf.utils.fileio import atomic_directory
from minilm_tf.training.distillation_config import check_resume_compatible, validate_config

from configs import demo_cpu
import crash_report
from locations import REPO_ROOT, TOOLS_DIR


def _tiny_args(corpus, steps, extra=()):
    return [
        f"--config.data.sources={corpus}",
        "--config.data.mode=lines",
        "--config.student.init=random",
        "--config.student.num_layers=1",
        "--config.student.hidden_dim=48",
        "--config.student.dropout=0.1",  # the seed state is checkpointed too
        "--config.train.batch_size=4",
        "--config.data.seq_length=32",
        "--config.data.heldout_fraction=0.2",
        "--config.train.log_every=1",
        "--config.train.checkpoint_every=2",
        "--config.train.warmup_steps=1",
        "--config.eval.heldout_batches=1",
        f"--config.train.steps={steps}",
        *extra,
    ]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    lines = [
        f"Sentence number {i} talks about {w} and the weather in town {i % 7}."
        for i, w in enumerate(["cats", "markets", "music", "football", "science"] * 40)
    ]
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _start(workdir, args, preexec_fn=None):
    return subprocess.Popen(
        [sys.executable, os.path.join(TOOLS_DIR, "distill.py"), f"--workdir={workdir}", *args],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=preexec_fn,
    )


def _run(workdir, args, preexec_fn=None):
    proc = _start(workdir, args, preexec_fn)
    out, _ = proc.communicate(timeout=600)
    return proc.returncode, out


def _student(workdir):
    return keras_hub.models.BertBackbone.from_preset(os.path.join(workdir, "student")).get_weights()


def test_killed_and_signalled_runs_resume_to_the_same_student(tmp_path, corpus, read_until):
    steps = 30  # long enough that SIGTERM lands during training
    args = _tiny_args(corpus, steps)
    code, out = _run(tmp_path / "straight", args)
    assert code == 0, crash_report.excerpt(out)

    workdir = tmp_path / "interrupted"
    proc = _start(workdir, args)
    read_until(proc, "Saved checkpoint")  # at step 2
    time.sleep(np.random.default_rng().uniform(0, 1.5))  # a random point after it
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    proc = _start(workdir, args)
    resumed = read_until(proc, "tokens/s")  # first step of the resumed run
    assert "Resumed from" in resumed
    proc.send_signal(signal.SIGTERM)  # preemption: save, then exit
    rest, _ = proc.communicate(timeout=600)
    assert proc.returncode == 130, crash_report.excerpt(rest)
    assert "Interrupted by signal 15" in rest
    saved_step = int(tf.train.latest_checkpoint(str(workdir / "checkpoints")).rsplit("-", 1)[1])
    assert saved_step >= 3  # saved where it stopped, not only at the interval

    code, out = _run(workdir, args)
    assert code == 0, crash_report.excerpt(out)
    assert f"at step {saved_step}" in out
    report = json.loads((workdir / "report.json").read_text())
    assert report["steps"] == steps and report["resumed_from_step"] == saved_step
    # Same seed, same data order (the data position is restored), same dropout
    # masks (the seed state is restored):
    # float32 CPU kernels are deterministic here, so only summation-order noise
    # may differ; 1e-5 relative bounds that with room to spare.
    for a, b in zip(_student(tmp_path / "straight"), _student(workdir)):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


def test_partial_checkpoint_is_ignored_and_full_disk_keeps_previous(tmp_path, corpus):
    workdir = tmp_path / "run"
    code, out = _run(workdir, _tiny_args(corpus, 2))
    assert code == 0, crash_report.excerpt(out)
    checkpoints = workdir / "checkpoints"
    # A write killed half-way leaves files the checkpoint index never names.
    (checkpoints / "ckpt-9.index").write_bytes(b"\x00garbage")
    (checkpoints / "ckpt-9.data-00000-of-00001").write_bytes(b"\x00" * 100)

    def small_disk():  # files larger than 4 MB fail to write, like a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4 << 20, 4 << 20))

    code, out = _run(workdir, _tiny_args(corpus, 4), preexec_fn=small_disk)
    assert code != 0
    assert "Resumed from" in out and "ckpt-2 at step 2" in out  # not the partial ckpt-9
    assert "Could not write checkpoint 4" in out
    assert "ckpt-2) is intact" in out
    latest = tf.train.latest_checkpoint(str(checkpoints))
    assert latest.endswith("ckpt-2")
    tf.train.load_checkpoint(latest)  # still readable


def test_nonfinite_loss_stops_with_message(tmp_path, corpus):
    extra = ["--config.train.learning_rate=1e12", "--config.train.clipnorm=0"]
    code, out = _run(tmp_path / "nan", _tiny_args(corpus, 6, extra))
    assert code != 0
    assert "The loss became non-finite at step" in out
    assert not (tmp_path / "nan" / "student").exists()


def _config(**changes):
    config = demo_cpu.get_config()
    for dotted, value in changes.items():
        *sections, key = dotted.split("__")
        node = config
        for section in sections:
            node = node[section]
        node[key] = value
    return config


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("train__batch_size", 0, "train.batch_size must be positive"),
        ("train__batch_size", -4, "train.batch_size must be positive"),
        ("train__steps", 0, "train.steps must be positive"),
        ("train__learning_rate", -1e-4, "train.learning_rate must be positive"),
        ("data__seq_length", 4, "too short"),
        ("data__heldout_fraction", 0.0, "heldout_fraction must be in"),
    ],
)
def test_bad_config_values(key, value, message):
    with pytest.raises(ValueError, match=message):
        validate_config(_config(**{key: value}))


def test_frozen_embeddings_need_copied_ones_and_old_runs_resume_unfrozen():
    with pytest.raises(ValueError, match="set student.init to teacher_layers or teacher_bottom"):
        validate_config(_config(student__freeze_embeddings=True, student__init="random"))
    validate_config(_config(student__freeze_embeddings=True))  # the demo's teacher_layers
    saved = demo_cpu.get_config().to_dict()
    del saved["student"]["freeze_embeddings"]  # a run saved before the key existed
    check_resume_compatible(saved, demo_cpu.get_config().to_dict())
    with pytest.raises(ValueError, match="student.freeze_embeddings: False .* True now"):
        check_resume_compatible(saved, _config(student__freeze_embeddings=True).to_dict())


def test_failed_start_does_not_pin_the_workdir_to_its_config(tmp_path, corpus):
    workdir = tmp_path / "run"
    code, out = _run(workdir, _tiny_args(corpus, 2, ["--config.data.seq_length=100000"]))
    assert code == 1
    assert "error: data.seq_length=100000 exceeds the teacher's position embeddings (512)" in out
    code, out = _run(workdir, _tiny_args(corpus, 2))  # the fixed command, same workdir
    assert code == 0, crash_report.excerpt(out)
    assert "different setup" not in out
    assert json.loads((workdir / "report.json").read_text())["steps"] == 2
    saved = json.loads((workdir / "run_config.json").read_text())
    assert saved["data"]["seq_length"] == 32


def test_incompatible_resume_names_the_mismatch():
    saved = demo_cpu.get_config().to_dict()
    new = _config(student__num_layers=4, data__seq_length=256).to_dict()
    with pytest.raises(ValueError, match="student.num_layers: 3 .* 4 now.*data.seq_length"):
        check_resume_compatible(saved, new)


def test_unset_keys_are_none_and_old_runs_with_zero_still_resume():
    new = demo_cpu.get_config().to_dict()
    assert new["num_relation_heads"] is None and new["student"]["intermediate_dim"] is None
    saved = demo_cpu.get_config().to_dict()
    saved["num_relation_heads"] = 0  # how earlier versions wrote "unset"
    saved["student"]["intermediate_dim"] = 0
    check_resume_compatible(saved, new)
    saved["num_relation_heads"] = 48
    with pytest.raises(ValueError, match="num_relation_heads: 48 .* None now"):
        check_resume_compatible(saved, new)
    for key, value in (("num_relation_heads", 0), ("student__intermediate_dim", -1)):
        with pytest.raises(ValueError, match="must be positive, or None"):
            validate_config(_config(**{key: value}))


def test_atomic_directory_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with atomic_directory(str(target)) as tmp:
            (tmp_path / "marker").write_text(tmp)
            raise RuntimeError("killed mid-write")
    assert not target.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["marker"]
    with atomic_directory(str(target)) as tmp:
        (os.path.join(tmp, "a") and open(os.path.join(tmp, "a"), "w").write("1"))
    with pytest.raises(FileExistsError):
        with atomic_directory(str(target)):
            pass


def test_keras_archive_with_lambda_is_refused(tmp_path):
    import keras

    from minilm_tf.utils.fileio import load_keras_archive

    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs))
    path = str(tmp_path / "evil.keras")
    model.save(path)
    with pytest.raises(ValueError, match="contains code .* never executes"):
        load_keras_archive(path)
    plain = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    plain.save(str(tmp_path / "ok.keras"))
    assert load_keras_archive(str(tmp_path / "ok.keras")).output_shape == (None, 2)


def test_resumed_run_drops_metrics_rows_after_its_checkpoint(tmp_path):
    """metrics.csv of a run killed at step 7 (last row cut short) resumed
    from step 4: rows 1..4 stay, the rest would be written again."""
    from minilm_tf.training.distillation_metrics import truncate_metrics

    path = tmp_path / "metrics.csv"
    rows = "".join(f"{s},0.001,100.0,{1.0 / s}\n" for s in range(1, 8))
    path.write_text("step,learning_rate,tokens_per_second,loss\n" + rows + "8,0.0")
    truncate_metrics(str(path), 4)
    assert path.read_text().splitlines() == (
        ["step,learning_rate,tokens_per_second,loss"]
        + [f"{s},0.001,100.0,{1.0 / s}" for s in range(1, 5)])
    truncate_metrics(str(path), 10)  # nothing after the checkpoint: unchanged
    assert len(path.read_text().splitlines()) == 5
    truncate_metrics(str(path), 0)  # a fresh start: the header comes back with the first row
    assert not path.exists()
    truncate_metrics(str(path), 0)  # no file: nothing to do
