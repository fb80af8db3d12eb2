"""Distillation objectives: MiniLM (v1) and MiniLMv2, and building any objective by name.

A relation objective takes the teacher's and the student's relation
features, dicts with `queries`, `keys`, `values` ([B, T, H, d] or [B, T, D])
and `padding_mask` ([B, T]), and returns one per-example loss tensor [B] per
component (the interface: `minilm_tf.losses.objective.Objective`).
`make_objective` builds these, the hidden-state objectives of
`minilm_tf.losses.state_losses` and weighted sums from a name such as
`minilm+300*embedding_mse`. `MiniLMDistillationLoss` packages a relation
objective as a `keras.distillation.DistillationLoss`.
"""

from typing import Mapping

import keras
import tensorflow as tf

from minilm_tf.losses import relations
from minilm_tf.losses.objective import CompositeObjective, Features, Objective, component_weights
from minilm_tf.losses.state_losses import EmbeddingMSE, HiddenStateMSE

__all__ = [
    "CompositeObjective", "EmbeddingMSE", "HiddenStateMSE", "MiniLMDistillationLoss",
    "MiniLMObjective", "MiniLMv1Objective", "MiniLMv2Objective", "OBJECTIVES", "Objective",
    "make_objective", "parse_objective",
]


def _flat(x: tf.Tensor) -> tf.Tensor:
    """Concatenates heads: [B, T, H, d] -> [B, T, H * d]; [B, T, D] as is."""
    if len(x.shape) == 4:
        shape = tf.shape(x)
        return tf.reshape(x, [shape[0], shape[1], x.shape[2] * x.shape[3]])
    return x


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
        self.weights = component_weights(self.relations_used, weights, self.version)

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
        t = {key: _flat(teacher[key]) for key in used}
        s = {key: _flat(student[key]) for key in used}
        return {
            name: relations.relation_loss(t[a], t[b], s[a], s[b], self.num_relation_heads, mask,
                                          symmetric=a == b)
            for name, (a, b) in self.relations_used.items()
        }

    def get_config(self) -> dict:
        return {"num_relation_heads": self.num_relation_heads, "weights": dict(self.weights)}

    @classmethod
    def from_config(cls, config: Mapping) -> "MiniLMObjective":
        return cls(**config)


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

    def __init__(self, num_heads: int, weights: Mapping[str, float] | None = None):
        super().__init__(num_heads, weights)

    def get_config(self) -> dict:
        return {"num_heads": self.num_relation_heads, "weights": dict(self.weights)}

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


_RELATION_OBJECTIVES = {cls.version: cls for cls in (MiniLMv1Objective, MiniLMv2Objective)}


def serialize_relation_objective(objective: MiniLMObjective) -> dict:
    """`{"version": "minilm" | "minilmv2", "config": objective.get_config()}`."""
    return {"version": objective.version, "config": objective.get_config()}


def deserialize_relation_objective(config: Mapping) -> MiniLMObjective:
    """The inverse of `serialize_relation_objective`."""
    version = config.get("version")
    if version not in _RELATION_OBJECTIVES:
        raise ValueError(f"Unknown relation objective {version!r}; known: {sorted(_RELATION_OBJECTIVES)}.")
    return _RELATION_OBJECTIVES[version].from_config(config["config"])


@keras.saving.register_keras_serializable(package="minilm_tf")
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
        super().__init__()
        self.objective = objective

    def validate_outputs(self, teacher_outputs, student_outputs):
        for who, outputs in (("teacher", teacher_outputs), ("student", student_outputs)):
            missing = {*self.objective.component_names, "padding_mask"} - set(outputs)
            if missing:
                raise ValueError(
                    f"The {who} outputs lack {sorted(missing)}; build the model "
                    "with minilm_tf.layers.relation_model(backbone, objective)."
                )

    def compute_loss(self, teacher_outputs, student_outputs, **kwargs):
        mask = student_outputs["padding_mask"]
        components = {
            name: relations.relation_kl(teacher_outputs[name], student_outputs[name], mask)
            for name in self.objective.component_names
        }
        return tf.reduce_mean(self.objective.total(components))

    def get_config(self) -> dict:
        return {"objective": serialize_relation_objective(self.objective)}

    @classmethod
    def from_config(cls, config: Mapping) -> "MiniLMDistillationLoss":
        return cls(deserialize_relation_objective(config["objective"]))
