"""MiniLMv2 recipe: RoBERTa-large -> 6x384 from layer 19 of 24 (index 18), 64 relation heads.

RoBERTa has no segment embeddings; the data pipeline's segment ids are
ignored for it. Use a RoBERTa-vocabulary corpus pipeline (BPE) when training
for real: see docs/architectures in README.
"""

from configs import minilmv2_bert_base_6x384


def get_config():
    config = minilmv2_bert_base_6x384.get_config()
    config.teacher = "roberta_large_en"
    config.teacher_layer = 18
    config.num_relation_heads = 64
    return config
