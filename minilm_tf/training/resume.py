"""Resumable fine-tuning: what `run_finetune` saves and how a rerun continues.

A fine-tuning run keeps `<workdir>/checkpoints/`:

- `ckpt-N.*` (`tf.train.CheckpointManager`, the 2 newest): the task model,
  the optimizer (moments, step counter, hence the learning-rate schedule
  position) and the dropout seed states;
- `state.json`, written atomically after the checkpoint it names: the data
  position (epoch, batch), the validation history, the best epoch so far and
  the early-stopping counter;
- `best-E.npz`: the best epoch's weights (restored at the end of training);
- `finetune_config.json`: the settings that must not change on resume.

Checkpoints are written at the end of every epoch (after validation) and,
when SIGTERM/SIGINT arrives, after the current batch. The training order of
epoch `e` is a fixed permutation of the train split (`epoch_order`), so a
run resumed mid-epoch skips exactly the batches it already trained on. A
SIGKILL repeats at most the epoch in progress.
"""

import contextlib
import dataclasses
import glob
import json
import os
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import keras
import numpy as np
import tensorflow as tf

from minilm_tf.layers.fast_paths import fast_paths as fast_paths_of
from minilm_tf.utils import fileio
from minilm_tf.training.checkpointing import RunInterrupted, StopSignals, save_checkpoint, seed_states
from minilm_tf.training.distribute import CHECKPOINT_DIR  # noqa: F401  (re-exported)

STATE_FILE = "state.json"
CONFIG_FILE = "finetune_config.json"

# FinetuneConfig fields that must match when a run resumes; the others
# (workdir, strategy, evaluation batch size, latency settings, ...) may change.
IDENTITY_KEYS = (
    "model", "task", "task_kind", "train_file", "validation_file", "test_file",
    "file_format", "text_key", "text_pair_key", "label_key", "epochs", "batch_size",
    "learning_rate", "weight_decay", "warmup_ratio", "clipnorm", "sequence_length",
    "dropout", "pooling", "seed", "max_train_examples", "precision", "extra",
)
# Identity keys added later, with the value runs saved before them had.
_ADDED_KEYS = {"pooling": "cls"}


def epoch_order(num_examples: int, seed: int, epoch: int) -> np.ndarray:
    """The order in which epoch `epoch` visits the train examples."""
    return np.random.default_rng([seed, epoch]).permutation(num_examples)


def check_config(directory: str, config: Dict[str, Any]) -> None:
    """Records `config`'s identity keys until the first checkpoint; once
    there is one, refuses (naming the keys) settings that differ from them."""
    path = os.path.join(directory, CONFIG_FILE)
    current = {k: config.get(k) for k in IDENTITY_KEYS}
    if not os.path.exists(os.path.join(directory, STATE_FILE)):
        os.makedirs(directory, exist_ok=True)
        fileio.atomic_write_json(path, current)
        return
    with open(path, encoding="utf-8") as f:
        saved = json.load(f)
    for key, value in _ADDED_KEYS.items():
        saved.setdefault(key, value)
    # Compare through JSON so tuples/lists and ints/floats read alike.
    current = json.loads(json.dumps(current))
    diff = [f"{k}: {saved.get(k)!r} -> {current[k]!r}" for k in IDENTITY_KEYS
            if saved.get(k) != current[k]]
    if diff:
        raise ValueError(
            f"{os.path.dirname(directory)} holds an unfinished fine-tuning run with different "
            f"settings ({'; '.join(diff)}). Rerun with the original settings to resume it, "
            "use a new `workdir`, or pass `overwrite=True` to discard it."
        )


class FinetuneCheckpointer(keras.callbacks.Callback):
    """Saves and restores a fine-tuning run's state (see the module doc).

    Place it after the `ValidationMetricCallback` it checkpoints (or None),
    and call `begin_epoch(epoch, first_batch)` before each `fit` call, which
    covers one epoch (or its remainder). `fit_resumable` does all that.
    """

    def __init__(self, directory: str, model, validation, signals,
                 steps_per_epoch: int):
        super().__init__()
        self.directory = directory
        self.validation = validation
        self.signals = signals
        self.steps_per_epoch = steps_per_epoch
        self.saved_mid_epoch = False
        self._epoch = 0
        self._first_batch = 0
        self._best_file: Optional[str] = None
        self._checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer,
                                               rng=seed_states(model))
        self._manager = tf.train.CheckpointManager(self._checkpoint, directory, max_to_keep=2)

    # -- restore -----------------------------------------------------------

    def restore(self) -> Optional[Dict[str, Any]]:
        """Loads the newest complete state; returns it (None: fresh run)."""
        path = os.path.join(self.directory, STATE_FILE)
        if not os.path.exists(path):
            return None
        with open(path, encoding="utf-8") as f:
            state = json.load(f)
        self._checkpoint.restore(os.path.join(self.directory, state["checkpoint"])
                                 ).assert_existing_objects_matched()
        if self.validation is not None:
            self.validation.set_state(state["validation"])
        self._best_file = state.get("best_weights")
        if self._best_file:
            with np.load(os.path.join(self.directory, self._best_file)) as f:
                self.validation.best_weights = [f[f"arr_{i}"] for i in range(len(f.files))]
        return state

    # -- save --------------------------------------------------------------

    def begin_epoch(self, epoch: int, first_batch: int = 0) -> None:
        self._epoch, self._first_batch = epoch, first_batch
        self.saved_mid_epoch = False

    def on_train_batch_end(self, batch, logs=None):
        done = self._first_batch + batch + 1
        # The epoch's last batch: let it end normally (validation, then a save).
        if self.signals.received is not None and done < self.steps_per_epoch:
            self._save(epoch=self._epoch, batch=done, stopped=False)
            self.saved_mid_epoch = True
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if not self.saved_mid_epoch:
            self._save(epoch=epoch + 1, batch=0, stopped=bool(self.model.stop_training))

    def _save(self, *, epoch: int, batch: int, stopped: bool) -> None:
        validation = self.validation
        if (batch == 0 and validation is not None and validation.best_weights is not None
                and validation.best_epoch == epoch):
            name = f"best-{epoch}.npz"
            tmp = os.path.join(self.directory, f".tmp-{name}")
            with open(tmp, "wb") as f:
                np.savez(f, *validation.best_weights)
            os.replace(tmp, os.path.join(self.directory, name))
            self._best_file = name
        path = save_checkpoint(self._manager, int(self.model.optimizer.iterations.numpy()))
        fileio.atomic_write_json(os.path.join(self.directory, STATE_FILE), {
            "checkpoint": os.path.basename(path),
            "epoch": epoch,
            "batch": batch,
            "stopped": stopped,
            "validation": validation.get_state() if validation is not None else None,
            "best_weights": self._best_file,
        })
        for old in glob.glob(os.path.join(self.directory, "best-*.npz")):
            if os.path.basename(old) != self._best_file:
                os.remove(old)


class _Progress(keras.callbacks.Callback):
    """Logs the step, the loss, examples/s and the epoch's ETA every `every` steps."""

    def __init__(self, log, every: int, steps_per_epoch: int, batch_size_hint: int):
        super().__init__()
        self.log, self.every = log, every
        self.steps_per_epoch, self.batch_size_hint = steps_per_epoch, batch_size_hint
        self.first_batch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self._t0, self._n = epoch, time.perf_counter(), 0

    def on_train_batch_end(self, batch, logs=None):
        self._n += 1
        done = self.first_batch + batch + 1
        if done % self.every and done != self.steps_per_epoch:
            return
        elapsed = time.perf_counter() - self._t0
        rate = self._n / max(elapsed, 1e-9)
        eta = (self.steps_per_epoch - done) / max(rate, 1e-9)
        loss = (logs or {}).get("loss")
        speed = (f"examples/s={rate * self.batch_size_hint:.1f}" if self.batch_size_hint
                 else f"steps/s={rate:.2f}")
        self.log(f"epoch {self.epoch + 1} step {done}/{self.steps_per_epoch}"
                 + (f" loss={float(loss):.4f}" if loss is not None else "")
                 + f" {speed} epoch ETA {int(eta) // 60}m{int(eta) % 60:02d}s")


@dataclasses.dataclass
class FitResult:
    fit_seconds: float  # wall time of the fit calls, validation included
    examples_trained: int  # in this process
    epoch_logs: List[Dict[str, float]]  # Keras logs of the epochs trained in this process


def fit_resumable(model, epoch_dataset: Callable[[int, int], Tuple[Any, int]], *,
                  epochs: int, steps_per_epoch: int, directory: str, validation=None,
                  log: Callable[[str], None] = print, log_every: int = 50,
                  batch_size: int = 0, fast_paths: bool = False) -> FitResult:
    """Trains a compiled `model` for `epochs` epochs, resuming from
    `directory` when it holds a checkpoint.

    `epoch_dataset(epoch, first_batch)` returns `(dataset, num_examples)`:
    the batches of epoch `epoch` from batch `first_batch` on, in a fixed
    order (`epoch_order`). `validation`: a `ValidationMetricCallback` (or
    None), run after every epoch; its best weights are restored at the end.
    SIGTERM/SIGINT save a checkpoint after the current batch and raise
    `RunInterrupted`. Progress (loss, examples/s with `batch_size`, ETA) is
    logged every `log_every` steps. `fast_paths`: the steps (and the
    per-epoch validation) trace with `minilm_tf.layers.fast_paths`; the
    model's layers are as before once this returns.
    """
    if validation is not None:
        validation.restore_at_train_end = False
        # Keras sets a callback's model in `fit`; a run resumed after its last
        # epoch calls no `fit`, but its best weights are still restored.
        validation.set_model(model)
    with StopSignals() as signals, (fast_paths_of(model) if fast_paths
                                    else contextlib.nullcontext()):
        checkpointer = FinetuneCheckpointer(directory, model, validation, signals,
                                            steps_per_epoch)
        if validation is not None:
            validation.skip_fn = lambda: checkpointer.saved_mid_epoch
        state = checkpointer.restore()
        epoch, first_batch, stopped = 0, 0, False
        if state is not None:
            epoch, first_batch, stopped = state["epoch"], state["batch"], state["stopped"]
            log(f"resuming from {state['checkpoint']}: epoch {epoch + 1}, batch {first_batch}")
        progress = _Progress(log, log_every, steps_per_epoch, batch_size)
        t0, examples, epoch_logs = time.perf_counter(), 0, []
        while epoch < epochs and not stopped:
            dataset, num_examples = epoch_dataset(epoch, first_batch)
            checkpointer.begin_epoch(epoch, first_batch)
            progress.first_batch = first_batch
            history = model.fit(dataset, initial_epoch=epoch, epochs=epoch + 1, verbose=0,
                                shuffle=False,  # epoch_dataset fixes the order
                                callbacks=[c for c in (progress, validation, checkpointer) if c])
            if signals.received is not None:
                raise RunInterrupted(
                    f"Interrupted by signal {signals.received} in epoch {epoch + 1}; checkpoint "
                    f"saved in {directory}. Rerun the same command to resume.")
            examples += num_examples
            epoch_logs.append({k: float(v[-1]) for k, v in history.history.items()})
            stopped = bool(model.stop_training)
            epoch, first_batch = epoch + 1, 0
        fit_seconds = time.perf_counter() - t0
    if validation is not None:
        validation.restore_best_weights()
    return FitResult(fit_seconds, examples, epoch_logs)
