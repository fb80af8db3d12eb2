"""Building student encoders from a teacher's architecture and vocabulary."""

import numpy as np
import keras

from minilm_tf.models.encoders import LoadedEncoder, set_feedforward_activation
from minilm_tf.utils.seeding import set_random_seed

INITS = ("random", "teacher_layers", "teacher_bottom")


def build_student(
    teacher: LoadedEncoder,
    num_layers: int,
    hidden_dim: int,
    num_heads: int,
    intermediate_dim: int | None = None,
    init: str = "random",
    dropout: float | None = None,
    max_sequence_length: int | None = None,
    seed: int | None = None,
) -> LoadedEncoder:
    """Builds a smaller encoder of the teacher's architecture and vocabulary.

    Args:
        teacher: the loaded teacher.
        num_layers: student depth.
        hidden_dim: student width; must be divisible by `num_heads`.
        num_heads: student attention heads (MiniLM v1 needs the teacher's).
        intermediate_dim: feed-forward width; defaults to the teacher's ratio
            of feed-forward to hidden width (4 for BERT) times hidden_dim.
        init: `random` (the paper), `teacher_layers` (copy the teacher's
            embeddings, pooler and an evenly spaced subset of its layers,
            first and last included: DistilBERT's initialisation) or
            `teacher_bottom` (embeddings, pooler and the teacher's first
            `num_layers` layers). Copying needs the teacher's hidden,
            intermediate and head sizes; a narrower student cannot copy
            anything and must use `random`.
        dropout: dropout rate; defaults to the teacher's.
        max_sequence_length: defaults to the teacher's.
        seed: seed for the random initialisation.

    Returns:
        A `LoadedEncoder` with the student backbone and the teacher's
        tokenizer; `metadata["init"]` says what was copied. A random student
        uses keras-hub's own GELU (tanh approximation), so it loads unchanged
        with `keras_hub.models.Backbone.from_preset`; a student made of
        teacher layers keeps the teacher's feed-forward activation, so that
        it computes exactly what those layers computed in the teacher.
    """
    for name, value in (("num_layers", num_layers), ("hidden_dim", hidden_dim), ("num_heads", num_heads)):
        if int(value) <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value}.")
    if hidden_dim % num_heads:
        raise ValueError(
            f"hidden_dim={hidden_dim} is not divisible by num_heads={num_heads}."
        )
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}.")
    if seed is not None:
        set_random_seed(seed, teacher.tokenizer)
    config = teacher.backbone.get_config()
    config.update(
        num_layers=int(num_layers),
        hidden_dim=int(hidden_dim),
        num_heads=int(num_heads),
        intermediate_dim=int(
            intermediate_dim
            or hidden_dim * teacher.backbone.intermediate_dim // teacher.backbone.hidden_dim
        ),
        name="student_backbone",
    )
    if "embedding_dim" in config:  # ELECTRA-style factorised embeddings.
        config["embedding_dim"] = int(hidden_dim)
    if dropout is not None:
        config["dropout"] = float(dropout)
    if max_sequence_length is not None:
        config["max_sequence_length"] = int(max_sequence_length)
    config.pop("dtype", None)
    config.pop("trainable", None)  # a teacher frozen by a distiller must not freeze its student
    backbone = type(teacher.backbone).from_config(config)
    hidden_act = "gelu_approximate"
    init_info = {"mode": init, "copied": [], "teacher_layers": []}
    if init != "random":
        init_info = _copy_teacher_layers(teacher.backbone, backbone, init)
        hidden_act = teacher.hidden_act
        set_feedforward_activation(backbone, hidden_act)
    metadata = {key: value for key, value in teacher.metadata.items() if key in ("pooling", "normalize")}
    metadata["init"] = init_info
    return LoadedEncoder(
        backbone=backbone,
        tokenizer=teacher.tokenizer,
        spec=f"student({num_layers}x{hidden_dim}x{num_heads}) of {teacher.spec}",
        hidden_act=hidden_act,
        metadata=metadata,
    )


def copied_layer_indices(teacher_layers: int, student_layers: int, init: str) -> list[int]:
    """The teacher layers a `teacher_layers` / `teacher_bottom` student copies.

    `teacher_layers`: evenly spaced, first and last included (6 -> 3 gives
    0, 2, 5); `teacher_bottom`: the first `student_layers`.
    """
    if student_layers > teacher_layers:
        raise ValueError(
            f"A student of {student_layers} layers cannot copy layers of a "
            f"{teacher_layers}-layer teacher; use init='random' or fewer layers."
        )
    if init == "teacher_bottom":
        return list(range(student_layers))
    return [int(i) for i in np.linspace(0, teacher_layers - 1, student_layers).round()]


def _copy_teacher_layers(teacher: keras.Model, student: keras.Model, init: str) -> dict:
    for attr in ("hidden_dim", "intermediate_dim", "num_heads"):
        if getattr(teacher, attr) != getattr(student, attr):
            raise ValueError(
                f"init={init!r} needs the teacher's {attr} "
                f"({getattr(teacher, attr)}), got {getattr(student, attr)}: no weight of a "
                "narrower student can be copied from the teacher; use init='random'."
            )
    chosen = copied_layer_indices(teacher.num_layers, student.num_layers, init)
    transformer_names = {layer.name for layer in teacher.transformer_layers}
    copied = []
    for layer in teacher.layers:
        if layer.weights and layer.name not in transformer_names:
            student.get_layer(layer.name).set_weights(layer.get_weights())
            copied.append(layer.name)
    for student_layer, index in zip(student.transformer_layers, chosen):
        student_layer.set_weights(teacher.transformer_layers[index].get_weights())
        copied.append(f"{student_layer.name} <- {teacher.transformer_layers[index].name}")
    return {"mode": init, "copied": copied, "teacher_layers": chosen}


def embedding_layers(backbone: keras.Model) -> list:
    """The backbone's layers with weights before its first transformer layer:
    the token, position and segment embeddings and their LayerNorm (and an
    ELECTRA-style projection)."""
    first = backbone.transformer_layers[0]
    layers = []
    for layer in backbone.layers:
        if layer is first:
            return layers
        if layer.weights:
            layers.append(layer)
    raise ValueError(f"{backbone.name} has no transformer layer after its embeddings.")


def freeze_embeddings(backbone: keras.Model) -> list[str]:
    """Makes `embedding_layers(backbone)` untrainable; returns their names."""
    layers = embedding_layers(backbone)
    for layer in layers:
        layer.trainable = False
    return [layer.name for layer in layers]


def count_params(model: keras.Model) -> int:
    """Number of scalar weights in a model."""
    return int(sum(np.prod(w.shape) for w in model.weights))
