"""Building student encoders from a teacher's architecture and vocabulary."""

import numpy as np
import keras

from minilm_tf.teacher import LoadedEncoder


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
        init: `random` (the paper) or `teacher_layers`: copy the teacher's
            embeddings and an evenly spaced subset of its layers (needs equal
            hidden, intermediate and head sizes).
        dropout: dropout rate; defaults to the teacher's.
        max_sequence_length: defaults to the teacher's.
        seed: seed for the random initialisation.

    Returns:
        A `LoadedEncoder` with the student backbone and the teacher's tokenizer.
        The student uses keras-hub's own GELU (tanh approximation), so it loads
        unchanged with `keras_hub.models.Backbone.from_preset`.
    """
    for name, value in (("num_layers", num_layers), ("hidden_dim", hidden_dim), ("num_heads", num_heads)):
        if int(value) <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value}.")
    if hidden_dim % num_heads:
        raise ValueError(
            f"hidden_dim={hidden_dim} is not divisible by num_heads={num_heads}."
        )
    if init not in ("random", "teacher_layers"):
        raise ValueError(f"init must be 'random' or 'teacher_layers', got {init!r}.")
    if seed is not None:
        keras.utils.set_random_seed(seed)
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
    if init == "teacher_layers":
        _copy_teacher_layers(teacher.backbone, backbone)
    return LoadedEncoder(
        backbone=backbone,
        tokenizer=teacher.tokenizer,
        spec=f"student({num_layers}x{hidden_dim}x{num_heads}) of {teacher.spec}",
        hidden_act="gelu_approximate",
        metadata={
            key: value for key, value in teacher.metadata.items() if key in ("pooling", "normalize")
        },
    )


def _copy_teacher_layers(teacher: keras.Model, student: keras.Model) -> None:
    for attr in ("hidden_dim", "intermediate_dim", "num_heads"):
        if getattr(teacher, attr) != getattr(student, attr):
            raise ValueError(
                f"init='teacher_layers' needs the teacher's {attr} "
                f"({getattr(teacher, attr)}), got {getattr(student, attr)}; use "
                "init='random' for a narrower student."
            )
    if student.num_layers > teacher.num_layers:
        raise ValueError("A student deeper than its teacher cannot copy its layers.")
    chosen = np.linspace(0, teacher.num_layers - 1, student.num_layers).round().astype(int)
    transformer_names = {layer.name for layer in teacher.transformer_layers}
    for layer in teacher.layers:
        if layer.weights and layer.name not in transformer_names:
            student.get_layer(layer.name).set_weights(layer.get_weights())
    for student_layer, index in zip(student.transformer_layers, chosen):
        student_layer.set_weights(teacher.transformer_layers[index].get_weights())


def count_params(model: keras.Model) -> int:
    """Number of scalar weights in a model."""
    return int(sum(np.prod(w.shape) for w in model.weights))
