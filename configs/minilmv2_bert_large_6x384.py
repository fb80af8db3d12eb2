"""MiniLMv2 recipe for a large teacher: BERT-large -> 6x384, layer 21 of 24, 64 relation heads.

Large teachers are distilled from an upper-middle layer (MiniLMv2, section
4): the 21st of BERT-large's 24 layers, i.e. 0-based index 20 (or -4).
Layers 22-24 are never computed. Relation heads: 64 for large teachers.
"""

from configs import minilmv2_bert_base_6x384


def get_config():
    config = minilmv2_bert_base_6x384.get_config()
    config.teacher = "bert_large_en_uncased"
    config.teacher_layer = 20
    config.num_relation_heads = 64
    return config
