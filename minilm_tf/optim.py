"""Optimizers and learning-rate schedules used by the recipes."""

import keras


@keras.saving.register_keras_serializable(package="minilm_tf")
class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 to `peak`, then linear decay to 0 at `total_steps`.

    The schedule of BERT and of the MiniLM papers (4k warm-up steps).
    """

    def __init__(self, peak: float, warmup_steps: int, total_steps: int):
        if peak <= 0:
            raise ValueError(f"The learning rate must be positive, got {peak}.")
        if total_steps <= 0:
            raise ValueError(f"The number of steps must be positive, got {total_steps}.")
        if not 0 <= warmup_steps <= total_steps:
            raise ValueError(
                f"warmup_steps must be in [0, {total_steps}] (total steps), got {warmup_steps}."
            )
        self.peak = float(peak)
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        warm = step / max(self.warmup_steps, 1)
        decay = (self.total_steps - step) / max(self.total_steps - self.warmup_steps, 1)
        factor = keras.ops.where(step < self.warmup_steps, warm, decay)
        return self.peak * keras.ops.clip(factor, 0.0, 1.0)

    def get_config(self) -> dict:
        return {
            "peak": self.peak,
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
        }


def make_adamw(
    learning_rate: float,
    total_steps: int,
    warmup_steps: int,
    weight_decay: float = 0.01,
    beta_1: float = 0.9,
    beta_2: float = 0.999,
    epsilon: float = 1e-6,
    clipnorm: float | None = None,
) -> keras.optimizers.AdamW:
    """AdamW with warm-up + linear decay; LayerNorm and bias exempt from decay."""
    optimizer = keras.optimizers.AdamW(
        learning_rate=WarmupLinearDecay(learning_rate, warmup_steps, total_steps),
        weight_decay=weight_decay,
        beta_1=beta_1,
        beta_2=beta_2,
        epsilon=epsilon,
        global_clipnorm=clipnorm or None,
    )
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    return optimizer
