"""Distillation objectives: MiniLM (v1), MiniLMv2, hidden-state and embedding MSE.

An objective takes the teacher's and the student's relation features, dicts
with `queries`, `keys`, `values` ([B, T, H, d] or [B, T, D]) and
`padding_mask` ([B, T]), and returns one per-example loss tensor [B] per
component. `MiniLMDistillationLoss` packages an objective as a
`keras.distillation.DistillationLoss` for users of `keras.distillation`.
"""

from typing import Mapping, Sequence

import keras
import tensorflow as tf

from minilm_tf import relations, representations
from minilm_tf.layers import SelfAttentionRelations

Features = Mapping[str, tf.Tensor]


def _flat(x: tf.Tensor) -> tf.Tensor:
    """Concatenates heads: [B, T, H, d] -> [B, T, H * d]; [B, T, D] as is."""
    if len(x.shape) == 4:
        shape = tf.shape(x)
        return tf.reshape(x, [shape[0], shape[1], x.shape[2] * x.shape[3]])
    return x


class Objective:
    """Base of every distillation objective: named per-example loss components.

    An objective maps the teacher's and the student's features (dicts from
    `SelfAttentionRelations`: `queries`, `keys`, `values` when
    `needs_relations`, `sequence_output` when `needs_sequence_output`, and
    always `padding_mask`) to one per-example loss tensor [B] per component;
    `total` is their weighted sum. Objectives with trainable parts (a
    projection from the student's width to the teacher's) create them in
    `build` and list them in `layers`; the distiller trains and checkpoints
    them beside the student.
    """

    name: str = ""
    needs_relations: bool = False
    needs_sequence_output: bool = False
    num_relation_heads: int | None = None
    weights: dict[str, float] = {}

    @property
    def component_names(self) -> tuple[str, ...]:
        return tuple(self.weights)

    @property
    def layers(self) -> list:
        """Keras layers with trainable weights (projections), once built."""
        return []

    def validate(
        self, teacher_heads: int, teacher_dim: int, student_heads: int, student_dim: int
    ) -> None:
        """Raises ValueError when teacher and student cannot be paired."""

    def build(self, teacher_dim: int, student_dim: int) -> None:
        """Creates trainable parts for these widths (none by default)."""

    def __call__(self, teacher: Features, student: Features) -> dict[str, tf.Tensor]:
        raise NotImplementedError  # every concrete objective defines it

    def total(self, components: Mapping[str, tf.Tensor]) -> tf.Tensor:
        """Weighted sum of components (works for per-example or scalar ones)."""
        return tf.add_n([self.weights[name] * components[name] for name in self.weights])


def _component_weights(names, weights: Mapping[str, float] | None, owner: str) -> dict:
    weights = dict(weights or {})
    unknown = set(weights) - set(names)
    if unknown:
        raise ValueError(
            f"Unknown loss weight(s) {sorted(unknown)} for {owner}; valid names: {sorted(names)}."
        )
    return {name: float(weights.get(name, 1.0)) for name in names}


class MiniLMObjective(Objective):
    """Base of the relation objectives: a weighted sum of relation KL terms.

    Subclasses set `relations_used`: component name -> (a, b) feature keys.
    """

    version: str = ""
    relations_used: dict[str, tuple[str, str]] = {}
    needs_relations = True

    def __init__(self, num_relation_heads: int, weights: Mapping[str, float] | None = None):
        if num_relation_heads <= 0:
            raise ValueError(f"num_relation_heads must be positive, got {num_relation_heads}.")
        self.num_relation_heads = int(num_relation_heads)
        self.name = self.version
        self.weights = _component_weights(self.relations_used, weights, self.version)

    def validate(
        self, teacher_heads: int, teacher_dim: int, student_heads: int, student_dim: int
    ) -> None:
        for who, dim in (("teacher", teacher_dim), ("student", student_dim)):
            if dim % self.num_relation_heads:
                raise ValueError(
                    f"The {who} hidden size {dim} is not divisible by "
                    f"num_relation_heads={self.num_relation_heads}. Pick a "
                    "relation-head count that divides both hidden sizes "
                    f"(teacher {teacher_dim}, student {student_dim})."
                )

    def relation_logits(self, features: Features) -> dict[str, tf.Tensor]:
        """Each component's relation logits, [B, R, T, T] float32."""
        mask = features["padding_mask"]
        return {
            name: relations.relation_logits(
                _flat(features[a]), _flat(features[b]), self.num_relation_heads, mask
            )
            for name, (a, b) in self.relations_used.items()
        }

    def __call__(self, teacher: Features, student: Features) -> dict[str, tf.Tensor]:
        """Per-example loss components, each [B] float32."""
        mask = student["padding_mask"]
        used = {key for pair in self.relations_used.values() for key in pair}
        # One flat tensor per feature, so a self-relation passes the same
        # tensor twice and `relation_loss` takes its symmetric path.
        t = {key: _flat(teacher[key]) for key in used}
        s = {key: _flat(student[key]) for key in used}
        return {
            name: relations.relation_loss(t[a], t[b], s[a], s[b], self.num_relation_heads, mask)
            for name, (a, b) in self.relations_used.items()
        }


class MiniLMv1Objective(MiniLMObjective):
    """MiniLM: attention-distribution KL + value-relation KL.

    Relations are split into the models' own attention heads, which must be
    the same number in teacher and student.

    Args:
        num_heads: the (shared) number of attention heads.
        weights: optional per-component weights, names `attention_loss` and
            `value_relation_loss`; 1.0 each by default (the paper).
    """

    version = "minilm"
    relations_used = {
        "attention_loss": ("queries", "keys"),
        "value_relation_loss": ("values", "values"),
    }

    def validate(self, teacher_heads, teacher_dim, student_heads, student_dim):
        if teacher_heads != student_heads:
            raise ValueError(
                f"MiniLM v1 needs the same number of attention heads in teacher "
                f"({teacher_heads}) and student ({student_heads}). Build the "
                f"student with num_heads={teacher_heads}, or use the MiniLMv2 "
                "objective (objective='minilmv2'), whose relation heads are "
                "independent of the attention heads."
            )
        super().validate(teacher_heads, teacher_dim, student_heads, student_dim)


class MiniLMv2Objective(MiniLMObjective):
    """MiniLMv2: Q-Q, K-K and V-V self-attention relation KL.

    Args:
        num_relation_heads: relation heads (48 for base-size teachers and 64
            for large ones in the published recipes); must divide both hidden
            sizes.
        weights: optional per-component weights, names `query_relation_loss`,
            `key_relation_loss`, `value_relation_loss`; 1.0 each by default.
    """

    version = "minilmv2"
    relations_used = {
        "query_relation_loss": ("queries", "queries"),
        "key_relation_loss": ("keys", "keys"),
        "value_relation_loss": ("values", "values"),
    }


class _Projected(Objective):
    """An objective on the models' hidden states, with a learned projection
    (a dense layer, student width -> teacher width) when the widths differ."""

    needs_sequence_output = True

    def __init__(self, weight_names, weights):
        self.weights = _component_weights(weight_names, weights, self.name)
        self.projection = None

    @property
    def layers(self) -> list:
        return [self.projection] if self.projection is not None else []

    def build(self, teacher_dim: int, student_dim: int) -> None:
        if teacher_dim != student_dim and self.projection is None:
            self.projection = keras.layers.Dense(teacher_dim, name=f"{self.name}_projection")
            self.projection.build((None, student_dim))

    def _project(self, x: tf.Tensor) -> tf.Tensor:
        return x if self.projection is None else self.projection(x)


class HiddenStateMSE(_Projected):
    """Mean squared error between the teacher's and the student's last hidden
    states, per real token (TinyBERT's hidden-state loss on the last layer).

    The student's states go through a learned projection to the teacher's
    width when the widths differ. Component: `hidden_mse_loss`.
    """

    name = "hidden_mse"

    def __init__(self, weights: Mapping[str, float] | None = None):
        super().__init__(("hidden_mse_loss",), weights)

    def __call__(self, teacher: Features, student: Features) -> dict[str, tf.Tensor]:
        s = self._project(student["sequence_output"])
        loss = representations.hidden_mse(teacher["sequence_output"], s, student["padding_mask"])
        return {"hidden_mse_loss": loss}


class EmbeddingMSE(_Projected):
    """Mean squared error between the teacher's and the student's sentence
    embeddings (sentence-transformers' distillation recipe).

    Both embeddings are pooled over real tokens with the teacher's pooling
    (`mean`, `cls` or `max`) and L2-normalised when the teacher normalises
    (its sentence-transformers `Normalize` module); the student's hidden
    states are projected to the teacher's width first when the widths
    differ. Component: `embedding_mse_loss`. For unit-length embeddings the
    loss is (2 - 2 cos) / D, so it is small: weight it up when it is one
    term of a sum (e.g. `minilm+300*embedding_mse`).

    Args:
        pooling: pooling mode; default `mean`.
        normalize: L2-normalise both embeddings; default False.
        weights: optional weight for `embedding_mse_loss`.
    """

    name = "embedding_mse"

    def __init__(
        self,
        pooling: str = "mean",
        normalize: bool = False,
        weights: Mapping[str, float] | None = None,
    ):
        if pooling not in representations.POOLING_MODES:
            raise ValueError(
                f"Unknown pooling {pooling!r}; use one of {representations.POOLING_MODES}."
            )
        super().__init__(("embedding_mse_loss",), weights)
        self.pooling = pooling
        self.normalize = bool(normalize)

    def embed(self, hidden: tf.Tensor, padding_mask: tf.Tensor) -> tf.Tensor:
        """Pooled (and normalised, when configured) [B, D] float32 embeddings."""
        pooled = representations.pool(hidden, padding_mask, self.pooling)
        return representations.l2_normalize(pooled) if self.normalize else pooled

    def __call__(self, teacher: Features, student: Features) -> dict[str, tf.Tensor]:
        mask = student["padding_mask"]
        t = self.embed(teacher["sequence_output"], mask)
        s = self.embed(self._project(student["sequence_output"]), mask)
        return {"embedding_mse_loss": representations.embedding_mse(t, s)}


class CompositeObjective(Objective):
    """A weighted sum of objectives, e.g. MiniLM + sentence-embedding MSE.

    Args:
        terms: `(weight, objective)` pairs; their component names must differ.
    """

    def __init__(self, terms: Sequence[tuple[float, Objective]]):
        if len(terms) < 2:
            raise ValueError("A composite objective needs at least two terms.")
        self.terms = [(float(w), objective) for w, objective in terms]
        self.weights = {}
        for weight, objective in self.terms:
            if not weight > 0:
                raise ValueError(f"Term weights must be positive, got {weight} for {objective.name}.")
            for name, value in objective.weights.items():
                if name in self.weights:
                    raise ValueError(
                        f"Objectives {[o.name for _, o in self.terms]} both have the component "
                        f"{name!r}; combine objectives whose components differ."
                    )
                self.weights[name] = weight * value
        self.name = "+".join(
            objective.name if weight == 1 else f"{weight:g}*{objective.name}"
            for weight, objective in self.terms
        )
        self.needs_relations = any(o.needs_relations for _, o in self.terms)
        self.needs_sequence_output = any(o.needs_sequence_output for _, o in self.terms)
        heads = [o.num_relation_heads for _, o in self.terms if o.num_relation_heads]
        self.num_relation_heads = heads[0] if heads else None

    @property
    def layers(self) -> list:
        return [layer for _, objective in self.terms for layer in objective.layers]

    def validate(self, teacher_heads, teacher_dim, student_heads, student_dim) -> None:
        for _, objective in self.terms:
            objective.validate(teacher_heads, teacher_dim, student_heads, student_dim)

    def build(self, teacher_dim: int, student_dim: int) -> None:
        for _, objective in self.terms:
            objective.build(teacher_dim, student_dim)

    def __call__(self, teacher: Features, student: Features) -> dict[str, tf.Tensor]:
        components = {}
        for _, objective in self.terms:
            components.update(objective(teacher, student))
        return components


# Accepted spellings of each objective name (lower case, without - and _).
_OBJECTIVE_ALIASES = {
    "minilm": "minilm", "minilmv1": "minilm", "v1": "minilm",
    "minilmv2": "minilmv2", "v2": "minilmv2",
    "hiddenmse": "hidden_mse", "embeddingmse": "embedding_mse",
    "none": "none",
}
OBJECTIVES = ("minilm", "minilmv2", "hidden_mse", "embedding_mse", "none")


def parse_objective(spec: str) -> list[tuple[float, str]]:
    """`"minilm+300*embedding_mse"` -> `[(1.0, "minilm"), (300.0, "embedding_mse")]`.

    Each `+`-separated term is a name from `OBJECTIVES`, optionally preceded
    by `WEIGHT*`. `none` (no distillation) stands alone.
    """
    terms = []
    for raw in str(spec).split("+"):
        weight, _, name = raw.strip().rpartition("*")
        key = _OBJECTIVE_ALIASES.get(name.strip().lower().replace("-", "").replace("_", ""))
        if key is None:
            raise ValueError(
                f"Unknown objective {name.strip()!r} in {spec!r}; use one of {list(OBJECTIVES)}, "
                "or a sum of them such as 'minilm+300*embedding_mse'."
            )
        try:
            value = float(weight) if weight.strip() else 1.0
        except ValueError:
            raise ValueError(f"Bad weight {weight!r} in objective {spec!r}; write e.g. 0.5*minilm.")
        terms.append((value, key))
    names = [name for _, name in terms]
    if "none" in names and len(names) > 1:
        raise ValueError(f"'none' means no distillation and cannot be combined ({spec!r}).")
    if len(set(names)) < len(names):
        raise ValueError(f"Objective {spec!r} names a term twice; give it one weight instead.")
    return terms


def make_objective(
    objective: str | Objective,
    num_heads: int,
    num_relation_heads: int | None = None,
    weights: Mapping[str, float] | None = None,
    pooling: str = "mean",
    normalize: bool = False,
) -> Objective:
    """Builds an objective from its name or passes an `Objective` through.

    Args:
        objective: `minilm` (v1), `minilmv2`, `hidden_mse`, `embedding_mse`,
            a weighted sum such as `minilmv2+300*embedding_mse`, or an
            `Objective`.
        num_heads: the attention heads v1 splits its relations into.
        num_relation_heads: MiniLMv2 relation heads (default 48).
        weights: optional per-component weights (e.g. `attention_loss`).
        pooling, normalize: sentence embedding of `embedding_mse` (the
            teacher's sentence-transformers pooling).
    """
    if isinstance(objective, Objective):
        return objective
    terms = parse_objective(objective)
    if terms[0][1] == "none":
        raise ValueError(
            "objective='none' means no distillation: use the initialised student as it is "
            "(run_distillation does so) instead of building a distiller."
        )
    names = [name for _, name in terms]
    if num_relation_heads is not None and "minilmv2" not in names:
        if "minilm" not in names or num_relation_heads != num_heads:
            raise ValueError(
                f"num_relation_heads={num_relation_heads} only applies to 'minilmv2'; MiniLM v1 "
                f"splits relations into the attention heads ({num_heads})."
            )
    weights = dict(weights or {})
    built = []
    for weight, name in terms:
        if name == "minilm":
            cls_names = MiniLMv1Objective.relations_used
        elif name == "minilmv2":
            cls_names = MiniLMv2Objective.relations_used
        else:
            cls_names = (f"{name}_loss",)
        own = {k: weights.pop(k) for k in list(weights) if k in cls_names}
        if name == "minilm":
            term = MiniLMv1Objective(num_heads, own)
        elif name == "minilmv2":
            term = MiniLMv2Objective(num_relation_heads or 48, own)
        elif name == "hidden_mse":
            term = HiddenStateMSE(own)
        else:
            term = EmbeddingMSE(pooling, normalize, own)
        built.append((weight, term))
    if weights:
        raise ValueError(
            f"Unknown loss weight(s) {sorted(weights)} for objective {objective!r}."
        )
    if len(built) > 1:
        return CompositeObjective(built)
    weight, term = built[0]
    if weight != 1.0:  # one scaled term: its components carry the weight
        term.weights = {k: weight * v for k, v in term.weights.items()}
        term.name = f"{weight:g}*{term.name}"
    return term


class MiniLMDistillationLoss(keras.distillation.DistillationLoss):
    """A MiniLM objective as a `keras.distillation.DistillationLoss`.

    `keras.distillation.Distiller` requires teacher and student outputs of the
    same shape, so both models output relation logits
    ([B, R, T, T] per component, whatever their widths): build them with
    `relation_model(backbone, objective)`.

    ```python
    objective = MiniLMv1Objective(num_heads=12)
    distiller = keras.distillation.Distiller(
        teacher=relation_model(teacher_backbone, objective),
        student=relation_model(student_backbone, objective),
        distillation_losses=MiniLMDistillationLoss(objective),
        student_loss_weight=0.0,
    )
    distiller.compile(optimizer="adamw", loss="mse")  # `loss` is unused here
    ```
    The loss is the weighted sum of the components, averaged over examples.
    """

    def __init__(self, objective: MiniLMObjective):
        self.objective = objective

    def validate_outputs(self, teacher_outputs, student_outputs):
        for who, outputs in (("teacher", teacher_outputs), ("student", student_outputs)):
            missing = {*self.objective.component_names, "padding_mask"} - set(outputs)
            if missing:
                raise ValueError(
                    f"The {who} outputs lack {sorted(missing)}; build the model "
                    "with minilm_tf.relation_model(backbone, objective)."
                )

    def compute_loss(self, teacher_outputs, student_outputs, **kwargs):
        mask = student_outputs["padding_mask"]
        components = {
            name: relations.relation_kl(teacher_outputs[name], student_outputs[name], mask)
            for name in self.objective.component_names
        }
        return tf.reduce_mean(self.objective.total(components))


def relation_model(
    backbone: keras.Model, objective: MiniLMObjective, layer_index: int = -1
) -> keras.Model:
    """A functional model: backbone inputs -> relation logits.

    Outputs one [B, R, T, T] tensor per component of `objective` plus the
    `padding_mask`; the input to `MiniLMDistillationLoss`.
    """
    inputs = {
        name: keras.Input(shape=(None,), dtype="int32", name=name) for name in backbone.input
    }
    features = SelfAttentionRelations(backbone, layer_index)(inputs)
    outputs = RelationLogits(objective)(features)
    return keras.Model(inputs, outputs, name=f"{backbone.name}_relations")


class RelationLogits(keras.layers.Layer):
    """Keras layer form of `MiniLMObjective.relation_logits`."""

    def __init__(self, objective: MiniLMObjective, **kwargs):
        super().__init__(**kwargs)
        self.objective = objective

    def call(self, features):
        outputs = self.objective.relation_logits(features)
        outputs["padding_mask"] = features["padding_mask"]
        return outputs

    def compute_output_spec(self, features):
        batch, length = features["padding_mask"].shape
        heads = self.objective.num_relation_heads
        spec = {
            name: keras.KerasTensor((batch, heads, length, length), dtype="float32")
            for name in self.objective.component_names
        }
        spec["padding_mask"] = keras.KerasTensor((batch, length), dtype="int32")
        return spec
