"""Running the PyTorch + Hugging Face reference of a benchmarked step
(`benchmarks/reference/`, in an interpreter with torch and transformers) and
reading its one `RESULT` line, so a tool can print our speed as a ratio
measured in the same run."""

from __future__ import annotations

import os
import re
import subprocess
from typing import Dict, Sequence


def parse_result(stdout: str, prefix: str) -> Dict[str, str]:
    """The `key=value` fields of the last line starting with `prefix`."""
    lines = [line for line in stdout.splitlines() if line.startswith(prefix)]
    if not lines:
        raise ValueError(f"no line starting with {prefix!r} in the reference's output")
    return dict(re.findall(r"(\w+)=(\S+)", lines[-1])) | {"line": lines[-1]}


def run_reference(python: str, script: str, arguments: Sequence[str], prefix: str,
                  teacher_dir: str, timeout: float = 1800.0) -> Dict[str, str]:
    """Runs `python script *arguments` with `MINILM_TEACHER_DIR=teacher_dir`;
    returns its RESULT fields, or raises RuntimeError with its stderr."""
    if not os.path.exists(python):
        raise FileNotFoundError(f"reference interpreter {python} does not exist (create it "
                                "with tools/make_torch_env.sh)")
    command = [python, script, *map(str, arguments)]
    env = dict(os.environ, MINILM_TEACHER_DIR=teacher_dir)
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
    if proc.returncode:
        raise RuntimeError(f"the reference failed ({' '.join(command)}):\n{proc.stderr[-2000:]}")
    return parse_result(proc.stdout, prefix)


def distillation_reference_arguments(batch_size: int, seq_len: int, steps: int, warmup: int,
                                     threads: int, objective: str, bf16: bool,
                                     num_relation_heads: int | None = None) -> list:
    """`torch_minilm_step.py` flags for the step `tools/benchmark.py` measured
    (v2 with its lean loss, the faster of the reference's two)."""
    args = ["--batch", batch_size, "--seq", seq_len, "--steps", steps, "--warmup", warmup,
            "--threads", threads or 2]
    if objective == "minilmv2":
        args += ["--version", "v2", "--loss-impl", "lean"]
        if num_relation_heads:
            args += ["--relation-heads", num_relation_heads]
    else:
        args += ["--version", "v1"]
    if bf16:
        args.append("--bf16")
    return args
