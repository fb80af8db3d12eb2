r"""Fine-tune a teacher and its students as generators on one task and compare them.

  python tools/compare_seq2seq.py --task bbc_headlines \
      --models all-minilm-l6-v2,runs/student --workdir runs/compare_headlines
  # the same through tools/compare.py:
  python tools/compare.py --task_kind seq2seq --task bbc_headlines \
      --models all-minilm-l6-v2,runs/student --workdir runs/compare_headlines

The first model is the teacher. Each model is fine-tuned with the same
settings (the --config recipe, default configs/seq2seq_base.py, and all
tools/finetune_seq2seq.py flags apply, except --model and --seed) into
<workdir>/runs/<i>-<name>/ (with --seeds: .../seed<S>/), then a table is
printed and saved as <workdir>/compare.json and compare.md, with a bar chart
compare.png: ROUGE-1/2/L and BLEU-4 (test when the task has a test split,
else validation), each with its retention (% of the teacher's), parameters,
and generated tokens per second with the speed-up over the teacher.
--seeds and --reuse_runs work as in tools/compare.py.
"""

import _cli  # tools/_cli.py: one error line for bad flags
import _compare  # tools/_compare.py: --models/--seeds/--reuse_runs and the run
import _seq2seq_flags  # tools/_seq2seq_flags.py: the generation recipe and flags


def main(argv):
    from minilm_tf.tasks.comparison import generation_markdown, generation_rows
    from minilm_tf.training.seq2seq import run_seq2seq

    return _compare.main(argv, _seq2seq_flags.config_from_flags, run_seq2seq,
                         generation_rows, generation_markdown)


if __name__ == "__main__":
    _cli.run(main, flags_parser=_cli.parse_config_flags)
