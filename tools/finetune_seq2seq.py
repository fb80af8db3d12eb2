r"""Fine-tune and evaluate a sequence-to-sequence generator (UniLM s2s-ft style).

Examples:

  # Built-in offline task: BBC News article body -> its headline:
  python tools/finetune_seq2seq.py --model all-minilm-l6-v2 --task bbc_headlines \
      --workdir runs/bbc_headlines --max_train_examples 500 --epochs 1
  # the same through the fine-tuning tool:
  python tools/finetune.py --task_kind seq2seq --model all-minilm-l6-v2 \
      --task bbc_headlines --workdir runs/bbc_headlines

  # Local JSON lines files of {"source": ..., "target": ...}:
  python tools/finetune_seq2seq.py --model runs/student --task my_task \
      --train_file train.jsonl --validation_file dev.jsonl --test_file test.jsonl \
      --workdir runs/my_task

  # TFDS (prepared in --tfds_data_dir): xsum, cnn_dailymail, squad_qg:
  python tools/finetune_seq2seq.py --model all-minilm-l6-v2 --task xsum --workdir runs/xsum

  # Beam search with the s2s-ft decoding settings, and a SavedModel:
  python tools/finetune_seq2seq.py ... --beam_size 5 --length_penalty 1.0 \
      --no_repeat_ngram_size 3 --export_saved_model

Writes <workdir>/report.json (ROUGE-1/2/L and BLEU-4 on validation and test,
generated tokens/s, the decoding settings), samples.jsonl and model/
(minilm_tf/training/seq2seq.py); with --export_saved_model also
<workdir>/saved_model/ with a `generate` signature (strings in, strings out),
checked in a fresh process. Rerunning the same command after a kill resumes
from the newest checkpoint.

Settings come from a recipe, --config (default configs/seq2seq_base.py, which
holds every default); --config.KEY=VALUE or the named flags override its keys.
"""

import json
import os
import sys

from absl import flags, logging

import _cli  # tools/_cli.py: one error line for bad flags
import _seq2seq_flags  # tools/_seq2seq_flags.py: the generation recipe and flags

FLAGS = flags.FLAGS
flags.DEFINE_bool("export_saved_model", None, "Also write <workdir>/saved_model with a "
                  "`generate` signature and check it in a fresh process.")


def export(report, config) -> dict:
    """Writes and checks <workdir>/saved_model; returns what the check found."""
    from minilm_tf.export.generation import export_generation, verify_in_subprocess
    from minilm_tf.tasks.generation.decoding import generate_texts
    from minilm_tf.training.seq2seq import SAMPLES_FILE, load_generation_model
    from minilm_tf.utils import workdir

    model, packer, decoding = load_generation_model(report["model_dir"])
    with workdir.hold(config.workdir) as wd:
        path = wd.path("saved_model")
        export_generation(model, packer.tokenizer, path, packer.max_source_length, decoding)
        with open(wd.path(SAMPLES_FILE), encoding="utf-8") as f:
            sources = [json.loads(line)["source"] for line in f][:8]
    served = verify_in_subprocess(path, sources)["predictions"]
    keras_side = generate_texts(model, packer, sources, decoding).texts
    return {"path": path, "checked_examples": len(sources),
            "matches_keras": served == keras_side}


def main(argv):
    _cli.check_arguments(argv, ())
    from minilm_tf.training.checkpointing import CheckpointWriteError, RunInterrupted
    from minilm_tf.tasks.finetuned import REPORT_FILE
    from minilm_tf.training.seq2seq import run_seq2seq

    try:
        config = _seq2seq_flags.config_from_flags()
        report = run_seq2seq(config, log_fn=logging.info)
        summary = {"task": report["task"], "model": report["model"],
                   "metrics": {k: v["metrics"] for k, v in report["results"].items()},
                   "tokens_per_second": report["generation_tokens_per_second"],
                   "report": os.path.join(os.path.abspath(config.workdir), REPORT_FILE)}
        if FLAGS.export_saved_model:
            summary["saved_model"] = export(report, config)
    except (*_cli.USER_ERRORS, CheckpointWriteError) as e:
        print(f"error: {_cli.flag_message(e)}", file=sys.stderr)
        return 1
    except RunInterrupted as e:
        logging.warning("%s", e)
        return 130
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    _cli.run(main, flags_parser=_cli.parse_config_flags)
