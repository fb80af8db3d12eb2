"""The objective interface every distillation loss implements, and weighted sums of them."""

import abc
from typing import Mapping, Sequence

import tensorflow as tf

Features = Mapping[str, tf.Tensor]


class Objective(abc.ABC):
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

    @abc.abstractmethod
    def __call__(self, teacher: Features, student: Features) -> dict[str, tf.Tensor]:
        """Per-example loss components, each [B] float32."""

    def total(self, components: Mapping[str, tf.Tensor]) -> tf.Tensor:
        """Weighted sum of components (works for per-example or scalar ones)."""
        return tf.add_n([self.weights[name] * components[name] for name in self.weights])


def component_weights(names, weights: Mapping[str, float] | None, owner: str) -> dict:
    """Each component's weight (1.0 unless given); unknown names are an error."""
    weights = dict(weights or {})
    unknown = set(weights) - set(names)
    if unknown:
        raise ValueError(
            f"Unknown loss weight(s) {sorted(unknown)} for {owner}; valid names: {sorted(names)}."
        )
    return {name: float(weights.get(name, 1.0)) for name in names}


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
