"""Distill a teacher encoder into a MiniLM student.

    python tools/distill.py --config configs/demo_cpu.py --workdir runs/demo \
        --config.student.num_layers=4

Rerunning the same command resumes from the newest checkpoint in --workdir
(one run at a time: a second one on the same --workdir is refused). Bad
input is one `error: ...` line and exit status 1. Unknown config keys are an
error. See configs/base.py for every key.
"""

import os
import shlex
import sys

from absl import app, flags, logging  # noqa: E402

import _cli  # noqa: E402  (tools/_cli.py: one error line for bad flags)

from minilm_tf.training.assistant import (  # noqa: E402
    ROUTES,
    choose_route,
    run_with_assistant,
    summarize_assistant,
)
from minilm_tf.training.checkpointing import CheckpointWriteError  # noqa: E402
from minilm_tf.training.checkpointing import RunInterrupted  # noqa: E402
from minilm_tf.training.distillation import run_distillation, summarize  # noqa: E402


_CONFIG = _cli.define_config("configs/demo_cpu.py", "Recipe file under configs/.")
_WORKDIR = flags.DEFINE_string("workdir", "runs/demo", "Output directory (resumed when it exists).")
_ASSISTANT = flags.DEFINE_enum(
    "assistant", None, list(ROUTES),
    "Teacher-assistant route (overrides config.assistant.mode): off, on, or auto (the paper's "
    "rule: an assistant when the student has at most half the teacher's layers and width).",
)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    config = _CONFIG.value
    use_assistant, reason = choose_route(config, _ASSISTANT.value or config.assistant.mode)
    logging.info("Route: %s.", reason)
    try:
        if use_assistant:
            report = run_with_assistant(config, _WORKDIR.value, run_distillation)
        else:
            report = run_distillation(config, _WORKDIR.value)
    except RunInterrupted as e:
        logging.warning("%s", e)
        sys.exit(130)
    except (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError,
            PermissionError, FileExistsError, FloatingPointError, CheckpointWriteError) as e:
        # Bad configs, data or work directories (a file, read-only, a link
        # leading outside, another run holding it), a diverged loss or a full
        # disk: the message says what to change; the traceback is there with
        # --v=1.
        logging.debug("Traceback:", exc_info=True)
        sys.exit(f"error: {_cli.flag_message(e)}")
    print(f"route: {reason}")
    print(summarize_assistant(report) if use_assistant else summarize(report))
    finetune = [
        sys.executable,
        os.path.join(os.path.dirname(os.path.abspath(__file__)), "finetune.py"),
        "--model", report["student_dir"],
        "--task", "rotten_tomatoes",
        "--pooling", "auto",
        # what the README's and docs/results.md's numbers used for 3-layer students
        "--learning_rate", "1e-4",
        "--sequence_length", "64",
        "--workdir",
        os.path.join(os.path.dirname(report["student_dir"]), "finetune_rotten_tomatoes"),
    ]
    print(f"next: fine-tune and evaluate the student with\n  {shlex.join(finetune)}")


if __name__ == "__main__":
    _cli.run(main, flags_parser=_cli.parse_config_flags)
