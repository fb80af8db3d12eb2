"""The README's main job: all-MiniLM-L6-v2 -> 3x384x12 on 1.3 M tokens of real English.

The student starts as teacher layers 0, 2 and 5 (with the teacher's
embeddings) and is distilled for 200 steps (819,200 tokens) with MiniLM's
attention and value relations plus the teacher's sentence-embedding MSE;
about 10-15 minutes on 2 CPU cores. The corpus is every built-in offline
source: the 1,777 BBC News articles of the bbc_news task's train split, US
convention speeches and debates, Guardian headlines and Hamlet (5% of
documents held out). docs/results.md has the study behind this choice.
"""

from configs import base


def get_config():
    config = base.get_config()
    config.objective = "minilm+300*embedding_mse"
    config.student.init = "teacher_layers"
    config.data.sources = "builtin:bbc_news,builtin:speeches,builtin:guardian_headlines,builtin:hamlet"
    config.train.steps = 200
    config.train.warmup_steps = 20
    config.train.learning_rate = 1e-4
    config.train.log_every = 10
    config.train.checkpoint_every = 50
    return config
