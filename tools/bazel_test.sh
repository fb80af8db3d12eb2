#!/usr/bin/env bash
# Builds the package with Bazel and runs its fast tests (//tests:fast), offline.
# Installs Debian's Bazel (bazel-bootstrap; root or sudo) when none is on PATH.
# The Python targets run with .venv's interpreter and the native relation
# kernel builds against .venv's TensorFlow (see WORKSPACE); tools/setup.sh
# creates .venv when it is missing. Extra arguments go to `bazel test`.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v bazel >/dev/null 2>&1; then
  SUDO=()
  [ "$(id -u)" = 0 ] || SUDO=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${SUDO[@]}" apt-get install -y -qq bazel-bootstrap >/dev/null \
    || { "${SUDO[@]}" apt-get update -qq && "${SUDO[@]}" apt-get install -y -qq bazel-bootstrap >/dev/null; }
fi
[ -x .venv/bin/python ] || bash tools/setup.sh
exec bazel test //tests:fast "$@"
