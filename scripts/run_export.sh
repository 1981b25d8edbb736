#!/usr/bin/env bash
# bash scripts/run_export.sh CONFIG CKPT [MINDIR|ONNX] [extra args]
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 CONFIG CKPT [MINDIR|ONNX] [extra args]" >&2; exit 2; }
CONFIG="$1"; CKPT="$2"; FORMAT="${3:-MINDIR}"; shift $(( $# >= 3 ? 3 : 2 ))
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
mindcv-ext export -c "$CONFIG" --ckpt "$CKPT" --format "$FORMAT" "$@"
