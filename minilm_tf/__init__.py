"""minilm_tf: MiniLM / MiniLMv2 deep self-attention distillation for Keras."""

from minilm_tf.layers import SelfAttentionRelations, truncated_encoder
from minilm_tf.losses import (
    MiniLMDistillationLoss,
    MiniLMv1Objective,
    MiniLMv2Objective,
    make_objective,
    relation_model,
)
from minilm_tf.teacher import LoadedEncoder, load_encoder, load_teacher, save_encoder

__version__ = "0.1.0"
from minilm_tf.distiller import MiniLMDistiller
from minilm_tf.student import build_student, count_params
from minilm_tf.optim import FusedAdamW, make_adamw
from minilm_tf.export.hf import export_hf
from minilm_tf.model_garden import save_model_garden_encoder
