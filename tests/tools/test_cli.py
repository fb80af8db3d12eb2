"""tools/_cli.py: TensorFlow's start-up noise is quiet unless --v=1 asks for it."""

import os
import subprocess
import sys

from locations import TOOLS_DIR

sys.path.insert(0, TOOLS_DIR)
import _cli  # noqa: E402

NOISE = ("All log messages before absl::InitializeLog", "cudart_stub.cc", "cpu_feature_guard",
         "failed call to cuInit", "XLA service")


def test_verbosity_is_read_from_every_spelling():
    assert _cli._verbosity(["tool"]) == 0
    assert _cli._verbosity(["tool", "--v=1"]) == 1
    assert _cli._verbosity(["tool", "--verbosity", "2"]) == 2
    assert _cli._verbosity(["tool", "-v", "1", "--other=3"]) == 1
    assert _cli._verbosity(["tool", "--v=debug"]) == 0


def test_startup_noise_is_dropped_and_other_lines_are_kept():
    lines = ["WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
             "I0000 00:00:1.2 3 cudart_stub.cc:31] Could not find cuda drivers on your machine",
             "E0000 00:00:1.2 3 cuda_platform.cc:52] failed call to cuInit: INTERNAL",
             "Traceback (most recent call last):", "error: something real"]
    assert [line for line in lines if not _cli._STARTUP_NOISE.search(line)] == lines[3:]


def test_a_tool_starts_quietly_and_still_reports_its_error(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    proc = subprocess.run(
        [sys.executable, os.path.join(TOOLS_DIR, "finetune.py"), "--task", "rotten_tomatoes",
         "--model", str(tmp_path / "missing"), "--workdir", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=300, env=env)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output[-2000:]
    assert "error: " in output
    assert not [n for n in NOISE if n in output], output[-2000:]


def test_library_errors_name_the_flags_in_a_tool(monkeypatch):
    from absl import flags

    values = flags.FlagValues()
    flags.DEFINE_string("workdir", None, "", flag_values=values)
    flags.DEFINE_bool("overwrite", False, "", flag_values=values)
    flags.DEFINE_string("text_column", None, "", flag_values=values)
    monkeypatch.setattr(_cli.flags, "FLAGS", values)
    error = ValueError("use a new `workdir` or pass `overwrite=True`; name it with `text_key`; "
                       "`not_a_flag` stays")
    assert _cli.flag_message(error, {"text_key": "text_column"}) == (
        "use a new --workdir or pass --overwrite; name it with --text_column; `not_a_flag` stays")
