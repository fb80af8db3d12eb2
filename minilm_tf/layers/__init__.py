"""Keras layers over encoder backbones.

- `SelfAttentionRelations`: one layer's queries, keys, values and attention.
- `RelationLogits`, `relation_model`: an objective's relation logits as a
  layer, and a backbone -> relation logits model.
- `TokenPooling`: a sentence vector from token states (mean / max / first).
- `fast_paths`: faster CPU code paths for a model's layers while a step traces.
"""

from minilm_tf.layers.pooling import TokenPooling
from minilm_tf.layers.relation_logits import RelationLogits, relation_model
from minilm_tf.layers.self_attention_relations import (
    SelfAttentionRelations,
    attention_heads,
    attention_probabilities,
    resolve_layer_index,
    truncated_encoder,
)
