"""Distillation losses: relation math, MiniLM v1/v2 objectives, state MSEs.

- `relations`: relation logits and their KL (native kernel or XLA).
- `objective`: the `Objective` interface and weighted sums.
- `minilm`: `MiniLMv1Objective`, `MiniLMv2Objective`, `make_objective`,
  `MiniLMDistillationLoss` (a `keras.distillation.DistillationLoss`).
- `state_losses`, `representations`: hidden-state and embedding MSE baselines.
"""

from minilm_tf.losses.minilm import (
    OBJECTIVES,
    CompositeObjective,
    EmbeddingMSE,
    HiddenStateMSE,
    MiniLMDistillationLoss,
    MiniLMObjective,
    MiniLMv1Objective,
    MiniLMv2Objective,
    Objective,
    deserialize_relation_objective,
    make_objective,
    parse_objective,
    serialize_relation_objective,
)
