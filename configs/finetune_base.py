"""Fine-tuning (classification, regression, extractive QA): every key with
its default, for `tools/finetune.py --config` and `tools/compare.py --config`.

The keys are the fields of `minilm_tf.training.finetune_common.FinetuneConfig`
(one place for the defaults); `model`, `task` and `workdir` have none and
come from the command line (`--model ...` or `--config.model=...`). Unset
keys are None. The defaults follow the BERT / MiniLM fine-tuning grids:
AdamW (weight decay 0.01), 10% linear warm-up then linear decay, learning
rate 5e-5, batch 32, 3 epochs, sequence length 128 (None), early stopping
after 2 epochs without improvement, the best epoch restored.
"""

from minilm_tf.training.finetune_common import FinetuneConfig
from minilm_tf.utils.configs import config_dict_of


def get_config():
    return config_dict_of(FinetuneConfig)
