"""tf.distribute: mirrored == one device; two real multi-worker processes agree."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from minilm_tf.training import distribute
from minilm_tf.training.distribute import make_strategy
from locations import HELPERS_DIR, REPO_ROOT

SCRIPT = os.path.join(HELPERS_DIR, "distributed_steps.py")


def _run(args, env=None, **kwargs):
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, **(env or {}))
    return subprocess.Popen([sys.executable, SCRIPT, *args], env=env, **kwargs)


def _weights(path):
    data = np.load(path)
    return data, [data[f"w{i}"] for i in range(len([k for k in data if k.startswith("w")]))]


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_mirrored_over_two_cpus_matches_one_device(tmp_path, optimizer):
    # adamw: the fused AdamW of `tools/distill.py` updates each replica's copy.
    one, two = str(tmp_path / "one.npz"), str(tmp_path / "two.npz")
    procs = [_run(["default", one, "1", optimizer]), _run(["mirrored", two, "2", optimizer])]
    assert [p.wait(timeout=600) for p in procs] == [0, 0]
    (d1, w1), (d2, w2) = _weights(one), _weights(two)
    assert int(d2["replicas"]) == 2 and int(d1["replicas"]) == 1
    np.testing.assert_allclose(d2["loss"], d1["loss"], rtol=1e-5)
    for a, b in zip(w1, w2):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    # The weights did move: equality is not trivial.
    assert any(not np.allclose(a, b) for a, b in zip(w1, _initial_student()))


def _initial_student():
    import keras
    import keras_hub

    keras.utils.set_random_seed(2)
    model = keras_hub.models.BertBackbone(
        vocabulary_size=100, num_layers=2, num_heads=4, hidden_dim=16, intermediate_dim=32,
        max_sequence_length=16, dropout=0.0, name="student",
    )
    return model.get_weights()


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_multi_worker_two_processes_end_identical(tmp_path):
    workers = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    procs = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        procs.append(
            _run(
                ["multi_worker", str(tmp_path / f"w{index}.npz"), "1", "adamw"],
                env={"TF_CONFIG": json.dumps(tf_config)},
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            )
        )
    try:
        codes = [p.wait(timeout=600) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert codes == [0, 0], [p.stdout.read().decode()[-2000:] for p in procs]
    (d0, w0), (d1, w1) = _weights(tmp_path / "w0.npz"), _weights(tmp_path / "w1.npz")
    assert int(d0["replicas"]) == 2
    for a, b in zip(w0, w1):
        np.testing.assert_array_equal(a, b)
    single = str(tmp_path / "single.npz")
    assert _run(["default", single, "1", "adamw"]).wait(timeout=600) == 0
    np.testing.assert_allclose(d0["loss"], _weights(single)[0]["loss"], rtol=1e-5)


def test_strategy_argument_errors(monkeypatch):
    with pytest.raises(ValueError, match="Unknown strategy 'gpu'"):
        make_strategy("gpu")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="TF_CONFIG"):
        make_strategy("multi_worker")
    with pytest.raises(RuntimeError, match="No TPU reachable"):
        make_strategy("tpu", "grpc://127.0.0.1:1")


def test_resolve_jit_compile(monkeypatch):
    resolve = distribute.resolve_jit_compile
    assert resolve(True) is True and resolve("FALSE") is False
    monkeypatch.setattr(distribute._compat, "onednn_enabled", lambda: True)
    assert resolve("auto") is False  # no GPU/TPU in tests: oneDNN's CPU matmuls win
    assert resolve("true") is True
    monkeypatch.setattr(distribute._compat, "onednn_enabled", lambda: False)
    assert resolve("auto") is True
    with pytest.raises(ValueError, match="jit_compile must be one of"):
        resolve("yes")
