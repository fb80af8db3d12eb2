"""MiniLMv2 recipe: BERT-base -> 6x384 with Q-Q/K-K/V-V relations, 48 relation heads.

The teacher's last layer (base-size teacher); relation heads are independent
of the attention heads, so the student may use any head count dividing 384.
"""

from configs import bert_base_to_6x384


def get_config():
    config = bert_base_to_6x384.get_config()
    config.objective = "minilmv2"
    config.num_relation_heads = 48
    return config
