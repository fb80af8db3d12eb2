"""What tools/compare.py and tools/compare_seq2seq.py share: the flags that
name the models and seeds, and the run (workdir lock, one fine-tuning per
model and seed, the table, its JSON and chart)."""

import sys

from absl import app, flags, logging

import _cli

FLAGS = flags.FLAGS
flags.DEFINE_list("models", None, "Comma-separated model specs; the first is the teacher.")
flags.DEFINE_bool("reuse_runs", False, "Reuse runs that already have a report.json.")
flags.DEFINE_list("seeds", None, "Fine-tuning seeds (default: --seed only); the table "
                  "reports mean and std over them.")


def main(argv, config_of, run, rows_of, markdown_of, renames=None) -> int:
    """Each model's run: `run(config_of(spec, run_dir), log_fn=...)` -> report,
    with the seed set per run; `rows_of(runs, models)`, `markdown_of(rows,
    task)`: the table (minilm_tf.tasks.comparison)."""
    _cli.check_arguments(argv, ("models", "task", "workdir"))
    if FLAGS.model:
        raise app.UsageError("Use --models (comma-separated), not --model.")
    from minilm_tf.training import comparison_runs
    from minilm_tf.training.checkpointing import RunInterrupted
    from minilm_tf.utils import workdir as workdirs

    def fine_tune(spec, run_dir, seed):
        config = config_of(spec, run_dir)
        if seed is not None:
            config.seed = seed
        return run(config, log_fn=logging.info)

    models = [m.strip() for m in FLAGS.models if m.strip()]
    try:
        seeds = [int(x) for x in FLAGS.seeds] if FLAGS.seeds else None
    except ValueError:
        print(f"error: --seeds must be integers, got {FLAGS.seeds}.", file=sys.stderr)
        return 1
    try:
        with workdirs.hold(FLAGS.workdir) as held:
            comparison_runs.check_outputs(held.root, FLAGS.overwrite)
            runs = comparison_runs.fine_tune_each(held.root, models, seeds, fine_tune,
                                                  reuse_runs=FLAGS.reuse_runs, log=logging.info)
            rows = rows_of(runs, models)
            table = markdown_of(rows, FLAGS.task)
            print(table)
            paths = comparison_runs.write_comparison(held.root, FLAGS.task, models, rows, table)
    except _cli.USER_ERRORS as e:
        print(f"error: {_cli.flag_message(e, renames)}", file=sys.stderr)
        return 1
    except RunInterrupted as e:
        logging.warning("%s", e)
        return 130
    print(f"wrote {', '.join(paths)}")
    return 0
