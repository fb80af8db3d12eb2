"""Task-stage distillation: a student fine-tuned on the labels and on a
fine-tuned teacher's logits (Hinton et al. 2015; DistilBERT's and
TinyBERT's prediction-layer distillation).

`LogitDistillationLoss` reads `y_true` as one row per example,
`[label, teacher logit 1, ..., teacher logit C]`, and returns per example

    classification: (1 - alpha) * CE(label, s) + alpha * T^2 * KL(softmax(t / T) || softmax(s / T))
    regression:     (1 - alpha) * (s - label)^2 + alpha * (s - t)^2

with `s` the student's logits and `t` the teacher's. The T^2 factor keeps
the soft term's gradient scale independent of the temperature (Hinton et
al.). `alpha = 0` is plain fine-tuning; `alpha = 1` ignores the labels.
"""

import keras
from keras import ops

CLASSIFICATION = "classification"
REGRESSION = "regression"


@keras.saving.register_keras_serializable(package="minilm_tf")
class LogitDistillationLoss(keras.losses.Loss):
    """Labels + teacher logits -> the per-example loss above (averaged over
    the batch by Keras)."""

    def __init__(self, kind: str = CLASSIFICATION, alpha: float = 0.5,
                 temperature: float = 2.0, name: str = "logit_distillation", **kwargs):
        super().__init__(name=name, **kwargs)
        if kind not in (CLASSIFICATION, REGRESSION):
            raise ValueError(f"kind must be {CLASSIFICATION!r} or {REGRESSION!r}, got {kind!r}.")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}.")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}.")
        self.kind, self.alpha, self.temperature = kind, float(alpha), float(temperature)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "float32")
        student = ops.cast(y_pred, "float32")
        label, teacher = y_true[:, 0], y_true[:, 1:]
        if self.kind == REGRESSION:
            hard = ops.square(student[:, 0] - label)
            soft = ops.mean(ops.square(student - teacher), axis=-1)
        else:
            hard = keras.losses.sparse_categorical_crossentropy(
                ops.cast(label, "int32"), student, from_logits=True)
            t = self.temperature
            log_p = ops.log_softmax(teacher / t, axis=-1)
            log_q = ops.log_softmax(student / t, axis=-1)
            soft = (t * t) * ops.sum(ops.exp(log_p) * (log_p - log_q), axis=-1)
        return (1.0 - self.alpha) * hard + self.alpha * soft

    def get_config(self):
        return dict(super().get_config(), kind=self.kind, alpha=self.alpha,
                    temperature=self.temperature)


def label_column(y_true):
    """The labels of `[label, teacher logits...]` rows, as a [batch, 1] column."""
    return y_true[:, :1]
