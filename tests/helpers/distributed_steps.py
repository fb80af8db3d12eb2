"""Runs a few MiniLM distillation steps under a strategy and saves the result.

Used by tests/training/test_distribute.py in subprocesses (device setup must happen
before TensorFlow initialises). Usage:
    python distributed_steps.py STRATEGY OUT.npz [NUM_LOGICAL_CPUS [OPTIMIZER]]
STRATEGY: default | mirrored | multi_worker (cluster from TF_CONFIG).
OPTIMIZER: sgd (default) | adamw (`minilm_tf.optimizers.adamw.make_adamw`, the fused
AdamW that `tools/distill.py` uses).
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

strategy_name, out_path = sys.argv[1], sys.argv[2]
num_cpus = int(sys.argv[3]) if len(sys.argv) > 3 else 1
optimizer_name = sys.argv[4] if len(sys.argv) > 4 else "sgd"
if num_cpus > 1:
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * num_cpus
    )

import keras  # noqa: E402
import keras_hub  # noqa: E402

from minilm_tf import MiniLMDistiller  # noqa: E402
from minilm_tf.training.distribute import make_strategy  # noqa: E402
from minilm_tf.optimizers.adamw import make_adamw  # noqa: E402

GLOBAL_BATCH, LENGTH, STEPS = 8, 16, 3


def backbone(layers, hidden, seed, name):
    keras.utils.set_random_seed(seed)
    return keras_hub.models.BertBackbone(
        vocabulary_size=100, num_layers=layers, num_heads=4, hidden_dim=hidden,
        intermediate_dim=2 * hidden, max_sequence_length=LENGTH, dropout=0.0, name=name,
    )


# MultiWorkerMirroredStrategy must exist before any other TensorFlow op runs.
strategy = make_strategy(strategy_name)
rng = np.random.default_rng(0)
lengths = rng.integers(4, LENGTH + 1, size=GLOBAL_BATCH * STEPS)
mask = (np.arange(LENGTH)[None] < lengths[:, None]).astype("int32")
data = {
    "token_ids": (rng.integers(1, 100, size=mask.shape) * mask).astype("int32"),
    "segment_ids": np.zeros_like(mask),
    "padding_mask": mask,
}
dataset = tf.data.Dataset.from_tensor_slices(data).batch(GLOBAL_BATCH)
options = tf.data.Options()
options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
dataset = dataset.with_options(options)

with strategy.scope():
    teacher = backbone(2, 32, 1, "teacher")
    student = backbone(2, 16, 2, "student")
    distiller = MiniLMDistiller(teacher, student, objective="minilm")
    if optimizer_name == "adamw":
        optimizer = make_adamw(1e-2, total_steps=10**9, warmup_steps=0)
    else:
        optimizer = keras.optimizers.SGD(0.5)
    distiller.compile(optimizer=optimizer)
history = distiller.fit(dataset, epochs=1, verbose=0)
np.savez(
    out_path,
    loss=np.array(history.history["loss"]),
    replicas=np.array(strategy.num_replicas_in_sync),
    **{f"w{i}": w for i, w in enumerate(student.get_weights())},
)
