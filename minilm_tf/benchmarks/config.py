"""What one distillation-step benchmark measures: `BenchmarkConfig`."""

import dataclasses

from minilm_tf.training.distribute import JIT_CHOICES

OBJECTIVES = ("minilm", "minilmv2")
# `fast_paths` -> `MiniLMDistiller(fast_paths=...)`.
FAST_PATHS = {"auto": None, "true": True, "false": False}


def parse_student(spec: str) -> tuple[int, int, int]:
    """`"3x384x12"` -> (layers, hidden width, heads)."""
    parts = spec.lower().split("x")
    if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ValueError(
            f"student must look like LAYERSxHIDDENxHEADS (e.g. 3x384x12), got {spec!r}.")
    return int(parts[0]), int(parts[1]), int(parts[2])


@dataclasses.dataclass(frozen=True)
class BenchmarkConfig:
    """The teacher, student, batch and measurements of one benchmark run.

    `None` means unset: the teacher's ratio or rate, the objective's default,
    no comparison, a temporary directory. Bad values raise `ValueError` at
    construction, naming the field.

    Args:
        teacher: a `minilm_tf.load_teacher` spec, or `"tiny"` (a small random BERT).
        student: the student's shape, `LAYERSxHIDDENxHEADS`.
        student_intermediate_dim: the student's feed-forward width (default:
            the teacher's ratio).
        student_dropout: the student's dropout rate (default: the teacher's).
        batch_size: examples per step.
        seq_len: tokens per example (padded length).
        padding_fraction: fraction of each example's positions that are
            padding (mask 0), in [0, 1).
        objective: `"minilm"` or `"minilmv2"`.
        num_relation_heads: relation heads of the MiniLMv2 objective (default 48).
        compare_objective: also time the full step with this objective as (a2).
        fast_paths: `"auto"`, `"true"` or `"false"`: `MiniLMDistiller(fast_paths=...)`;
            auto: only when not XLA-compiled.
        compare_fast_paths: (a2) is the step with the other fast-paths
            setting instead (overrides `compare_objective`).
        precisions: Keras dtype policies, measured one after the other.
        jit_compile: `"auto"`, `"true"` or `"false"` for all measurements
            (`minilm_tf.training.distribute.resolve_jit_compile`).
        threads: TensorFlow intra-op threads (0: TensorFlow's default).
        inter_op_threads: TensorFlow inter-op threads (0: TensorFlow's default).
        warmup_steps: untimed steps per measurement (the first traces).
        steps: timed steps per measurement, at least 1.
        learning_rate: AdamW learning rate (constant).
        weight_decay: AdamW weight decay.
        seed: seed of the student and the batch.
        profile_steps: steps of (a) traced with the TensorFlow profiler (0: none).
        profile_dir: profiler output directory (default: a temporary one).
        profile_top: ops listed in the profile summary.

    Examples:

    >>> BenchmarkConfig(teacher="tiny", student="1x24x12", batch_size=4, seq_len=16).steps
    10
    """

    teacher: str = "all-minilm-l6-v2"
    student: str = "3x384x12"
    student_intermediate_dim: int | None = None
    student_dropout: float | None = None
    batch_size: int = 32
    seq_len: int = 128
    padding_fraction: float = 0.0
    objective: str = "minilm"
    num_relation_heads: int | None = None
    compare_objective: str | None = None
    fast_paths: str = "auto"
    compare_fast_paths: bool = False
    precisions: tuple[str, ...] = ("float32",)
    jit_compile: str = "auto"
    threads: int = 0
    inter_op_threads: int = 1
    warmup_steps: int = 3
    steps: int = 10
    learning_rate: float = 1e-4
    weight_decay: float = 0.01
    seed: int = 0
    profile_steps: int = 0
    profile_dir: str | None = None
    profile_top: int = 15

    def __post_init__(self):
        object.__setattr__(self, "precisions", tuple(self.precisions))
        if self.steps < 1:
            raise ValueError("steps must be at least 1.")
        parse_student(self.student)
        if not 0.0 <= self.padding_fraction < 1.0:
            raise ValueError(f"padding_fraction must be in [0, 1), got {self.padding_fraction}.")
        for name, value, choices in (
            ("objective", self.objective, OBJECTIVES),
            ("compare_objective", self.compare_objective, (None,) + OBJECTIVES),
            ("fast_paths", self.fast_paths, tuple(FAST_PATHS)),
            ("jit_compile", self.jit_compile, JIT_CHOICES),
        ):
            if value not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {value!r}.")

    @property
    def student_shape(self) -> tuple[int, int, int]:
        """(layers, hidden width, heads) of the student."""
        return parse_student(self.student)

    @property
    def relation_heads(self) -> int | None:
        """The MiniLMv2 relation heads the run reports (None for MiniLM)."""
        return self.num_relation_heads or (48 if self.objective == "minilmv2" else None)
