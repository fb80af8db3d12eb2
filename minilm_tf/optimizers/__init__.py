"""Optimizers: `FusedAdamW` and BERT's warm-up + linear-decay schedule."""

from minilm_tf.optimizers.adamw import FusedAdamW, WarmupLinearDecay, make_adamw
