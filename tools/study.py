r"""Which student wins at a budget: MiniLM against what users would try instead.

    python tools/study.py --config configs/demo_cpu.py --workdir runs/study \
        --rows none/random,none/teacher_layers,hidden_mse/teacher_layers,\
embedding_mse/teacher_layers,minilm/teacher_layers,minilmv2/teacher_layers \
        --tasks rotten_tomatoes,bbc_news --seeds 0,1,2 --steps 200 \
        --budgets 50,100 --curve_row minilm/teacher_layers

Each row (OBJECTIVE/INIT) distils a student from the recipe (--config, with
--config.* overrides) for --steps steps, the same token budget for every row
(`none` rows: the initialised student, no distillation); the teacher and
every student are then fine-tuned on every task once per seed with the same
settings. Writes <workdir>/study.md, study.json and study.png (retention with
seed-std error bars); with --budgets, the --curve_row row is also distilled
at each budget: curve.json and curve.png (retention vs tokens). With
--kd_alpha, each student's fine-tune also learns the logits of the teacher's
fine-tune of the same task and seed (task-stage distillation; the teacher's
fine-tuned models are then kept).

A task is a name tools/finetune.py knows (rotten_tomatoes, bbc_news, ...) or
NAME=DIR with DIR/train.jsonl (and validation/test; .csv/.tsv too).

Rerunning the same command resumes: finished distillations and fine-tunes
are reused, unfinished ones resume from their checkpoints. Rows, tasks and
seeds may be added on a rerun; the recipe, --steps and the fine-tuning
settings may not.
"""

import sys

from absl import app, flags, logging

import _cli  # tools/_cli.py: one error line for bad flags
from configs import finetune_cpu_quick
from minilm_tf.training.checkpointing import CheckpointWriteError, RunInterrupted
from minilm_tf.training.study import Study, StudyConfig, parse_rows, parse_tasks

_CONFIG = _cli.define_config("configs/demo_cpu.py", "Distillation recipe under configs/.")
FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Study directory (resumed when it exists).")
flags.DEFINE_list("rows", ["none/teacher_layers", "minilm/teacher_layers"],
                  "OBJECTIVE/INIT pairs; objectives: minilm, minilmv2, hidden_mse, "
                  "embedding_mse, none, or weighted sums (minilm+300*embedding_mse); "
                  "inits: random, teacher_layers, teacher_bottom.")
flags.DEFINE_list("tasks", ["rotten_tomatoes", "bbc_news"], "Tasks: NAME or NAME=DIR.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Fine-tuning seeds.")
flags.DEFINE_integer("steps", None, "Distillation steps per row (default: the recipe's).")
flags.DEFINE_list("budgets", [], "Distillation steps of the curve (with --curve_row).")
flags.DEFINE_string("curve_row", None, "The OBJECTIVE/INIT row of the curve.")
# Fine-tuning: configs/finetune_cpu_quick.py's settings unless these flags say otherwise.
FINETUNE_KEYS = ("epochs", "sequence_length", "max_train_examples", "learning_rate")
flags.DEFINE_integer("epochs", None, "Fine-tuning epochs (default 2).")
flags.DEFINE_integer("sequence_length", None, "Fine-tuning sequence length (default 64).")
flags.DEFINE_integer("max_train_examples", None, "Fine-tuning train cap per task, seeded "
                     "(default 2,000).")
flags.DEFINE_float("learning_rate", None, "Fine-tuning peak learning rate (default 1e-4).")
flags.DEFINE_enum("pooling", "cls", ["cls", "mean", "max", "auto"], "Fine-tuning "
                  "classifier head of every model: cls (the backbone's keras-hub text "
                  "classifier), mean/max over real tokens, or auto (the checkpoint's "
                  "sentence-transformers pooling).")
flags.DEFINE_float("kd_alpha", 0.0, "> 0: fine-tune every student with task-stage "
                   "distillation from the teacher's fine-tune of the same task and seed, "
                   "this weight on the teacher's logits (0: labels only).")
flags.DEFINE_float("kd_temperature", 2.0, "The teacher term's temperature (with --kd_alpha).")


def _config() -> StudyConfig:
    recipe = _CONFIG.value
    quick = finetune_cpu_quick.get_config()
    finetune = _cli.override_from_flags({k: quick[k] for k in FINETUNE_KEYS},
                                        {k: k for k in FINETUNE_KEYS})
    if FLAGS.pooling != "cls":  # the default head stays out of a study's saved settings
        finetune["pooling"] = FLAGS.pooling
    return StudyConfig(
        distill=recipe,
        rows=parse_rows(FLAGS.rows),
        tasks=parse_tasks(FLAGS.tasks),
        seeds=[int(s) for s in FLAGS.seeds],
        steps=FLAGS.steps or recipe.train.steps,
        finetune=finetune,
        budgets=[int(b) for b in FLAGS.budgets],
        curve_row=parse_rows([FLAGS.curve_row])[0] if FLAGS.curve_row else None,
        kd_alpha=FLAGS.kd_alpha,
        kd_temperature=FLAGS.kd_temperature,
    )


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not FLAGS.workdir:
        raise app.UsageError("--workdir is required.")
    try:
        study = Study(_config(), FLAGS.workdir, log=logging.info)
        study.run()
    except RunInterrupted as e:
        logging.warning("%s", e)
        return 130
    except (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError,
            PermissionError, FileExistsError, FloatingPointError, CheckpointWriteError) as e:
        logging.debug("Traceback:", exc_info=True)
        print(f"error: {_cli.flag_message(e)}", file=sys.stderr)
        return 1
    with open(f"{study.workdir}/study.md", encoding="utf-8") as f:
        print(f.read())
    print(f"wrote {study.workdir}/study.md, study.json, study.png"
          + (", curve.json, curve.png" if study.curve_rows else ""))
    return 0


if __name__ == "__main__":
    _cli.run(main, flags_parser=_cli.parse_config_flags)
