"""The fine-tuning flags that tools/finetune.py and tools/compare.py share.

The settings come from a recipe, `--config` (default
configs/finetune_base.py; `--config.KEY=VALUE` overrides any key), and the
named flags below override it when given: they default to None, so the
defaults live in one place (`FinetuneConfig`, through the recipe).
"""

import json

from absl import flags

import _cli

FLAGS = flags.FLAGS
CONFIG = _cli.define_config(
    "configs/finetune_base.py", "Fine-tuning recipe (configs/finetune_*.py); "
    "--config.KEY=VALUE overrides a key.", keys_doc="configs/finetune_base.py")

flags.DEFINE_string("model", None, "Model spec: all-minilm-l6-v2, a Hugging Face BERT dir, "
                    "a keras-hub preset dir (students) or a keras-hub preset name.")
flags.DEFINE_string("task", None, "Task: rotten_tomatoes, bbc_news, a GLUE task (sst2, "
                    "glue/mnli, ...), squad/squad_v2 (QA), or any name with --train_file.")
flags.DEFINE_string("workdir", None, "Output directory (created; must not hold a previous run).")
flags.DEFINE_enum("task_kind", None, ["classification", "regression", "qa", "seq2seq"],
                  "Task kind for local-file tasks (default classification); must match "
                  "known tasks. seq2seq (generation) runs tools/finetune_seq2seq.py, "
                  "whose flags it then takes.")
flags.DEFINE_string("train_file", None, "Local train file (.tsv GLUE-style, .csv, .jsonl).")
flags.DEFINE_string("validation_file", None, "Local validation file (default: 10% of train).")
flags.DEFINE_string("test_file", None, "Local test file (labels optional).")
flags.DEFINE_enum("file_format", None, ["tsv", "csv", "jsonl"],
                  "Format of the local files (default: from the extension).")
flags.DEFINE_string("text_column", None, "Text column/key (default: text, sentence, "
                    "sentence1, question, premise, ...).")
flags.DEFINE_string("text_pair_column", None, "Second-text column/key (default: text_pair, "
                    "sentence2, hypothesis, ...; none for single sentences).")
flags.DEFINE_string("label_column", None, "Label column/key (default: label, gold_label, ...).")
flags.DEFINE_string("tfds_data_dir", None, "TFDS data_dir for GLUE tasks.")
flags.DEFINE_bool("tfds_download", None, "Let TFDS download/prepare GLUE if missing "
                  "(recipe default: yes).")
flags.DEFINE_integer("epochs", None, "Training epochs (recipe default 3; MiniLM used up "
                     "to 10 on small tasks).")
flags.DEFINE_integer("batch_size", None, "Training batch size (recipe default 32).")
flags.DEFINE_integer("eval_batch_size", None, "Evaluation / latency batch size (default 64).")
flags.DEFINE_float("learning_rate", None, "Peak learning rate (recipe default 5e-5; grid "
                   "2e-5..5e-5).")
flags.DEFINE_float("weight_decay", None, "AdamW weight decay, not on biases/LayerNorm "
                   "(default 0.01).")
flags.DEFINE_float("warmup_ratio", None, "Fraction of steps with linear warm-up (default 0.1).")
flags.DEFINE_integer("sequence_length", None, "Max tokens per example (default 128; QA: "
                     "the QA module's default).")
flags.DEFINE_float("dropout", None, "Dropout before the classification layer (default 0.1).")
flags.DEFINE_integer("early_stopping_patience", None, "Stop after this many epochs without "
                     "validation improvement (default 2; 0: never stop early). The best "
                     "epoch is always restored.")
flags.DEFINE_integer("seed", None, "Random seed: head init, shuffling, subsampling (default 0).")
flags.DEFINE_integer("max_train_examples", None, "Subsample train (seeded) for quick runs.")
flags.DEFINE_integer("max_eval_examples", None, "Subsample validation/test (seeded).")
flags.DEFINE_integer("log_every", None, "Training progress line every N steps and at each "
                     "epoch's end (default 50).")
flags.DEFINE_integer("latency_examples", None, "Examples timed for latency (default 256; "
                     "0: skip).")
flags.DEFINE_bool("save_model", None, "Save the fine-tuned model under the workdir "
                  "(default: yes).")
flags.DEFINE_bool("overwrite", None, "Replace a previous run's outputs in the workdir.")
flags.DEFINE_enum("strategy", None, ["default", "mirrored", "multi_worker", "tpu"],
                  "tf.distribute strategy (default: default).")
flags.DEFINE_string("tpu_address", None, "TPU name or grpc:// address for --strategy=tpu.")
flags.DEFINE_enum("precision", None, ["float32", "mixed_bfloat16", "mixed_float16"],
                  "Keras mixed-precision policy (default float32).")
flags.DEFINE_enum("jit_compile", None, ["auto", "true", "false"],
                  "XLA-compile the train and predict steps; auto (default): on, except "
                  "on CPUs where TensorFlow uses oneDNN (AVX-512 and newer).")
flags.DEFINE_enum("fast_paths", None, ["auto", "true", "false"],
                  "Trace the steps with minilm_tf.layers.fast_paths; auto (default): only "
                  "steps that are not XLA-compiled.")
flags.DEFINE_multi_string("task_option", [], "KEY=VALUE task-specific options (passed to "
                          "the task, e.g. QA's doc_stride=128); values parsed as JSON "
                          "when possible.")

# FinetuneConfig keys and the flags that set them.
FLAG_OF = {key: key for key in (
    "model", "task", "workdir", "task_kind", "train_file", "validation_file", "test_file",
    "file_format", "tfds_data_dir", "tfds_download", "epochs", "batch_size",
    "eval_batch_size", "learning_rate", "weight_decay", "warmup_ratio", "sequence_length",
    "dropout", "early_stopping_patience", "seed", "max_train_examples", "max_eval_examples",
    "log_every", "latency_examples", "save_model", "overwrite", "strategy", "tpu_address",
    "precision", "jit_compile", "fast_paths")}
FLAG_OF.update(text_key="text_column", text_pair_key="text_pair_column",
               label_key="label_column")
# For error messages: library arguments named differently from their flags.
RENAMES = {key: name for key, name in FLAG_OF.items() if key != name}
RENAMES["extra"] = "task_option"


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

    values = _cli.override_from_flags(CONFIG.value.to_dict(), FLAG_OF)
    if FLAGS.early_stopping_patience == 0:
        values["early_stopping_patience"] = None
    if isinstance(values["fast_paths"], str):
        values["fast_paths"] = {"auto": None, "true": True, "false": False}[values["fast_paths"]]
    values["extra"] = {**values["extra"], **_parse_task_options(FLAGS.task_option)}
    values["model"] = model or values["model"]
    values["workdir"] = workdir or values["workdir"]
    return from_config_dict(FinetuneConfig, values)
