"""MiniLM paper recipe: BERT-base -> 6x384x12 student (v1, last layer).

As bert_base_to_6x768 but batch 256 and lr 3e-4 (the paper's setting for
students other than 6x768).
"""

from configs import bert_base_to_6x768


def get_config():
    config = bert_base_to_6x768.get_config()
    config.student.hidden_dim = 384
    config.train.batch_size = 256
    config.train.learning_rate = 3e-4
    return config
