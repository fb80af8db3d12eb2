"""Fine-tuning sized for a 2-core CPU: 2 epochs over at most 2,000 training
examples of 64 tokens, learning rate 1e-4 (small students prefer the top of
the grid). A classification task takes about 4 minutes with a 3-layer
student; the quality study's fine-tuning settings."""

from configs import finetune_base


def get_config():
    config = finetune_base.get_config()
    config.epochs = 2
    config.sequence_length = 64
    config.max_train_examples = 2000
    config.learning_rate = 1e-4
    return config
