"""Distill a teacher encoder into a MiniLM student.

    python tools/distill.py --config configs/demo_cpu.py --workdir runs/demo \
        --config.student.num_layers=4

Rerunning the same command resumes from the newest checkpoint in --workdir.
Unknown config keys are an error. See configs/base.py for every key.
"""

import os
import re
import shlex
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from minilm_tf.assistant import (  # noqa: E402
    ROUTES,
    choose_route,
    run_with_assistant,
    summarize_assistant,
)
from minilm_tf.checkpointing import CheckpointWriteError  # noqa: E402
from minilm_tf.run import RunInterrupted, run_distillation, summarize  # noqa: E402


def _unknown_key(error: Exception) -> None:
    """Exits naming the `--config.` override whose key does not exist.

    ml_collections raises a KeyError (sometimes wrapped in an AttributeError)
    whose message starts with the missing key in quotes, or ends with
    "Attempting to lookup: PATH" when a path goes through a non-dict value.
    """
    while error.args and isinstance(error.args[0], BaseException):
        error = error.args[0]
    message = str(error.args[0]) if error.args else str(error)
    overrides = [
        a.split("=", 1)[0][len("--config."):] for a in sys.argv if a.startswith("--config.")
    ]
    lookup = re.search(r"Attempting to lookup: (\S+)", message)
    missing = re.match(r"'([^']+)'", message)
    if lookup:
        bad = [lookup.group(1)]
    elif missing:
        bad = [o for o in overrides if missing.group(1) in o.split(".")] or [missing.group(1)]
    else:
        bad = [message.splitlines()[0] if message else type(error).__name__]
    suggestion = re.search(r'Did you mean "([^"]+)"', message)
    sys.exit(
        "error: unknown config key "
        + ", ".join(f"--config.{b}" if b in overrides else repr(b) for b in dict.fromkeys(bad))
        + (f' (did you mean "{suggestion.group(1)}"?)' if suggestion else "")
        + "; configs/base.py lists every valid key."
    )


try:  # config_flags reads the --config.* overrides from sys.argv right here
    _CONFIG = config_flags.DEFINE_config_file(
        "config", "configs/demo_cpu.py", "Recipe file under configs/.", lock_config=True
    )
except (AttributeError, KeyError) as e:
    _unknown_key(e)
_WORKDIR = flags.DEFINE_string("workdir", "runs/demo", "Output directory (resumed when it exists).")
_ASSISTANT = flags.DEFINE_enum(
    "assistant", None, list(ROUTES),
    "Teacher-assistant route (overrides config.assistant.mode): off, on, or auto (the paper's "
    "rule: an assistant when the student has at most half the teacher's layers and width).",
)


def _parse_flags(argv: list[str]) -> list[str]:
    """absl flag parsing with one-line errors instead of tracebacks."""
    try:
        return flags.FLAGS(argv)
    except (AttributeError, KeyError) as e:
        _unknown_key(e)
    except flags.Error as e:
        sys.exit(f"error: {e}")


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
    except (ValueError, FileNotFoundError, CheckpointWriteError) as e:
        # Bad configs, data or work directories, or a full disk: the message
        # says what to change; the traceback is there with --v=1.
        logging.debug("Traceback:", exc_info=True)
        sys.exit(f"error: {e}")
    print(f"route: {reason}")
    print(summarize_assistant(report) if use_assistant else summarize(report))
    finetune = [
        sys.executable,
        os.path.join(os.path.dirname(os.path.abspath(__file__)), "finetune.py"),
        "--model", report["student_dir"],
        "--task", "rotten_tomatoes",
        "--workdir",
        os.path.join(os.path.dirname(report["student_dir"]), "finetune_rotten_tomatoes"),
    ]
    print(f"next: fine-tune and evaluate the student with\n  {shlex.join(finetune)}")


if __name__ == "__main__":
    app.run(main, flags_parser=_parse_flags)
