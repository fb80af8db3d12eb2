"""MiniLM paper recipe: BERT-base -> 6x768x12 student (v1, last layer).

AdamW (0.9, 0.999), weight decay 0.01, 4k warm-up + linear decay, lr 5e-4,
batch 1024, max length 512, 400k steps, dropout 0.1 (MiniLM, section 4.1).
Needs accelerators: run with --config.train.strategy=mirrored (or tpu /
multi_worker) and a large corpus, e.g.
--config.data.sources=tfds:wikipedia/20230601.en --config.data.mode=lines.
"""

from configs import base


def get_config():
    config = base.get_config()
    config.teacher = "bert_base_en_uncased"
    config.objective = "minilm"
    config.student.num_layers = 6
    config.student.hidden_dim = 768
    config.student.num_heads = 12
    config.data.sources = "tfds:wikipedia/20230601.en"
    config.data.mode = "lines"
    config.data.seq_length = 512
    config.data.heldout_fraction = 0.001
    config.train.batch_size = 1024
    config.train.steps = 400_000
    config.train.learning_rate = 5e-4
    config.train.warmup_steps = 4000
    config.train.log_every = 100
    config.train.checkpoint_every = 2000
    config.train.precision = "mixed_bfloat16"
    config.train.strategy = "mirrored"
    return config
