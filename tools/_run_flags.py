"""The flags every fine-tuning tool shares (tools/_finetune_flags.py,
tools/finetune_seq2seq.py). They default to None: a flag given on the command
line overrides its key of the tool's `--config` recipe, which holds the
defaults."""

from absl import flags


def define_common(model_help: str, task_help: str, train_file_help: str) -> None:
    """Model, task, files, schedule, seeds, strategy and output flags."""
    flags.DEFINE_string("model", None, model_help)
    flags.DEFINE_string("task", None, task_help)
    flags.DEFINE_string("workdir", None, "Output directory (created; must not hold a "
                        "previous run).")
    flags.DEFINE_string("train_file", None, train_file_help)
    flags.DEFINE_string("validation_file", None, "Local validation file (default: 10% of "
                        "train).")
    flags.DEFINE_string("test_file", None, "Local test file.")
    flags.DEFINE_string("tfds_data_dir", None, "TFDS data_dir (GLUE, xsum, ...).")
    flags.DEFINE_bool("tfds_download", None, "Let TFDS download/prepare a missing dataset "
                      "(recipe default: yes).")
    flags.DEFINE_integer("epochs", None, "Training epochs.")
    flags.DEFINE_integer("batch_size", None, "Training batch size.")
    flags.DEFINE_integer("eval_batch_size", None, "Evaluation / decoding / latency batch size.")
    flags.DEFINE_float("learning_rate", None, "Peak learning rate.")
    flags.DEFINE_float("weight_decay", None, "AdamW weight decay (not on biases/LayerNorm).")
    flags.DEFINE_float("warmup_ratio", None, "Fraction of steps with linear warm-up.")
    flags.DEFINE_integer("seed", None, "Random seed: head init, shuffling, subsampling.")
    flags.DEFINE_integer("max_train_examples", None, "Subsample train (seeded) for quick runs.")
    flags.DEFINE_integer("max_eval_examples", None, "Subsample validation/test (seeded).")
    flags.DEFINE_integer("log_every", None, "Training progress line every N steps.")
    flags.DEFINE_bool("save_model", None, "Save the fine-tuned model under the workdir "
                      "(recipe default: yes).")
    flags.DEFINE_bool("overwrite", None, "Replace a previous run's outputs in the workdir.")
    flags.DEFINE_enum("strategy", None, ["default", "mirrored", "multi_worker", "tpu"],
                      "tf.distribute strategy (recipe default: default).")
    flags.DEFINE_enum("precision", None, ["float32", "mixed_bfloat16", "mixed_float16"],
                      "Keras mixed-precision policy (recipe default: float32).")
