"""`MiniLMDistiller`: a Keras model whose `train_step` is MiniLM distillation."""

import contextlib
from typing import Any, Mapping

import keras
import tensorflow as tf

from minilm_tf import _compat
from minilm_tf.layers.fast_paths import fast_paths as fast_paths_of
from minilm_tf.layers import SelfAttentionRelations, attention_heads
from minilm_tf.losses import Objective, make_objective


def _backbone(model: Any) -> keras.Model:
    """Accepts a backbone or anything with a `.backbone` (a LoadedEncoder)."""
    return getattr(model, "backbone", model)


def embedding_settings(encoder: Any) -> tuple[str, bool]:
    """(pooling mode, normalise?) of an encoder's sentence embedding.

    From the sentence-transformers configuration a `LoadedEncoder` carries
    (`1_Pooling/config.json`, a `Normalize` module); mean pooling without
    normalisation when there is none.
    """
    metadata = getattr(encoder, "metadata", None) or {}
    pooling = metadata.get("pooling") or {}
    mode = "mean"
    if pooling.get("pooling_mode_cls_token") and not pooling.get("pooling_mode_mean_tokens"):
        mode = "cls"
    elif pooling.get("pooling_mode_max_tokens") and not pooling.get("pooling_mode_mean_tokens"):
        mode = "max"
    return mode, bool(metadata.get("normalize", False))


def _features(data: Any) -> Mapping[str, tf.Tensor]:
    """`fit` may hand over `x`, `(x,)`, `(x, y)` or `(x, y, w)`; keep `x`."""
    if isinstance(data, (tuple, list)):
        return data[0]
    return data


@keras.saving.register_keras_serializable(package="minilm_tf")
class MiniLMDistiller(keras.Model):
    """Distills a teacher encoder into a student with MiniLM / MiniLMv2.

    The teacher is frozen and always runs with `training=False`. For the
    relation objectives (MiniLM, MiniLMv2) both models run only up to the
    queries, keys and values of their distillation layer; objectives on
    hidden states (`hidden_mse`, `embedding_mse`) run them to the last layer.
    Only the student variables the loss reaches are updated, with any
    projection the objective owns. Train with plain `compile()` + `fit()` on
    batches of `{"token_ids", "segment_ids", "padding_mask"}`; `fit` reports
    `loss` and each component (`attention_loss`, `value_relation_loss` for
    v1; `query_relation_loss`, `key_relation_loss`, `value_relation_loss`
    for v2; `hidden_mse_loss`, `embedding_mse_loss`).

    The loss of a batch is the mean over its examples of each example's mean
    over heads and real query positions; under `tf.distribute` it is averaged
    over the global batch.

    Args:
        teacher: teacher backbone (or `LoadedEncoder`).
        student: student backbone (or `LoadedEncoder`).
        objective: `minilm` (v1), `minilmv2`, `hidden_mse`, `embedding_mse`,
            a weighted sum such as `minilmv2+300*embedding_mse`, or an
            `Objective`.
        teacher_layer: teacher layer to distill relations from; negative
            counts from the top. Defaults to -1 (the last layer; the papers'
            choice for base-size teachers).
        student_layer: student layer to distill into. Defaults to -1.
        num_relation_heads: relation heads for `minilmv2` (default 48).
        loss_weights: optional weights per component name.
        embedding_pooling: pooling of `embedding_mse` (`mean`, `cls`,
            `max`); defaults to the teacher's sentence-transformers pooling,
            else `mean`.
        normalize_embeddings: L2-normalise the embeddings of
            `embedding_mse`; defaults to the teacher's configuration, else
            False.
        fast_paths: trace the train and test steps with
            `minilm_tf.layers.fast_paths` (fused softmax, GELU, LayerNorm, 16-bit
            dropout: the same function, 6-13% faster steps on oneDNN CPUs,
            about even under XLA; docs/performance.md). Defaults to True;
            `None` uses them only when the steps are not XLA-compiled.

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
        objective: str | Objective = "minilm",
        teacher_layer: int = -1,
        student_layer: int = -1,
        num_relation_heads: int | None = None,
        loss_weights: Mapping[str, float] | None = None,
        embedding_pooling: str | None = None,
        normalize_embeddings: bool | None = None,
        fast_paths: bool | None = True,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.fast_paths = fast_paths
        pooling, normalize = embedding_settings(teacher)
        pooling = embedding_pooling or pooling
        normalize = normalize if normalize_embeddings is None else bool(normalize_embeddings)
        self.teacher = _backbone(teacher)
        self.student = _backbone(student)
        if self.teacher is self.student:
            raise ValueError("The teacher and the student must be different models.")
        self.teacher.trainable = False
        self.teacher_layer = teacher_layer
        self.student_layer = student_layer
        # v1 splits its relations into the teacher's attention heads.
        self.objective = make_objective(
            objective, attention_heads(self.teacher, teacher_layer), num_relation_heads, loss_weights, pooling, normalize
        )
        needs = dict(
            return_relations=self.objective.needs_relations,
            return_sequence_output=self.objective.needs_sequence_output,
        )
        self.teacher_relations = SelfAttentionRelations(self.teacher, teacher_layer, **needs)
        self.student_relations = SelfAttentionRelations(self.student, student_layer, **needs)
        self.objective.validate(
            self.teacher_relations.num_heads,
            self.teacher_relations.hidden_dim,
            self.student_relations.num_heads,
            self.student_relations.hidden_dim,
        )
        self.objective.build(self.teacher.hidden_dim, self.student.hidden_dim)
        # Tracked, so that the projections save and checkpoint with the distiller.
        self.objective_layers = list(self.objective.layers)
        self._config = {
            "objective": objective if isinstance(objective, str) else self.objective.name,
            "teacher_layer": teacher_layer,
            "student_layer": student_layer,
            "num_relation_heads": num_relation_heads,
            "loss_weights": dict(loss_weights or {}),
            "embedding_pooling": embedding_pooling,
            "normalize_embeddings": normalize_embeddings,
            "fast_paths": fast_paths,
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

    @property
    def distilled_variables(self) -> list:
        """Everything a step updates: `student_variables` and the objective's projections."""
        return self.student_variables + [
            v for layer in self.objective_layers for v in layer.trainable_variables
        ]

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
        # (tests/models/test_distiller.py). The updates wait for this batch's loss.
        with tf.control_dependencies([loss]):
            self.loss_tracker.update_state(loss)
            for name, value in means.items():
                self.component_trackers[name].update_state(value)
        return loss

    @property
    def uses_fast_paths(self) -> bool:
        """Whether the steps trace with `minilm_tf.layers.fast_paths` (see `fast_paths`)."""
        if self.fast_paths is not None:
            return bool(self.fast_paths)
        return not getattr(self, "jit_compile", False)

    def fast_paths_scope(self):
        """The context the steps are traced in: `fast_paths(self)`, or nothing."""
        return fast_paths_of(self) if self.uses_fast_paths else contextlib.nullcontext()

    def train_step(self, data: Any) -> dict:
        with self.fast_paths_scope():
            return self._train_step(data)

    def _train_step(self, data: Any) -> dict:
        x = _features(data)
        teacher = self.teacher_relations(x, training=False)
        variables = self.distilled_variables
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
        with self.fast_paths_scope():
            self._record(self(_features(data), training=False))
        return self._results()

    def _results(self) -> dict:
        results = {m.name: m.result() for m in self.metrics}
        strategy = tf.distribute.get_strategy()
        if _compat.in_multi_worker_mode(strategy):
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
                self.optimizer.build(self.distilled_variables)

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
