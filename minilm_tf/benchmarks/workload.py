"""What one measurement runs: the teacher, the student, their distillers, the
optimizer and the random batch."""

import gc
from typing import NamedTuple

import keras
import keras_hub
import numpy as np

from minilm_tf.benchmarks.config import FAST_PATHS, BenchmarkConfig
from minilm_tf.models.distiller import MiniLMDistiller
from minilm_tf.models.encoders import LoadedEncoder, load_teacher
from minilm_tf.models.students import build_student
from minilm_tf.optimizers.adamw import make_adamw


class Models(NamedTuple):
    """The models of one measurement; `compared` is (a2)'s distiller or None."""

    teacher: LoadedEncoder
    student: LoadedEncoder
    distiller: MiniLMDistiller
    compared: MiniLMDistiller | None


def tiny_teacher(seq_len: int) -> LoadedEncoder:
    """A small random BERT (2 layers, 48 wide, 12 heads, 1000 tokens)."""
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=1000, num_layers=2, num_heads=12, hidden_dim=48,
        intermediate_dim=96, max_sequence_length=max(64, seq_len), name="tiny_teacher")
    return LoadedEncoder(backbone, tokenizer=None, spec="tiny", hidden_act="gelu_approximate")


def make_batch(batch: int, seq_len: int, vocab: int, padding_fraction: float, seed: int) -> dict:
    """Random token ids; every example has the same number of real tokens."""
    if not 0.0 <= padding_fraction < 1.0:
        raise ValueError(f"padding_fraction must be in [0, 1), got {padding_fraction}.")
    real = max(1, seq_len - int(round(padding_fraction * seq_len)))
    rng = np.random.default_rng(seed)
    low = min(1000, vocab // 2)  # skip [PAD]/[CLS]/... and the unused ids of BERT vocabularies
    mask = np.zeros((batch, seq_len), "int32")
    mask[:, :real] = 1
    ids = rng.integers(low, vocab, size=(batch, seq_len)).astype("int32") * mask
    return {"token_ids": ids, "segment_ids": np.zeros_like(ids), "padding_mask": mask}


def make_optimizer(config: BenchmarkConfig) -> keras.optimizers.Optimizer:
    """What tools/distill.py trains with, at a constant learning rate."""
    return make_adamw(config.learning_rate, total_steps=10**9, warmup_steps=0,
                      weight_decay=config.weight_decay)


def build_models(config: BenchmarkConfig, precision: str, jit: bool) -> Models:
    """Fresh teacher, student and compiled distiller(s) under the `precision` policy."""
    keras.backend.clear_session()
    gc.collect()
    keras.mixed_precision.set_global_policy(precision)
    keras.utils.set_random_seed(config.seed)
    if config.teacher == "tiny":
        teacher = tiny_teacher(config.seq_len)
    else:
        teacher = load_teacher(config.teacher)
    layers, hidden, heads = config.student_shape
    student = build_student(teacher, num_layers=layers, hidden_dim=hidden, num_heads=heads,
                            intermediate_dim=config.student_intermediate_dim,
                            dropout=config.student_dropout, seed=config.seed)
    fast = FAST_PATHS[config.fast_paths]

    def make_distiller(objective, fast_paths):
        # `num_relation_heads` applies to the MiniLMv2 one of the two.
        heads = config.num_relation_heads if objective == "minilmv2" else None
        return MiniLMDistiller(teacher, student, objective=objective, num_relation_heads=heads,
                               fast_paths=fast_paths)

    distiller = make_distiller(config.objective, fast)
    if not distiller.student_variables:
        # E.g. a student built from a teacher already frozen by another
        # distiller inherits `trainable=False`; (a) would then time no backward.
        raise ValueError("The student has no trainable variables reached by the loss.")
    distiller.compile(optimizer=make_optimizer(config), jit_compile=jit)
    compared = None
    if config.compare_fast_paths:
        compared = make_distiller(config.objective, not distiller.uses_fast_paths)
    elif config.compare_objective:
        compared = make_distiller(config.compare_objective, fast)
    if compared is not None:
        compared.compile(optimizer=make_optimizer(config), jit_compile=jit)
    return Models(teacher, student, distiller, compared)
