"""Seq2SeqLM under mixed precision and tf.distribute (two logical CPUs)."""

import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402
from locations import REPO_ROOT  # noqa: E402


_SCRIPT = r"""
import json, sys
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras, keras_hub
from minilm_tf.tasks.generation.losses import SmoothedTokenCrossEntropy
from minilm_tf.tasks.generation.model import Seq2SeqLM
from minilm_tf.training.distribute import make_strategy

policy = sys.argv[1]
rng = np.random.default_rng(0)
src = rng.integers(5, 30, size=(8, 6)).astype(np.int32)
tgt = rng.integers(5, 30, size=(8, 5)).astype(np.int32)
labels = rng.integers(5, 30, size=(8, 5)).astype(np.int32)
labels[:, 4] = -100
x = {"source_ids": src, "source_mask": np.ones_like(src), "target_ids": tgt,
     "target_mask": (labels != -100).astype(np.int32)}
out = {}
for name in ("default", "mirrored"):
    keras.mixed_precision.set_global_policy(policy)
    strategy = make_strategy(name)
    with strategy.scope():
        keras.utils.set_random_seed(0)
        bb = keras_hub.models.BertBackbone(vocabulary_size=30, num_layers=2, num_heads=4,
                                           hidden_dim=32, intermediate_dim=64,
                                           max_sequence_length=16, dropout=0.0)
        model = Seq2SeqLM(bb)
        model.compile(optimizer=keras.optimizers.SGD(0.1),
                      loss=SmoothedTokenCrossEntropy(0.1))
    logits_dtype = model(x).dtype.name
    h = model.fit(tf.data.Dataset.from_tensor_slices((x, labels)).batch(8), epochs=2, verbose=0)
    out[name] = {"loss": h.history["loss"], "replicas": strategy.num_replicas_in_sync,
                 "dtype": logits_dtype}
print(json.dumps(out))
"""


@pytest.mark.slow  # two TensorFlow trainings in a subprocess
@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_mirrored_training_matches_one_device(policy):
    done = subprocess.run([sys.executable, "-c", _SCRIPT, policy], capture_output=True,
                          text=True, timeout=600, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    import json

    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["mirrored"]["replicas"] == 2 and out["default"]["replicas"] == 1
    assert out["default"]["dtype"] == out["mirrored"]["dtype"] == "float32"
    tol = 1e-4 if policy == "float32" else 2e-2
    # The same global batch, split over two replicas: the same losses, and the
    # second epoch's loss shows the same update was applied.
    for a, b in zip(out["default"]["loss"], out["mirrored"]["loss"]):
        assert abs(a - b) <= tol * max(1.0, abs(a))
    assert out["default"]["loss"][1] < out["default"]["loss"][0]
