#!/usr/bin/env bash
# The accelerator check: on a machine with a GPU, runs the tests that exercise
# the device paths (strategies, the relation losses on the XLA path, the
# distiller, mixed_float16 loss scaling, bfloat16) and tools/benchmark.py's
# distillation step in float32, mixed_float16 and mixed_bfloat16, then writes
# a JSON summary (devices, test counts, tokens/s per precision).
#
#   bash tools/device_check.sh [OUT_DIR]      # default: $OUT, else runs/device_check
#
# It needs a Python with the package's requirements and a GPU build of
# TensorFlow (for example `pip install "tensorflow[and-cuda]"` in .venv);
# $PYTHON picks the interpreter (default .venv/bin/python). Without a GPU it
# still runs everything on the CPU and says so in the summary ("gpus": []).
# Each step has a time limit (DEVICE_CHECK_STEP_TIMEOUT seconds, default 240),
# so the whole check stays within a few minutes; a step that fails or times
# out is recorded and the next one runs. DEVICE_CHECK_STEPS sets the timed
# benchmark steps (default 10).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${1:-${OUT:-runs/device_check}}
PY=${PYTHON:-.venv/bin/python}
LIMIT=${DEVICE_CHECK_STEP_TIMEOUT:-240}
STEPS=${DEVICE_CHECK_STEPS:-10}
mkdir -p "$OUT_DIR"
export TF_CPP_MIN_LOG_LEVEL=2 PYTHONUNBUFFERED=1

"$PY" - > "$OUT_DIR/devices.json" <<'PYEOF'
import json
import tensorflow as tf
gpus = tf.config.list_physical_devices("GPU")
print(json.dumps({"tensorflow": tf.__version__, "built_with_cuda": tf.test.is_built_with_cuda(),
                  "gpus": [tf.config.experimental.get_device_details(g) | {"name": g.name}
                           for g in gpus]}, indent=2))
PYEOF
cat "$OUT_DIR/devices.json"

timeout "$LIMIT" "$PY" -m pytest -q -m "not slow" -p no:cacheprovider \
  --junitxml="$OUT_DIR/tests.xml" \
  tests/training/test_distribute.py tests/losses/test_relations.py \
  tests/models/test_distiller.py tests/optimizers/test_optim.py \
  tests/ops/test_attention.py tests/ops/test_normalization.py \
  2>&1 | tee "$OUT_DIR/tests.log"
echo "tests exit ${PIPESTATUS[0]}" | tee -a "$OUT_DIR/tests.log"

for precision in float32 mixed_float16 mixed_bfloat16; do
  timeout "$LIMIT" "$PY" tools/benchmark.py --precisions "$precision" --steps "$STEPS" \
    --output_json "$OUT_DIR/benchmark_$precision.json" 2>&1 | tee "$OUT_DIR/benchmark_$precision.log"
done

"$PY" - "$OUT_DIR" <<'PYEOF'
import glob, json, os, sys
import xml.etree.ElementTree as ET
out = sys.argv[1]
summary = {"devices": json.load(open(os.path.join(out, "devices.json")))}
try:
    suite = ET.parse(os.path.join(out, "tests.xml")).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    summary["tests"] = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
except (OSError, ET.ParseError) as e:
    summary["tests"] = {"error": f"no test report ({e})"}
summary["benchmark"] = {}
for path in sorted(glob.glob(os.path.join(out, "benchmark_*.json"))):
    precision = os.path.basename(path)[len("benchmark_"):-len(".json")]
    with open(path) as f:
        summary["benchmark"][precision] = json.load(f)
with open(os.path.join(out, "summary.json"), "w") as f:
    json.dump(summary, f, indent=2)
print(json.dumps({"devices": summary["devices"]["gpus"], "tests": summary["tests"],
                  "benchmarks": sorted(summary["benchmark"])}, indent=2))
PYEOF
