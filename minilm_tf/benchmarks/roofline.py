"""The roofline of a distillation step: its matmul FLOPs, counted from the
model shapes, and the machine's measured matmul peak.

The count is the usual one: 2*M*N*K per matmul, forward plus twice that for
the student's backward; elementwise work is ignored.
"""

import time

import keras
import numpy as np
import tensorflow as tf

from minilm_tf.models.distiller import MiniLMDistiller


def step_matmul_flops(distiller: MiniLMDistiller, batch: int, seq: int) -> int:
    """Matmul FLOPs of one step: the teacher forward up to its relations and
    three times the student's (forward + backward), padded tokens included."""
    num_relations = len(distiller.objective.relations_used)

    def forward_per_token(relations) -> int:
        dim, ffn = relations.hidden_dim, relations.encoder_layer.intermediate_dim
        full = 8 * dim * dim + 4 * dim * ffn + 4 * seq * dim
        last = 6 * dim * dim + num_relations * 2 * seq * dim
        return relations.resolved_index * full + last

    return batch * seq * (forward_per_token(distiller.teacher_relations)
                          + 3 * forward_per_token(distiller.student_relations))


def step_matmul_shapes(distiller: MiniLMDistiller, batch: int, seq: int) -> dict:
    """name -> (m, k, n) of the plain matmuls `matmul_peak` times for a step:
    the student's feed-forward up/down projections on the step's tokens and a
    2048^3 square."""
    relations = distiller.student_relations
    tokens_dim = (batch * seq, relations.hidden_dim, relations.encoder_layer.intermediate_dim)
    return {"ffn_up": tokens_dim, "ffn_down": (tokens_dim[0], tokens_dim[2], tokens_dim[1]),
            "square_2048": (2048, 2048, 2048)}


def matmul_peak(precision: str, jit: bool, shapes: dict, calls: int = 8) -> dict:
    """Best GFLOP/s of plain [m, k] x [k, n] matmuls in the policy's compute dtype."""
    dtype = keras.mixed_precision.Policy(precision).compute_dtype
    rates = {}
    for name, (m, k, n) in shapes.items():
        rng = np.random.default_rng(0)
        a = tf.constant(rng.normal(size=(m, k)), dtype=dtype)
        b = tf.constant(rng.normal(size=(k, n)), dtype=dtype)
        matmul = tf.function(lambda x, y: tf.reduce_sum(tf.matmul(x, y)[0]), jit_compile=jit)
        matmul(a, b).numpy()
        best = float("inf")
        for _ in range(calls):
            t = time.perf_counter()
            matmul(a, b).numpy()
            best = min(best, time.perf_counter() - t)
        rates[name] = round(2 * m * k * n / best / 1e9, 1)
    return {"dtype": dtype, "gflops_by_shape": rates, "peak_gflops": max(rates.values())}
