"""Optimizers and learning-rate schedules used by the recipes."""

import keras
import tensorflow as tf

from minilm_tf import _compat
from minilm_tf.ops.xla import xla_function


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


@xla_function
def _adamw_update(variable, m, v, gradient, lr, step, beta_1, beta_2, epsilon, decay):
    """Keras' AdamW update of one variable, weight decay first, as one XLA cluster.

    `variable`, `m`, `v` are resource handles, not `tf.Variable`s: a
    `tf.function` keeps the variables it was traced with, and calling it again
    after they are deleted (a second model in the same process) fails.
    """
    dtype = gradient.dtype
    value, old_m, old_v = (tf.raw_ops.ReadVariableOp(resource=h, dtype=dtype)
                           for h in (variable, m, v))
    alpha = lr * tf.sqrt(1.0 - beta_2**step) / (1.0 - beta_1**step)
    new_m = old_m + (gradient - old_m) * (1.0 - beta_1)
    new_v = old_v + (tf.square(gradient) - old_v) * (1.0 - beta_2)
    decayed = value - value * (decay * lr)
    tf.raw_ops.AssignVariableOp(resource=m, value=new_m)
    tf.raw_ops.AssignVariableOp(resource=v, value=new_v)
    tf.raw_ops.AssignVariableOp(
        resource=variable, value=decayed - new_m * alpha / (tf.sqrt(new_v) + epsilon))


@keras.saving.register_keras_serializable(package="minilm_tf")
class FusedAdamW(keras.optimizers.AdamW):
    """`keras.optimizers.AdamW` with each variable's update one XLA cluster.

    Same arguments, variables and results as AdamW (tested against it). Keras'
    TensorFlow AdamW is about fifteen separate kernels per variable, each a
    full pass over the variable, its moments or its gradient (plus one more
    pass for the weight decay); in a step that is not XLA-compiled as a whole
    (oneDNN CPUs, docs/performance.md) that was ~60 ms of a distillation step.

    A sparse gradient (an embedding's) that lists a row more than once is
    summed first, so the second moment takes the row's total gradient as
    Adam's definition does; Keras' TensorFlow AdamW squares each occurrence.
    Falls back to AdamW's own code for `amsgrad`, under `TPUStrategy` (whose
    steps XLA compiles whole anyway) and on other backends.
    """

    def _fused(self) -> bool:
        return (keras.backend.backend() == "tensorflow" and not self.amsgrad
                and not isinstance(tf.distribute.get_strategy(), tf.distribute.TPUStrategy))

    def _apply_weight_decay(self, variables):
        if not self._fused():
            super()._apply_weight_decay(variables)
        # Otherwise folded into `update_step`.

    def update_step(self, gradient, variable, learning_rate):
        if not self._fused():
            return super().update_step(gradient, variable, learning_rate)
        decay = self.weight_decay if self.weight_decay and self._use_weight_decay(variable) else 0.0
        if isinstance(gradient, tf.IndexedSlices):
            gradient = tf.convert_to_tensor(gradient)
        dtype = variable.dtype
        _adamw_update(
            _handle(variable),
            *(_handle(slot) for slot in _compat.optimizer_slots(self, variable)),
            tf.cast(gradient, dtype),
            keras.ops.cast(learning_rate, dtype),
            keras.ops.cast(self.iterations + 1, dtype),
            *(tf.constant(c, dtype) for c in (self.beta_1, self.beta_2, self.epsilon, decay)),
        )


def _handle(variable):
    """The resource handle to update: inside `strategy.extended.update`, that
    of a mirrored variable's copy on the device being updated."""
    variable = variable.value if isinstance(variable, keras.Variable) else variable
    local = getattr(variable, "_get_on_device_or_primary", None)
    return (local() if local is not None else variable).handle


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
    """`FusedAdamW` with warm-up + linear decay; LayerNorm and bias exempt from decay."""
    optimizer = FusedAdamW(
        learning_rate=WarmupLinearDecay(learning_rate, warmup_steps, total_steps),
        weight_decay=weight_decay,
        beta_1=beta_1,
        beta_2=beta_2,
        epsilon=epsilon,
        global_clipnorm=clipnorm or None,
    )
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    return optimizer
