"""The generation flags that tools/finetune_seq2seq.py and tools/compare_seq2seq.py
share.

The settings come from a recipe, `--config` (default configs/seq2seq_base.py;
`--config.KEY=VALUE` overrides any key), and the named flags below override it
when given: they default to None, so the defaults live in one place
(`Seq2SeqConfig`, through the recipe).
"""

from absl import flags

import _cli
import _run_flags

FLAGS = flags.FLAGS
CONFIG = _cli.define_config(
    "configs/seq2seq_base.py", "Seq2seq fine-tuning recipe (configs/seq2seq_*.py); "
    "--config.KEY=VALUE overrides a key; the named flags below override it too.",
    keys_doc="configs/seq2seq_base.py")

_run_flags.define_common(
    model_help="Model spec: all-minilm-l6-v2, a Hugging Face BERT/RoBERTa dir, a keras-hub "
    "preset dir (students) or a keras-hub preset name.",
    task_help="bbc_headlines, xsum, cnn_dailymail, squad_qg, or any name with --train_file.",
    train_file_help="Local train file (.jsonl; .json: SQuAD format, for question generation).")

flags.DEFINE_string("source_key", None, "JSON lines key of the source text.")
flags.DEFINE_string("target_key", None, "JSON lines key of the target text.")
flags.DEFINE_integer("max_source_length", None, "Source tokens (special tokens included).")
flags.DEFINE_integer("max_target_length", None, "Target tokens (the end token included).")
flags.DEFINE_float("clipnorm", None, "Global gradient-norm clipping.")
flags.DEFINE_float("label_smoothing", None, "Label smoothing (s2s-ft uses 0.1).")
flags.DEFINE_integer("beam_size", None, "Beam size (1: greedy).")
flags.DEFINE_float("length_penalty", None, "Beam ranking: log p / length ** this.")
flags.DEFINE_integer("min_length", None, "Generated tokens before the end token may come.")
flags.DEFINE_integer("max_length", None, "Generated tokens at most (default "
                     "--max_target_length).")
flags.DEFINE_integer("no_repeat_ngram_size", None, "Forbid repeating n-grams of this size "
                     "(0: off).")
flags.DEFINE_integer("num_samples", None, "Predictions per split written to samples.jsonl.")


def config_from_flags(model=None, workdir=None):
    """The Seq2SeqConfig of the recipe and the flags (`model`, `workdir`: set
    by the caller, e.g. one run of tools/compare_seq2seq.py)."""
    from minilm_tf.training.seq2seq import Seq2SeqConfig
    from minilm_tf.utils.configs import from_config_dict

    values = CONFIG.value.to_dict()
    _cli.override_from_flags(values, {n: n for n in values if n in FLAGS and n != "config"})
    values["model"] = model or values["model"]
    values["workdir"] = workdir or values["workdir"]
    return from_config_dict(Seq2SeqConfig, values)
