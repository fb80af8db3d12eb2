"""minilm_tf/utils/configs.py and the fine-tuning recipes: one config
system, defaults in one place, unset keys None."""

import dataclasses
import os
import subprocess
import sys

import pytest

from configs import finetune_base, finetune_cpu_quick, seq2seq_base
from minilm_tf.training.finetune_common import FinetuneConfig
from minilm_tf.training.seq2seq import Seq2SeqConfig
from minilm_tf.utils.configs import from_config_dict
from locations import REPO_ROOT, TOOLS_DIR



@pytest.mark.parametrize("cls,recipe", [(FinetuneConfig, finetune_base),
                                        (Seq2SeqConfig, seq2seq_base)])
def test_base_recipes_hold_every_field_with_the_dataclass_default(cls, recipe):
    config = recipe.get_config()
    assert sorted(config) == sorted(f.name for f in dataclasses.fields(cls))
    for field in dataclasses.fields(cls):
        if field.default_factory is not dataclasses.MISSING:
            assert config[field.name].to_dict() == field.default_factory()
        elif field.default is dataclasses.MISSING:
            assert config[field.name] is None, field.name  # model, task, workdir
        else:
            assert config[field.name] == field.default, field.name


def test_unset_keys_are_typed_placeholders():
    config = finetune_base.get_config()
    assert config.sequence_length is None and config.max_train_examples is None
    config.sequence_length = 96
    with pytest.raises(TypeError):
        config.max_train_examples = "many"
    config.fast_paths = True
    with pytest.raises(TypeError):
        config.text_key = 3


def test_a_recipe_becomes_the_dataclass():
    config = finetune_cpu_quick.get_config()
    config.model, config.task, config.workdir = "all-minilm-l6-v2", "bbc_news", "runs/x"
    built = from_config_dict(FinetuneConfig, config)
    expected = FinetuneConfig(model="all-minilm-l6-v2", task="bbc_news", workdir="runs/x",
                              epochs=2, sequence_length=64, max_train_examples=2000,
                              learning_rate=1e-4)
    assert built == expected


def test_unknown_and_missing_keys_are_named():
    with pytest.raises(ValueError, match=r"unknown FinetuneConfig keys \['epoch'\]"):
        from_config_dict(FinetuneConfig, {"model": "m", "task": "t", "workdir": "w",
                                          "epoch": 3})
    with pytest.raises(ValueError, match=r"Missing required settings \(FinetuneConfig\): "
                                         r"`task`, `workdir`"):
        from_config_dict(FinetuneConfig, {"model": "m", "workdir": ""})


def _finetune(*args):
    proc = subprocess.run([sys.executable, os.path.join(TOOLS_DIR, "finetune.py"), *args],
                          capture_output=True, text=True, timeout=300, cwd="/")
    return proc.returncode, proc.stdout + proc.stderr


def test_the_tool_reads_the_recipe_and_its_overrides_from_any_directory(tmp_path):
    common = ["--model", "all-minilm-l6-v2", "--task", "rotten_tomatoes",
              "--workdir", str(tmp_path / "run")]
    code, out = _finetune("--config", os.path.join(REPO_ROOT, "configs", "finetune_cpu_quick.py"),
                          "--config.epochs=0", *common)
    assert code == 1 and "epochs must be >= 1, got 0" in out, out[-2000:]
    # The default recipe is found from "/" too; a named flag overrides it.
    code, out = _finetune("--warmup_ratio", "1.5", *common)
    assert code == 1 and "warmup_ratio must be in [0, 1), got 1.5" in out, out[-2000:]
    code, out = _finetune("--config.epoch=2", *common)
    assert code == 1, out[-2000:]
    assert ("unknown config key --config.epoch (did you mean \"epochs\"?); "
            "configs/finetune_base.py lists every valid key") in out, out[-2000:]
    assert not (tmp_path / "run").exists()
