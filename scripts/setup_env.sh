#!/usr/bin/env bash
# Create .venv (once) and install the project into it in one resolve. Sourced by the other scripts.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MINDCV_EXT_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV"
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.installed-$(cat "$ROOT/requirements.txt" "$ROOT/pyproject.toml" | sha1sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  echo "setup: installing requirements (mindspore==2.8.0, numpy<2, ...)"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  # one resolve, so that nothing pulls numpy 2 past mindspore's pin
  "$VENV/bin/python" -m pip install -q -r "$ROOT/requirements.txt" onnx onnxruntime
  "$VENV/bin/python" -m pip install -q --no-deps -e "$ROOT"
  touch "$stamp"
fi
export PATH="$VENV/bin:$PATH"
export GLOG_v="${GLOG_v:-3}"   # keep MindSpore's C++ log to errors
cd "$ROOT"
