"""A distillation run's config: the checks that give clear errors, and what
must not change when a run resumes.

The config is a nested mapping (an `ml_collections.ConfigDict` from
`configs/`); see `configs/demo_cpu.py` for every key.
"""

import json
from typing import Any, Mapping

from minilm_tf.losses import parse_objective
from minilm_tf.models.students import INITS
from minilm_tf.training.distribute import resolve_jit_compile

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
# `train.fast_paths` -> `MiniLMDistiller(fast_paths=...)`.
FAST_PATHS = {"auto": None, "true": True, "false": False}

# Config keys that must not change when a run resumes.
_IDENTITY_KEYS = (
    ("teacher",),
    ("teacher_layer",),
    ("objective",),
    ("num_relation_heads",),
    ("student", "num_layers"),
    ("student", "hidden_dim"),
    ("student", "num_heads"),
    ("student", "intermediate_dim"),
    ("student", "init"),
    ("student", "freeze_embeddings"),
    ("data", "seq_length"),
)


# Keys where runs saved by earlier versions wrote 0 for "unset" (now None).
_ZERO_MEANT_UNSET = (("num_relation_heads",), ("student", "intermediate_dim"))
# Keys that runs saved by earlier versions lack, with the value they ran with.
_ADDED_KEYS = {("student", "freeze_embeddings"): False}


def _get(config: Mapping, path: tuple[str, ...]) -> Any:
    value = config
    for key in path:
        if key not in value and path in _ADDED_KEYS:
            return _ADDED_KEYS[path]
        value = value[key]
    if path in _ZERO_MEANT_UNSET and value == 0:
        return None
    return value


def config_to_dict(config: Any) -> dict:
    return config.to_dict() if hasattr(config, "to_dict") else json.loads(json.dumps(config))


def validate_config(config: Mapping) -> None:
    """Clear errors for values that cannot work."""
    train, data = config["train"], config["data"]
    for name, value in (
        ("train.batch_size", train["batch_size"]),
        ("train.steps", train["steps"]),
        ("train.learning_rate", train["learning_rate"]),
        ("train.checkpoint_every", train["checkpoint_every"]),
        ("train.log_every", train["log_every"]),
        ("data.seq_length", data["seq_length"]),
    ):
        if not value > 0:
            raise ValueError(f"{name} must be positive, got {value}.")
    if data["seq_length"] < 8:
        raise ValueError(f"data.seq_length={data['seq_length']} is too short; use at least 8.")
    if not 0 < data["heldout_fraction"] < 1:
        raise ValueError(f"data.heldout_fraction must be in (0, 1), got {data['heldout_fraction']}.")
    try:
        resolve_jit_compile(train["jit_compile"])
    except ValueError as e:
        raise ValueError(f"train.{e}") from None
    if str(train.get("fast_paths", "true")).lower() not in FAST_PATHS:
        raise ValueError(f"train.fast_paths must be one of {sorted(FAST_PATHS)}, "
                         f"got {train['fast_paths']!r}.")
    if train["precision"] not in PRECISIONS:
        raise ValueError(f"train.precision must be one of {PRECISIONS}, got {train['precision']!r}.")
    for name, value in (("num_relation_heads", config["num_relation_heads"]),
                        ("student.intermediate_dim", config["student"]["intermediate_dim"])):
        if value is not None and not value > 0:
            raise ValueError(f"{name} must be positive, or None for the default; got {value}.")
    if train["clipnorm"] is not None and train["clipnorm"] < 0:
        raise ValueError(f"train.clipnorm must be >= 0 (0: no clipping), got {train['clipnorm']}.")
    parse_objective(config["objective"])
    if config["student"]["init"] not in INITS:
        raise ValueError(f"student.init must be one of {INITS}, got {config['student']['init']!r}.")
    if config["student"].get("freeze_embeddings") and config["student"]["init"] == "random":
        raise ValueError(
            "student.freeze_embeddings=True keeps the student's embeddings as initialised, "
            "and student.init='random' initialises them randomly: set student.init to "
            "teacher_layers or teacher_bottom (the teacher's embeddings), or "
            "freeze_embeddings=False.")


def check_resume_compatible(saved: Mapping, config: Mapping) -> None:
    """Refuses to resume a run whose teacher/student/objective changed."""
    mismatches = []
    for path in _IDENTITY_KEYS:
        old, new = _get(saved, path), _get(config, path)
        if old != new:
            mismatches.append(f"{'.'.join(path)}: {old!r} in the saved run, {new!r} now")
    if mismatches:
        raise ValueError(
            "The work directory holds a run with a different setup ("
            + "; ".join(mismatches)
            + "). Use a new work directory (`workdir`), or restore the original values."
        )
