"""Choosing a `tf.distribute` strategy by name, XLA for the devices at hand,
and where each worker of a cluster keeps its checkpoints."""

import contextlib
import json
import os
import socket
from typing import Iterator, Tuple

import tensorflow as tf

from minilm_tf import _compat
from minilm_tf.utils import workdir as workdirs

CHECKPOINT_DIR = "checkpoints"

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")
JIT_CHOICES = ("auto", "true", "false")


def resolve_jit_compile(jit_compile: bool | str) -> bool:
    """Whether to XLA-compile the train step.

    Args:
        jit_compile: True/False, or "true"/"false"/"auto" (any case).

    `auto` turns XLA on, except on a machine without GPUs or TPUs whose
    TensorFlow uses oneDNN (x86 CPUs with AVX-512 and the like): XLA's CPU
    backend does not call oneDNN's matmuls, which run bfloat16 at twice its
    rate there and float32 a little faster, so the step is faster without
    XLA (docs/performance.md).
    On CPUs without oneDNN, XLA makes the step 1.8-2x faster.
    """
    if isinstance(jit_compile, bool):
        return jit_compile
    value = str(jit_compile).lower()
    if value not in JIT_CHOICES:
        raise ValueError(f"jit_compile must be one of {JIT_CHOICES} (or a bool), got {jit_compile!r}.")
    if value != "auto":
        return value == "true"
    accelerators = tf.config.list_logical_devices("GPU") + tf.config.list_logical_devices("TPU")
    return bool(accelerators) or not _compat.onednn_enabled()


def make_strategy(name: str = "default", tpu_address: str = "") -> tf.distribute.Strategy:
    """Returns the strategy `name`.

    Args:
        name: `default` (one device), `mirrored` (all local GPUs, or the
            logical CPU devices configured), `multi_worker`
            (`MultiWorkerMirroredStrategy`; cluster from the `TF_CONFIG`
            environment variable), or `tpu` (`TPUStrategy`).
        tpu_address: TPU name or `grpc://` address for `tpu`; empty uses the
            environment's default (e.g. on a Cloud TPU VM, `local`).
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError(
                "strategy='multi_worker' reads the cluster from the TF_CONFIG environment "
                'variable, e.g. {"cluster": {"worker": ["host1:port", "host2:port"]}, '
                '"task": {"type": "worker", "index": 0}}; it is not set.'
            )
        json.loads(os.environ["TF_CONFIG"])  # fail early on malformed JSON
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        _check_reachable(tpu_address)
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu_address or None)
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, tf.errors.OpError, RuntimeError) as e:
            raise RuntimeError(
                f"No TPU reachable at {tpu_address or '(default address)'}: {e}. Pass the "
                "TPU name or grpc:// address of a running TPU, or use another strategy."
            ) from e
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"Unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}.")


def _check_reachable(tpu_address: str, timeout_s: float = 10.0) -> None:
    """Fails fast for a `grpc://host:port` nobody listens on.

    TensorFlow's cluster connection retries an unreachable address forever.
    """
    if not tpu_address.startswith("grpc://"):
        return
    host, _, port = tpu_address[len("grpc://"):].rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except (OSError, ValueError) as e:
        raise RuntimeError(
            f"No TPU reachable at {tpu_address}: {e}. Pass the TPU name or grpc:// address "
            "of a running TPU, or use another strategy."
        ) from e


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True unless this process is a non-chief worker of a multi-worker cluster."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    return resolver.task_type in ("chief", None) or (
        resolver.task_type == "worker"
        and resolver.task_id == 0
        and "chief" not in resolver.cluster_spec().as_dict()
    )


def worker_dir(strategy: tf.distribute.Strategy) -> str:
    """"" for the chief (and every single-process run); ".worker_<id>" for the
    other workers of a cluster."""
    return "" if is_chief(strategy) else f".worker_{strategy.cluster_resolver.task_id}"


@contextlib.contextmanager
def hold_for_worker(path: str, strategy: tf.distribute.Strategy
                    ) -> Iterator[Tuple[workdirs.Workdir, str]]:
    """Holds the run's work directory for this process (`workdirs.hold`);
    yields it and this worker's checkpoint directory.

    Saving a checkpoint is collective: every worker of a cluster must save.
    The chief's checkpoints are the run's, `<path>/checkpoints`; another
    worker's go to `<path>/.worker_<id>/checkpoints`, under a lock of its own,
    so that workers sharing a file system never write over each other.
    """
    worker = worker_dir(strategy)
    checkpoints = os.path.join(worker, CHECKPOINT_DIR)
    with workdirs.hold(path, temporaries_in=(worker, checkpoints),
                       lock_file=f"{worker}.lock" if worker else workdirs.LOCK_FILE) as held:
        yield held, held.path(checkpoints)
