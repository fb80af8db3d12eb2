"""Relation logits as a Keras layer, and the backbone -> relation logits model.

`keras.distillation.Distiller` compares teacher and student outputs of the
same shape: `relation_model(backbone, objective)` outputs the objective's
relation logits ([B, R, T, T] per component) and the padding mask, the
input `minilm_tf.losses.MiniLMDistillationLoss` expects.
"""

from typing import Mapping

import keras

from minilm_tf.layers.self_attention_relations import SelfAttentionRelations
from minilm_tf.losses.minilm import (
    MiniLMObjective,
    deserialize_relation_objective,
    serialize_relation_objective,
)


def relation_model(
    backbone: keras.Model, objective: MiniLMObjective, layer_index: int = -1
) -> keras.Model:
    """A functional model: backbone inputs -> relation logits.

    Outputs one [B, R, T, T] tensor per component of `objective` plus the
    `padding_mask`; the input to `MiniLMDistillationLoss`.
    """
    inputs = {
        name: keras.Input(shape=(None,), dtype="int32", name=name) for name in backbone.input
    }
    features = SelfAttentionRelations(backbone, layer_index)(inputs)
    outputs = RelationLogits(objective)(features)
    return keras.Model(inputs, outputs, name=f"{backbone.name}_relations")


@keras.saving.register_keras_serializable(package="minilm_tf")
class RelationLogits(keras.layers.Layer):
    """Keras layer form of `MiniLMObjective.relation_logits`."""

    def __init__(self, objective: MiniLMObjective | Mapping, **kwargs):
        super().__init__(**kwargs)
        if isinstance(objective, Mapping):
            objective = deserialize_relation_objective(objective)
        self.objective = objective

    def get_config(self) -> dict:
        config = super().get_config()
        config["objective"] = serialize_relation_objective(self.objective)
        return config

    def call(self, features):
        outputs = self.objective.relation_logits(features)
        outputs["padding_mask"] = features["padding_mask"]
        return outputs

    def compute_output_spec(self, features):
        batch, length = features["padding_mask"].shape
        heads = self.objective.num_relation_heads
        spec = {
            name: keras.KerasTensor((batch, heads, length, length), dtype="float32")
            for name in self.objective.component_names
        }
        spec["padding_mask"] = keras.KerasTensor((batch, length), dtype="int32")
        return spec
