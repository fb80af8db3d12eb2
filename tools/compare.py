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
"""

import gc
import json
import os
import sys

from absl import app, flags, logging

import _cli  # tools/_cli.py: one error line for bad flags

import _finetune_flags  # tools/_finetune_flags.py: the fine-tuning recipe and flags

FLAGS = flags.FLAGS
flags.DEFINE_list("models", None, "Comma-separated model specs; the first is the teacher.")
flags.DEFINE_bool("reuse_runs", False, "Reuse runs that already have a report.json.")
flags.DEFINE_list("seeds", None, "Fine-tuning seeds (default: --seed only); the table "
                  "reports mean and std over them.")

COMPARE_JSON = "compare.json"
COMPARE_MD = "compare.md"
COMPARE_PNG = "compare.png"


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    missing = [f"--{n}" for n in ("models", "task", "workdir") if not getattr(FLAGS, n)]
    if missing:
        raise app.UsageError(f"Missing required flags: {', '.join(missing)}")
    if FLAGS.model:
        raise app.UsageError("Use --models (comma-separated), not --model.")
    from minilm_tf.utils import workdir as workdirs

    models = [m.strip() for m in FLAGS.models if m.strip()]
    try:
        seeds = [int(x) for x in FLAGS.seeds] if FLAGS.seeds else None
    except ValueError:
        print(f"error: --seeds must be integers, got {FLAGS.seeds}.", file=sys.stderr)
        return 1
    try:
        with workdirs.hold(FLAGS.workdir) as held:
            return _compare(held.root, models, seeds)
    except _cli.USER_ERRORS as e:
        print(f"error: {_cli.flag_message(e, _finetune_flags.RENAMES)}", file=sys.stderr)
        return 1


def _compare(workdir, models, seeds) -> int:
    import keras

    from minilm_tf.training.checkpointing import RunInterrupted
    from minilm_tf.utils.fileio import atomic_write_json, atomic_write_text
    from minilm_tf.tasks.comparison import (comparison_chart, comparison_markdown,
                                            comparison_rows, model_slug)
    from minilm_tf.tasks.finetuned import REPORT_FILE
    from minilm_tf.training.finetuning import run_finetune

    outputs = [os.path.join(workdir, n) for n in (COMPARE_JSON, COMPARE_MD, COMPARE_PNG)]
    if any(os.path.exists(p) for p in outputs) and not FLAGS.overwrite:
        print(f"error: {workdir} already holds a comparison; use a new --workdir or "
              "--overwrite.", file=sys.stderr)
        return 1
    os.makedirs(os.path.join(workdir, "runs"), exist_ok=True)
    runs = []
    for i, spec in enumerate(models):
        model_dir = os.path.join(workdir, "runs", f"{i}-{model_slug(spec)}")
        reports = []
        for seed in seeds or [None]:  # None: the recipe's (or --seed's) seed
            run_dir = os.path.join(model_dir, f"seed{seed}") if seeds else model_dir
            report_path = os.path.join(run_dir, REPORT_FILE)
            if FLAGS.reuse_runs and os.path.exists(report_path):
                logging.info("reusing %s", report_path)
                with open(report_path, encoding="utf-8") as f:
                    report = json.load(f)
            else:
                config = _finetune_flags.config_from_flags(spec, run_dir)
                if seed is not None:
                    config.seed = seed
                logging.info("[%d/%d] fine-tuning %s (seed %d)", i + 1, len(models), spec,
                             config.seed)
                try:
                    report = run_finetune(config, log_fn=logging.info)
                except _cli.USER_ERRORS as e:
                    print(f"error ({spec}): {e}", file=sys.stderr)
                    return 1
                except RunInterrupted as e:
                    logging.warning("%s", e)
                    return 130
                report = {k: v for k, v in report.items() if not k.startswith("_")}
                keras.backend.clear_session()
                gc.collect()
            report["_workdir"] = run_dir
            reports.append(report)
        runs.append(reports)

    rows = comparison_rows(runs, models)
    table = comparison_markdown(rows, FLAGS.task)
    print(table)
    atomic_write_json(outputs[0], {"task": FLAGS.task, "teacher": models[0], "rows": rows})
    atomic_write_text(outputs[1], table)
    comparison_chart(rows, outputs[2], FLAGS.task)
    print(f"wrote {outputs[0]}, {outputs[1]}, {outputs[2]}")
    return 0

if __name__ == "__main__":
    _cli.run(main, flags_parser=_cli.parse_config_flags)
