r"""Fine-tune a teacher and its students on one task and compare them.

  python tools/compare.py --task rotten_tomatoes \
      --models all-minilm-l6-v2,runs/student_l3,runs/student_l2 \
      --workdir runs/compare_rt --epochs 3

The first model is the teacher. Each model is fine-tuned with the same
settings (the --config recipe and all tools/finetune.py flags apply, except
--model and --seed) into
<workdir>/runs/<i>-<name>/ (with --seeds: <workdir>/runs/<i>-<name>/seed<S>/),
then a table is printed and saved as
<workdir>/compare.json and <workdir>/compare.md, with a bar chart
<workdir>/compare.png:

  metric (test when the task's test split is labelled, else validation),
  retention (% of the teacher's metric), parameters (backbone / total),
  latency (ms per example, batched inference after warm-up) and speed-up.

--seeds 0,1,2 fine-tunes every model once per seed; the table shows the mean
and standard deviation over seeds (small-data fine-tuning varies by a point
or more between seeds, so compare students over several).

--reuse_runs reuses runs whose report.json already exists (e.g. to add a
student to a comparison) instead of refusing the occupied directory.

--task_kind seq2seq compares generators instead (tools/compare_seq2seq.py,
whose flags it then takes): ROUGE-1/2/L and BLEU-4 with their retention, and
generated tokens per second.
"""

import os
import sys

import _cli  # tools/_cli.py: one error line for bad flags
import _compare  # tools/_compare.py: --models/--seeds/--reuse_runs and the run
import _finetune_flags  # tools/_finetune_flags.py: the fine-tuning recipe and flags

SEQ2SEQ_TOOL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "compare_seq2seq.py")


def main(argv):
    from minilm_tf.tasks.comparison import comparison_markdown, comparison_rows
    from minilm_tf.training.finetuning import run_finetune

    return _compare.main(argv, _finetune_flags.config_from_flags, run_finetune,
                         comparison_rows, comparison_markdown, _finetune_flags.RENAMES)


if __name__ == "__main__":
    generation = _cli.seq2seq_arguments(sys.argv[1:])
    if generation is not None:
        os.execv(sys.executable, [sys.executable, SEQ2SEQ_TOOL, *generation])
    _cli.run(main, flags_parser=_cli.parse_config_flags)
