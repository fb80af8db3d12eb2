"""The separate PyTorch environment (.venv-torch, tools/make_torch_env.sh)
the Hugging Face parity tests load exports with, and the parity tool run in
it. Tests that need it are skipped only when it does not exist."""

import json
import os
import subprocess

import pytest

from locations import REPO_ROOT, TOOLS_DIR

TORCH_PYTHON = os.path.join(REPO_ROOT, ".venv-torch", "bin", "python")
CHECK_TOOL = os.path.join(TOOLS_DIR, "check_hf_parity.py")
needs_torch_env = pytest.mark.skipif(
    not os.path.exists(TORCH_PYTHON),
    reason=".venv-torch/bin/python does not exist: run tools/make_torch_env.sh to create the "
           "PyTorch environment the parity checks load the export with",
)


def check_parity(model_dir, reference, *extra):
    """Runs tools/check_hf_parity.py in the torch environment: (process, JSON report)."""
    proc = subprocess.run([TORCH_PYTHON, CHECK_TOOL, "--model_dir", model_dir,
                           "--reference", reference, *extra],
                          capture_output=True, text=True, timeout=900)
    report = None
    if "{" in proc.stdout:
        report = json.loads(proc.stdout[proc.stdout.index("{"):])
    return proc, report
