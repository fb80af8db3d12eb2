"""`MiniLMDistiller`: a Keras model whose `train_step` is MiniLM distillation."""

from typing import Any, Mapping

import keras
import tensorflow as tf

from minilm_tf.layers import SelfAttentionRelations
from minilm_tf.losses import MiniLMObjective, make_objective


def _backbone(model: Any) -> keras.Model:
    """Accepts a backbone or anything with a `.backbone` (a LoadedEncoder)."""
    return getattr(model, "backbone", model)


def _features(data: Any) -> Mapping[str, tf.Tensor]:
    """`fit` may hand over `x`, `(x,)`, `(x, y)` or `(x, y, w)`; keep `x`."""
    if isinstance(data, (tuple, list)):
        return data[0]
    return data


@keras.saving.register_keras_serializable(package="minilm_tf")
class MiniLMDistiller(keras.Model):
    """Distills a teacher encoder into a student with MiniLM / MiniLMv2.

    The teacher is frozen and always runs with `training=False`, only up to
    its distillation layer. The student runs up to the queries, keys and
    values of its distillation layer; only the variables those depend on are
    updated. Train with plain `compile()` + `fit()` on batches of
    `{"token_ids", "segment_ids", "padding_mask"}`; `fit` reports `loss` and
    each component (`attention_loss`, `value_relation_loss` for v1;
    `query_relation_loss`, `key_relation_loss`, `value_relation_loss` for v2).

    The loss of a batch is the mean over its examples of each example's mean
    over heads and real query positions; under `tf.distribute` it is averaged
    over the global batch.

    Args:
        teacher: teacher backbone (or `LoadedEncoder`).
        student: student backbone (or `LoadedEncoder`).
        objective: `minilm` (v1), `minilmv2`, or a `MiniLMObjective`.
        teacher_layer: teacher layer to distill from; negative counts from the
            top. Defaults to -1 (the last layer; the papers' choice for
            base-size teachers).
        student_layer: student layer to distill into. Defaults to -1.
        num_relation_heads: relation heads for `minilmv2` (default 48).
        loss_weights: optional weights per component name.

    Examples:
    ```python
    teacher = minilm_tf.load_teacher("all-minilm-l6-v2")
    student = minilm_tf.build_student(teacher, num_layers=3, hidden_dim=384, num_heads=12)
    distiller = minilm_tf.MiniLMDistiller(teacher, student, objective="minilm")
    distiller.compile(optimizer=minilm_tf.FusedAdamW(1e-4))  # or keras.optimizers.AdamW
    distiller.fit(dataset, epochs=1)
    ```
    """

    def __init__(
        self,
        teacher: Any,
        student: Any,
        objective: str | MiniLMObjective = "minilm",
        teacher_layer: int = -1,
        student_layer: int = -1,
        num_relation_heads: int | None = None,
        loss_weights: Mapping[str, float] | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.teacher = _backbone(teacher)
        self.student = _backbone(student)
        if self.teacher is self.student:
            raise ValueError("The teacher and the student must be different models.")
        self.teacher.trainable = False
        self.teacher_layer = teacher_layer
        self.student_layer = student_layer
        self.teacher_relations = SelfAttentionRelations(self.teacher, teacher_layer)
        self.student_relations = SelfAttentionRelations(self.student, student_layer)
        self.objective = make_objective(
            objective, self.teacher_relations.num_heads, num_relation_heads, loss_weights
        )
        self.objective.validate(
            self.teacher_relations.num_heads,
            self.teacher_relations.hidden_dim,
            self.student_relations.num_heads,
            self.student_relations.hidden_dim,
        )
        self._config = {
            "objective": self.objective.version,
            "teacher_layer": teacher_layer,
            "student_layer": student_layer,
            "num_relation_heads": self.objective.num_relation_heads,
            "loss_weights": dict(self.objective.weights),
        }
        if not self.student_variables:
            raise ValueError(
                "The student has no trainable variables (is `student.trainable` False?); "
                "distillation would train nothing."
            )
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.component_trackers = {
            name: keras.metrics.Mean(name=name) for name in self.objective.component_names
        }

    @property
    def metrics(self) -> list:
        return [self.loss_tracker, *self.component_trackers.values()]

    @property
    def student_variables(self) -> list:
        """The student variables the distillation loss reaches (and updates)."""
        return self.student_relations.trainable_variables_used

    def call(self, inputs: Mapping[str, tf.Tensor], training: bool = False) -> dict:
        """Per-example loss components ([batch] each) for a batch of inputs."""
        teacher = self.teacher_relations(inputs, training=False)
        student = self.student_relations(inputs, training=training)
        return self.objective(teacher, student)

    def _record(self, components: Mapping[str, tf.Tensor]) -> tf.Tensor:
        means = {name: tf.reduce_mean(value) for name, value in components.items()}
        loss = self.objective.total(means)
        # Without XLA, a plain `update_state` adds a constant 1 to the count,
        # an op with no input that Keras may run in the step that finds the
        # data exhausted, averaging over one batch too many
        # (tests/test_distiller.py). The updates wait for this batch's loss.
        with tf.control_dependencies([loss]):
            self.loss_tracker.update_state(loss)
            for name, value in means.items():
                self.component_trackers[name].update_state(value)
        return loss

    def train_step(self, data: Any) -> dict:
        x = _features(data)
        teacher = self.teacher_relations(x, training=False)
        variables = self.student_variables
        with tf.GradientTape() as tape:
            student = self.student_relations(x, training=True)
            components = self.objective(teacher, student)
            loss = self._record(components)
            # Gradients are summed over replicas: dividing each replica's mean
            # by the replica count gives the gradient of the global mean.
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            scaled = self.optimizer.scale_loss(loss / replicas)
        gradients = tape.gradient(scaled, variables)
        self.optimizer.apply(gradients, variables)
        return self._results()

    def test_step(self, data: Any) -> dict:
        self._record(self(_features(data), training=False))
        return self._results()

    def _results(self) -> dict:
        results = {m.name: m.result() for m in self.metrics}
        strategy = tf.distribute.get_strategy()
        if getattr(strategy.extended, "_in_multi_worker_mode", lambda: False)():
            # Keras averages logs across workers along axis 0, which scalars lack.
            results = {name: value[tf.newaxis] for name, value in results.items()}
        return results

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras' default averages a sample batch across replicas before
        # building, which MultiWorkerMirroredStrategy cannot do for dict
        # inputs. Nothing here needs a sample batch: both models are built at
        # construction; only the optimizer needs the variables it updates.
        if self.optimizer is not None and not self.optimizer.built:
            with self.distribute_strategy.scope():
                self.optimizer.build(self.student_variables)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(self._config)
        config["teacher"] = keras.saving.serialize_keras_object(self.teacher)
        config["student"] = keras.saving.serialize_keras_object(self.student)
        return config

    @classmethod
    def from_config(cls, config: dict) -> "MiniLMDistiller":
        config = dict(config)
        for key in ("teacher", "student"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)
