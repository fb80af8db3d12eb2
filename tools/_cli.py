"""What every tool's command line shares: one `error: ...` line (exit status
1) for a bad flag value or a usage error, instead of absl's usage text or
"FATAL Flags parsing error"; and TensorFlow's start-up noise (CUDA probing,
CPU feature and XLA service lines, checkpoint sharding timings) kept quiet
unless `--v=1` (or higher) asks for it. Import it before TensorFlow."""

import logging
import os
import re
import sys

from absl import app, flags


def _verbosity(argv: list[str]) -> int:
    """The `--v` / `--verbosity` value on the command line (0 when absent)."""
    value = 0
    for i, arg in enumerate(argv):
        for name in ("--v", "--verbosity", "-v"):
            if arg == name and i + 1 < len(argv):
                value = argv[i + 1]
            elif arg.startswith(name + "="):
                value = arg.split("=", 1)[1]
    try:
        return int(value)
    except ValueError:
        return 0


# What TensorFlow prints on every CPU-only start before its C++ log level
# applies (an upstream abseil/TensorFlow limitation), dropped unless verbose.
_STARTUP_NOISE = re.compile(
    r"All log messages before absl::InitializeLog|cudart_stub\.cc|cuda_platform\.cc:\d+\] failed "
    r"call to cuInit|cpu_feature_guard\.cc|To enable the following instructions|rebuild "
    r"TensorFlow with the appropriate compiler flags")


class _QuietTensorFlowInfo(logging.Filter):
    """Drops INFO records logged from inside TensorFlow and Keras (e.g.
    checkpoint "Sharding callback duration" lines); the tools' own stay."""

    def filter(self, record: logging.LogRecord) -> bool:
        inside = any(f"{os.sep}{name}{os.sep}" in record.pathname for name in ("tensorflow", "keras"))
        return record.levelno >= logging.WARNING or not inside


def _import_tensorflow_quietly() -> None:
    """Imports TensorFlow and probes its devices with stderr captured, then
    writes back every captured line that is not start-up noise."""
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().decode(errors="replace").splitlines(True)
                    if not _STARTUP_NOISE.search(line)]
            sys.stderr.write("".join(kept))


if _verbosity(sys.argv) < 1:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # C++ INFO and WARNING lines
    from absl import logging as absl_logging

    absl_logging.get_absl_handler().addFilter(_QuietTensorFlowInfo())
    _import_tensorflow_quietly()


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


_KEYS_DOC = ["configs/base.py"]  # the recipe that lists every key, for error messages


def recipe_path(path: str) -> str:
    """`path` when it exists; else the recipe of that name in the installed
    `configs` package (so tools work from any directory)."""
    if os.path.exists(path) or not path.startswith("configs" + os.sep):
        return path
    import configs

    return os.path.join(os.path.dirname(configs.__file__), path[len("configs" + os.sep):])


def define_config(default: str, help_text: str, keys_doc: str = "configs/base.py"):
    """The `--config` recipe flag (ml_collections, locked: unknown keys are
    errors). It reads the `--config.*` overrides from sys.argv right here;
    `keys_doc` is the recipe an unknown key's error points to."""
    from ml_collections import config_flags

    _KEYS_DOC[0] = keys_doc
    try:
        return config_flags.DEFINE_config_file("config", recipe_path(default), help_text,
                                               lock_config=True)
    except (AttributeError, KeyError) as e:
        unknown_config_key(e)


def override_from_flags(values: dict, flag_of: dict) -> dict:
    """`values` (a recipe's `to_dict()`) with every flag of `flag_of`
    ({key: flag name}) that the command line set (flags default to None)."""
    for key, name in flag_of.items():
        value = getattr(flags.FLAGS, name)
        if value is not None:
            values[key] = value
    return values


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
        + f"; {_KEYS_DOC[0]} lists every valid key."
    )


# Errors a user can fix: a tool prints them as one line and exits with status 1.
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError,
               IsADirectoryError, PermissionError, NotImplementedError)


def seq2seq_arguments(argv):
    """The arguments without `--task_kind seq2seq` when they ask for it, else None:
    generation has flags of its own (decoding, source/target lengths)."""
    for i, arg in enumerate(argv):
        if arg in ("--task_kind=seq2seq", "-task_kind=seq2seq"):
            return argv[:i] + argv[i + 1:]
        if arg in ("--task_kind", "-task_kind") and argv[i + 1:i + 2] == ["seq2seq"]:
            return argv[:i] + argv[i + 2:]
    return None


def check_arguments(argv: list[str], required: tuple[str, ...]) -> None:
    """`app.UsageError` for positional arguments or unset required flags."""
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    missing = [f"--{n}" for n in required if not getattr(flags.FLAGS, n)]
    if missing:
        raise app.UsageError(f"Missing required flags: {', '.join(missing)}")


def flag_message(error: Exception, renames: dict | None = None) -> str:
    """A library error in the tool's words: the arguments it names in
    backticks (`workdir`, `overwrite=True`) become the flags that set them
    (--workdir, --overwrite); `renames` maps arguments to differently named
    flags (e.g. {"text_key": "text_column"})."""
    renames = renames or {}

    def flag(match):
        name = renames.get(match.group(1), match.group(1))
        return f"--{name}" if name in flags.FLAGS else match.group(0)

    return re.sub(r"`(\w+)(?:=True)?`", flag, str(error))


def run(main, flags_parser=parse_flags) -> None:
    """`absl.app.run(main)`; `app.UsageError` from `main` is one error line."""

    def checked_main(argv):
        try:
            return main(argv)
        except app.UsageError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1

    app.run(checked_main, flags_parser=flags_parser)
