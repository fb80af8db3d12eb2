"""Fine-tuning callbacks: per-epoch validation, early stopping, best weights."""

import logging
import time
from typing import Any, Callable, Dict, List, Optional

import keras
import numpy as np

from minilm_tf.tasks import metrics as mt
from minilm_tf.utils.fileio import json_clean

logger = logging.getLogger(__name__)


class ValidationMetricCallback(keras.callbacks.Callback):
    """After each epoch: evaluate `evaluate_fn()` (a metrics dict), keep the
    best weights by `main_metric`, stop after `patience` epochs without
    improvement (None: never), restore the best weights at the end of `fit`
    (`restore_best`).

    For runs that call `fit` once per epoch (`resume.fit_resumable` sets
    these): `restore_at_train_end = False` leaves the restore to
    `restore_best_weights()`, and `skip_fn()` returning True skips an epoch
    end (an epoch cut short by a signal). `get_state`/`set_state` carry the
    history, the best epoch and the early-stopping counter across a resume.
    """

    def __init__(self, evaluate_fn: Callable[[], Dict[str, float]], main_metric: str,
                 patience: Optional[int] = None, restore_best: bool = True,
                 log_fn: Callable[[str], None] = None):
        super().__init__()
        self.evaluate_fn = evaluate_fn
        self.main_metric = main_metric
        self.patience = patience
        self.restore_best = restore_best
        self.restore_at_train_end = True
        self.skip_fn: Optional[Callable[[], bool]] = None
        self.log_fn = log_fn or logger.info
        self.history: List[Dict[str, Any]] = []
        self.best_value = None
        self.best_epoch = None
        self.best_weights = None
        self.eval_seconds = 0.0
        self._wait = 0

    def get_state(self) -> Dict[str, Any]:
        return {"history": json_clean(self.history), "best_value": json_clean(self.best_value),
                "best_epoch": self.best_epoch, "wait": self._wait}

    def set_state(self, state: Dict[str, Any]) -> None:
        self.history = list(state["history"])
        self.best_value, self.best_epoch = state["best_value"], state["best_epoch"]
        self._wait = state["wait"]

    def on_epoch_end(self, epoch, logs=None):
        if self.skip_fn is not None and self.skip_fn():
            return
        t0 = time.perf_counter()
        values = self.evaluate_fn()
        self.eval_seconds += time.perf_counter() - t0
        value = values[self.main_metric]
        entry = {"epoch": epoch + 1}
        if logs:
            entry.update({f"train_{k}": float(v) for k, v in logs.items()
                          if np.ndim(v) == 0})
        entry.update({f"validation_{k}": v for k, v in values.items()})
        self.history.append(entry)
        if logs is not None:
            logs[f"val_{self.main_metric}"] = value
        improved = mt.is_better(value, self.best_value)
        self.log_fn(f"epoch {epoch + 1}: validation {self.main_metric}={value:.4f}"
                    + (" (best)" if improved else ""))
        if improved:
            self.best_value, self.best_epoch, self._wait = value, epoch + 1, 0
            if self.restore_best:
                self.best_weights = [np.array(w) for w in self.model.get_weights()]
        else:
            self._wait += 1
            if self.patience is not None and self._wait >= self.patience:
                self.log_fn(f"early stopping: no improvement for {self._wait} epochs")
                self.model.stop_training = True

    def restore_best_weights(self) -> None:
        if self.restore_best and self.best_weights is not None:
            self.model.set_weights(self.best_weights)

    def on_train_end(self, logs=None):
        if self.restore_at_train_end:
            self.restore_best_weights()
