"""Distill a teacher encoder into a MiniLM student.

    python tools/distill.py --config configs/demo_cpu.py --workdir runs/demo \
        --config.student.num_layers=4

Rerunning the same command resumes from the newest checkpoint in --workdir.
Unknown config keys are an error. See configs/base.py for every key.
"""

import os
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
from minilm_tf.run import RunInterrupted, run_distillation, summarize  # noqa: E402

def _unknown_key(error: Exception) -> None:
    overrides = [a.split("=")[0] for a in sys.argv if a.startswith("--config.")]
    sys.exit(
        f"error: unknown config key {error} in {', '.join(overrides)}; "
        "configs/base.py lists every valid key."
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
    except (ValueError, FileNotFoundError) as e:
        # Bad configs, data or work directories: the message says what to
        # change; the traceback is there with --v=1.
        logging.debug("Traceback:", exc_info=True)
        sys.exit(f"error: {e}")
    print(f"route: {reason}")
    print(summarize_assistant(report) if use_assistant else summarize(report))
    print(
        "next: fine-tune and evaluate the student with\n"
        f"  python tools/finetune.py --model {report['student_dir']} --task rotten_tomatoes "
        f"--workdir {os.path.join(os.path.dirname(report['student_dir']), 'finetune_rotten_tomatoes')}"
    )


if __name__ == "__main__":
    app.run(main, flags_parser=_parse_flags)
