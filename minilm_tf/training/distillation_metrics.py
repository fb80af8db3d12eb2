"""What a distillation run records while it trains: logs, TensorBoard
summaries, `metrics.csv` and its plot; checkpoints on schedule and on signals."""

import csv
import math
import os
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from minilm_tf.training.checkpointing import save_checkpoint
from minilm_tf.utils.fileio import atomic_savefig, atomic_write_text


class TrainingMonitor(keras.callbacks.Callback):
    """Logs, writes summaries and checkpoints; stops on signals and NaN."""

    def __init__(self, *, manager, step, total_steps, tokens_per_step, log_every,
                 checkpoint_every, summary_writer, csv_path, signals):
        super().__init__()
        self.manager = manager
        self.step = step
        self.total_steps = total_steps
        self.tokens_per_step = tokens_per_step
        self.log_every = log_every
        self.checkpoint_every = checkpoint_every
        self.writer = summary_writer
        self.csv_path = csv_path
        self.signals = signals
        self.last_logs: dict = {}
        self.nonfinite_step: int | None = None
        self._window_start = time.time()
        self._window_steps = 0

    def on_train_batch_end(self, batch, logs=None):
        self.step.assign_add(1)
        step = int(self.step.numpy())
        self._window_steps += 1
        logs = {k: float(np.mean(v)) for k, v in (logs or {}).items()}
        if not all(math.isfinite(v) for v in logs.values()):
            self.nonfinite_step = step
            self.model.stop_training = True
            return
        if step % self.log_every == 0 or step == self.total_steps:
            self._log(step, logs)
        if self.signals.received is not None:
            save_checkpoint(self.manager, step)
            self.model.stop_training = True
        elif step % self.checkpoint_every == 0 or step == self.total_steps:
            save_checkpoint(self.manager, step)

    def _log(self, step: int, logs: dict) -> None:
        elapsed = time.time() - self._window_start
        tokens_per_s = self._window_steps * self.tokens_per_step / max(elapsed, 1e-9)
        eta = (self.total_steps - step) * elapsed / max(self._window_steps, 1)
        lr = float(self.model.optimizer.learning_rate)
        parts = " ".join(f"{k}={v:.4f}" for k, v in sorted(logs.items()))
        logging.info(
            "step %d/%d %s lr=%.2e tokens/s=%.0f ETA %dm%02ds",
            step, self.total_steps, parts, lr, tokens_per_s, eta // 60, eta % 60,
        )
        with self.writer.as_default(step=step):
            for key, value in logs.items():
                tf.summary.scalar(f"train/{key}", value)
            tf.summary.scalar("train/learning_rate", lr)
            tf.summary.scalar("train/tokens_per_second", tokens_per_s)
        self.writer.flush()
        new_file = not os.path.exists(self.csv_path)
        row = {"step": step, "learning_rate": lr, "tokens_per_second": tokens_per_s, **logs}
        with open(self.csv_path, "a", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            if new_file:
                writer.writeheader()
            writer.writerow(row)
        self.last_logs = logs
        # Report the mean over the last window, not since the start.
        self.model.reset_metrics()
        self._window_start, self._window_steps = time.time(), 0


def plot_losses(csv_path: str, png_path: str) -> None:
    """Loss components over steps, one line each, from metrics.csv."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(csv_path, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    steps = [int(r["step"]) for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4))
    for key in rows[0]:
        if key.endswith("loss"):
            ax.plot(steps, [float(r[key]) for r in rows], label=key)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (KL in nats, MSE)")
    ax.set_title("Distillation losses")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    atomic_savefig(fig, png_path, dpi=110)
    plt.close(fig)

def truncate_metrics(csv_path: str, step: int) -> None:
    """Keeps the rows of metrics.csv up to `step` (where a resumed run
    continues), so steps repeated after a kill are not listed twice; a row
    cut short by a kill is dropped too."""
    if not os.path.exists(csv_path):
        return
    with open(csv_path, encoding="utf-8", newline="") as f:
        text = f.read()
    lines = text.splitlines(keepends=True)
    if not lines:
        return
    header = next(csv.reader([lines[0]]))
    kept = [lines[0]]
    for line in lines[1:]:
        fields = next(csv.reader([line]), [])
        if not line.endswith("\n") or len(fields) != len(header):
            break  # written half-way when the run was killed
        try:
            if int(fields[0]) > step:
                break
        except ValueError:
            break
        kept.append(line)
    if len(kept) == 1:
        os.remove(csv_path)  # the next row writes the header again
    elif len(kept) < len(lines):
        atomic_write_text(csv_path, "".join(kept))
