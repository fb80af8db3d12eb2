#!/usr/bin/env bash
# Creates .venv-model-garden: a separate environment with TensorFlow Model
# Garden (tf-models-official), used only by tools/make_model_garden_fixture.py
# to make and check Model Garden BERT encoder checkpoints with the real
# library. tf-models-official pins TensorFlow 2.20, tf-keras and absl-py 1.x,
# so it cannot share .venv (TensorFlow 2.21); minilm_tf reads Model Garden
# checkpoints without it and this environment does not install minilm_tf.
#
# Installs the exact versions in requirements-model-garden.txt (a few minutes,
# about 3.5 GB). With REFRESH=1 it installs the top-level pins below instead and
# rewrites requirements-model-garden.txt with what got installed.
# Idempotent: rerunning only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=.venv-model-garden
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/pip" install -q --disable-pip-version-check)
if [ "${REFRESH:-0}" = 1 ] || [ ! -f requirements-model-garden.txt ]; then
  "${PIP[@]}" tf-models-official==2.20.0 tensorflow==2.20.0 tensorflow-text==2.20.1 \
    tf-keras==2.20.1 absl-py==1.4.0
  {
    echo "# Exact pins for .venv-model-garden (tools/make_model_garden_env.sh; REFRESH=1 rewrites"
    echo "# this file). Only tools/make_model_garden_fixture.py uses it; minilm_tf reads Model"
    echo "# Garden checkpoints without tf-models-official."
    "$VENV/bin/pip" freeze --disable-pip-version-check
  } > requirements-model-garden.txt
else
  "${PIP[@]}" -r requirements-model-garden.txt
fi
TF_CPP_MIN_LOG_LEVEL=2 "$VENV/bin/python" -c "import tensorflow as tf, tf_keras, official; from official.nlp.modeling import networks; print('tensorflow', tf.__version__, 'tf-keras', tf_keras.__version__, 'BertEncoder', networks.BertEncoder.__name__)"
