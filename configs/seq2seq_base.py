"""Sequence-to-sequence fine-tuning (UniLM's mask; headlines, summaries,
question generation): every key with its default, for
`tools/finetune_seq2seq.py --config` (and `tools/finetune.py --task_kind seq2seq`).

The keys are the fields of `minilm_tf.training.seq2seq.Seq2SeqConfig`;
`model`, `task` and `workdir` come from the command line. Unset keys are None
(`max_length`: the target length).
"""

from minilm_tf.training.seq2seq import Seq2SeqConfig
from minilm_tf.utils.configs import config_dict_of


def get_config():
    return config_dict_of(Seq2SeqConfig)
