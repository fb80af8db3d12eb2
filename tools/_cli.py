"""What every tool's command line shares: one `error: ...` line (exit status
1) for a bad flag value or a usage error, instead of absl's usage text or
"FATAL Flags parsing error"."""

import re
import sys

from absl import app, flags


def parse_flags(argv: list[str]) -> list[str]:
    """absl flag parsing with a one-line error."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        sys.exit(f"error: {e}")


def parse_config_flags(argv: list[str]) -> list[str]:
    """`parse_flags` for tools with a `--config` recipe (`define_config`)."""
    try:
        return parse_flags(argv)
    except (AttributeError, KeyError) as e:
        unknown_config_key(e)


def define_config(default: str, help_text: str):
    """The `--config` recipe flag (ml_collections, locked: unknown keys are
    errors). It reads the `--config.*` overrides from sys.argv right here."""
    from ml_collections import config_flags

    try:
        return config_flags.DEFINE_config_file("config", default, help_text, lock_config=True)
    except (AttributeError, KeyError) as e:
        unknown_config_key(e)


def unknown_config_key(error: Exception) -> None:
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


def run(main, flags_parser=parse_flags) -> None:
    """`absl.app.run(main)`; `app.UsageError` from `main` is one error line."""

    def checked_main(argv):
        try:
            return main(argv)
        except app.UsageError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1

    app.run(checked_main, flags_parser=flags_parser)
