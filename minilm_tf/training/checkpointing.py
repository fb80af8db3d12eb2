"""Checkpointing and preemption pieces shared by distillation and fine-tuning.

SIGTERM (how schedulers preempt) and SIGINT (Ctrl-C) become a flag that the
training callbacks check between steps: they save a checkpoint, stop, and the
run raises `RunInterrupted`; rerunning the same command resumes.
"""

import re
import signal

import tensorflow as tf
from absl import logging

from minilm_tf.utils.workdir import remove_temporaries


class RunInterrupted(Exception):
    """Raised after a signal stopped training and a checkpoint was saved."""


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (e.g. disk full); the previous one is intact."""


class StopSignals:
    """Context manager turning SIGTERM/SIGINT into `self.received` (the
    signal number). A second signal raises `KeyboardInterrupt` at once."""

    def __init__(self):
        self.received: int | None = None
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum, frame):
        if self.received is not None:  # second signal: give up at once
            raise KeyboardInterrupt
        self.received = signum
        logging.warning("Signal %d received: saving a checkpoint, then stopping.", signum)

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def seed_states(model) -> list:
    """The model's random-seed state variables (dropout and other
    `SeedGenerator`s). `tf.train.Checkpoint(model=...)` does not track them:
    checkpoint them too so a resumed run draws the same dropout masks as an
    uninterrupted one."""
    return [v for v in model.variables if v.path.endswith("seed_generator_state")]


def save_checkpoint(manager: tf.train.CheckpointManager, number: int) -> str:
    """`manager.save`, turning write failures (full disk, read-only files)
    into `CheckpointWriteError`. TensorFlow writes the checkpoint's files
    before the `checkpoint` index that names it, so a failed or killed write
    leaves the previous checkpoint the latest one. Temporary shard
    directories (`ckpt-N_temp/`) are removed after a failed write and after
    each successful one."""
    previous = manager.latest_checkpoint
    try:
        path = manager.save(checkpoint_number=number)
    except (OSError, tf.errors.OpError) as e:
        # The failed write's `ckpt-N_temp/` shards: on a full disk, exactly
        # the space the user would have to free.
        remove_temporaries(manager.directory)
        reason = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", str(getattr(e, "message", e)))
        raise CheckpointWriteError(
            f"Could not write checkpoint {number} in {manager.directory} "
            f"({' '.join(reason.split())}). The previous checkpoint ({previous or 'none'}) "
            "is intact; free disk space and rerun the same command to resume."
        ) from e
    logging.info("Saved checkpoint %s", path)
    remove_temporaries(manager.directory)  # e.g. left by a run killed mid-write
    return path
