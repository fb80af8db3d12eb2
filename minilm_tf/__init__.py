"""minilm_tf: MiniLM / MiniLMv2 deep self-attention distillation for Keras."""

__version__ = "0.1.0"  # before the imports below: `export` reads it

from minilm_tf.export.hf import export_hf
from minilm_tf.layers import SelfAttentionRelations, relation_model, truncated_encoder
from minilm_tf.losses import (
    MiniLMDistillationLoss,
    MiniLMv1Objective,
    MiniLMv2Objective,
    make_objective,
)
from minilm_tf.models.distiller import MiniLMDistiller
from minilm_tf.models.encoders import LoadedEncoder, load_encoder, load_teacher, save_encoder
from minilm_tf.models.model_garden import save_model_garden_encoder
from minilm_tf.models.students import build_student, count_params
from minilm_tf.optimizers import FusedAdamW, make_adamw
