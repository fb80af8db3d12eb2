"""tools/benchmark_finetune.py beside the PyTorch reference of the same step
(benchmarks/reference/torch_finetune_step.py): both run, and the printed
ratio is ours / theirs from the printed speeds. Needs the torch environment
(tools/make_torch_env.sh); skipped without it."""

import os
import re
import subprocess
import sys

from locations import TOOLS_DIR
from torch_env import TORCH_PYTHON, needs_torch_env


@needs_torch_env
def test_the_reference_runs_beside_ours_and_the_ratio_is_printed():
    proc = subprocess.run(
        [sys.executable, os.path.join(TOOLS_DIR, "benchmark_finetune.py"), "--batch_size", "4",
         "--seq_len", "16", "--steps", "2", "--warmup_steps", "1", "--threads", "1",
         "--jit_compile", "false", "--reference_python", TORCH_PYTHON],
        capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    ours = float(re.search(r"fast_paths \w+: \d+ ms/step .*?, ([0-9.]+) examples/s", out).group(1))
    result = re.search(r"RESULT torch_finetune batch=4 seq=16 precision=float32 threads=1 .*"
                       r"examples_per_s=([0-9.]+)", out)
    assert result, out
    ratio = float(re.search(r"ours / PyTorch reference: ([0-9.]+)", out).group(1))
    assert abs(ratio - ours / float(result.group(1))) <= 0.02 * ratio + 0.01
