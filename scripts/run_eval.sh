#!/usr/bin/env bash
# bash scripts/run_eval.sh CONFIG CKPT [--json] [--set key=value ...]
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 CONFIG CKPT [extra args]" >&2; exit 2; }
CONFIG="$1"; CKPT="$2"; shift 2
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
mindcv-ext eval -c "$CONFIG" --ckpt "$CKPT" "$@"
