#!/usr/bin/env bash
# Creates .venv-torch: a separate environment with PyTorch, transformers and
# sentence-transformers, used only by tools/check_hf_parity.py to load a
# Hugging Face export (tools/export_hf.py) in the real libraries. minilm_tf
# itself never needs torch; this environment does not install minilm_tf.
# (sentencepiece and protobuf: transformers reads an XLM-R export's
# sentencepiece.bpe.model with them.)
#
# Installs the exact versions in requirements-torch.txt (torch 2.13.0 CPU).
# With REFRESH=1 it installs the unpinned set instead and rewrites
# requirements-torch.txt with what got installed.
# Idempotent: rerunning only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv-torch/bin/python ] || "$PYTHON" -m venv .venv-torch
PIP=(.venv-torch/bin/pip install -q --disable-pip-version-check)
if [ "${REFRESH:-0}" = 1 ] || [ ! -f requirements-torch.txt ]; then
  "${PIP[@]}" torch==2.13.0 transformers sentence-transformers safetensors sentencepiece protobuf
  {
    echo "# Exact pins for .venv-torch (tools/make_torch_env.sh; REFRESH=1 rewrites this file)."
    echo "# Only tools/check_hf_parity.py uses it; minilm_tf does not depend on torch."
    .venv-torch/bin/pip freeze --disable-pip-version-check | sed 's/^torch==\(.*\)+cpu$/torch==\1/'
  } > requirements-torch.txt
else
  "${PIP[@]}" -r requirements-torch.txt
fi
.venv-torch/bin/python -c "import torch, transformers, sentence_transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, 'sentence-transformers', sentence_transformers.__version__)"
