"""MiniLMv2 recipe: XLM-RoBERTa-large -> 6x384 from layer 19 of 24 (index 18), 64 relation heads."""

from configs import minilmv2_roberta_large_6x384


def get_config():
    config = minilmv2_roberta_large_6x384.get_config()
    config.teacher = "xlm_roberta_large_multi"
    return config
