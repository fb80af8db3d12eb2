"""The fine-tuning flags that tools/finetune.py and tools/compare.py share.

The settings come from a recipe, `--config` (default
configs/finetune_base.py; `--config.KEY=VALUE` overrides any key), and the
named flags below override it when given: they default to None, so the
defaults live in one place (`FinetuneConfig`, through the recipe).
"""

import json

from absl import flags

import _cli
import _run_flags

FLAGS = flags.FLAGS
CONFIG = _cli.define_config(
    "configs/finetune_base.py", "Fine-tuning recipe (configs/finetune_*.py); "
    "--config.KEY=VALUE overrides a key.", keys_doc="configs/finetune_base.py")

_run_flags.define_common(
    model_help="Model spec: all-minilm-l6-v2, a Hugging Face BERT dir, a keras-hub preset "
    "dir (students) or a keras-hub preset name.",
    task_help="Task: rotten_tomatoes, bbc_news, a GLUE task (sst2, glue/mnli, ...), "
    "xnli, squad/squad_v2/mlqa (QA), or any name with --train_file.",
    train_file_help="Local train file (.tsv GLUE-style, .csv, .jsonl; .json SQuAD for qa).")

flags.DEFINE_enum("task_kind", None, ["classification", "regression", "qa", "seq2seq"],
                  "Task kind for local-file tasks (default classification); must match "
                  "known tasks. seq2seq (generation) runs tools/finetune_seq2seq.py, "
                  "whose flags it then takes.")
flags.DEFINE_enum("file_format", None, ["tsv", "csv", "jsonl"],
                  "Format of the local files (default: from the extension).")
flags.DEFINE_string("text_column", None, "Text column/key (default: text, sentence, "
                    "sentence1, question, premise, ...).")
flags.DEFINE_string("text_pair_column", None, "Second-text column/key (default: text_pair, "
                    "sentence2, hypothesis, ...; none for single sentences).")
flags.DEFINE_string("label_column", None, "Label column/key (default: label, gold_label, ...).")
flags.DEFINE_integer("sequence_length", None, "Max tokens per example (default 128; QA: "
                     "the QA module's default).")
flags.DEFINE_float("dropout", None, "Dropout before the classification layer (default 0.1).")
flags.DEFINE_enum("pooling", None, ["auto", "cls", "mean", "max"],
                  "Classifier head: cls (the backbone's keras-hub text classifier, pooled "
                  "[CLS]; exports to transformers), mean/max over real tokens, or auto (a "
                  "sentence-transformers checkpoint's own pooling, e.g. mean for "
                  "all-MiniLM-L6-v2 and its students; else cls). Default: the recipe's.")
flags.DEFINE_integer("early_stopping_patience", None, "Stop after this many epochs without "
                     "validation improvement (default 2; 0: never stop early). The best "
                     "epoch is always restored.")
flags.DEFINE_integer("latency_examples", None, "Examples timed for latency (default 256; "
                     "0: skip).")
flags.DEFINE_string("tpu_address", None, "TPU name or grpc:// address for --strategy=tpu.")
flags.DEFINE_enum("jit_compile", None, ["auto", "true", "false"],
                  "XLA-compile the train and predict steps; auto (default): on, except "
                  "on CPUs where TensorFlow uses oneDNN (AVX-512 and newer).")
flags.DEFINE_enum("fast_paths", None, ["auto", "true", "false"],
                  "Trace the steps with minilm_tf.layers.fast_paths; auto (default): only "
                  "steps that are not XLA-compiled.")
flags.DEFINE_string("teacher_run", None, "Task-stage distillation: the workdir of a "
                    "fine-tuning run of a teacher on the same task; the student learns its "
                    "logits besides the labels (classification, regression).")
flags.DEFINE_float("kd_alpha", None, "With --teacher_run: weight of the teacher term, "
                   "0..1 (default 0.5).")
flags.DEFINE_float("kd_temperature", None, "With --teacher_run: softmax temperature of "
                   "the teacher term (default 2).")
flags.DEFINE_multi_string("task_option", [], "KEY=VALUE task-specific options (passed to "
                          "the task, e.g. QA's doc_stride=128); values parsed as JSON "
                          "when possible.")

# FinetuneConfig keys set by flags of other names (the others share theirs).
RENAMES = {"text_key": "text_column", "text_pair_key": "text_pair_column",
           "label_key": "label_column", "extra": "task_option"}


def _parse_task_options(items):
    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--task_option {item!r}: expected KEY=VALUE.")
        key, value = item.split("=", 1)
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def config_from_flags(model=None, workdir=None):
    """The FinetuneConfig of the recipe and the flags (`model`, `workdir`: set
    by the caller, e.g. one run of tools/compare.py)."""
    from minilm_tf.training.finetune_common import FinetuneConfig
    from minilm_tf.utils.configs import from_config_dict

    values = CONFIG.value.to_dict()
    flag_of = {key: RENAMES.get(key, key) for key in values if key != "extra"}
    _cli.override_from_flags(values, {k: f for k, f in flag_of.items() if f in FLAGS})
    if FLAGS.early_stopping_patience == 0:
        values["early_stopping_patience"] = None
    if isinstance(values["fast_paths"], str):
        values["fast_paths"] = {"auto": None, "true": True, "false": False}[values["fast_paths"]]
    values["extra"] = {**values["extra"], **_parse_task_options(FLAGS.task_option)}
    values["model"] = model or values["model"]
    values["workdir"] = workdir or values["workdir"]
    return from_config_dict(FinetuneConfig, values)
