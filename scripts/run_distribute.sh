#!/usr/bin/env bash
# Data-parallel training with MindSpore's msrun on any device (CPU, GPU, Ascend).
#   bash scripts/run_distribute.sh CONFIG NUM_WORKERS [extra mindcv-ext train args]
# Logs of every worker go to $LOG_DIR (default runs/msrun_logs); rank 0 writes checkpoints.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 CONFIG NUM_WORKERS [extra args]" >&2; exit 2; }
CONFIG="$1"; WORKERS="$2"; shift 2
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
LOG_DIR="${LOG_DIR:-runs/msrun_logs}"
PORT="${MASTER_PORT:-$((8118 + RANDOM % 1000))}"
msrun --worker_num="$WORKERS" --local_worker_num="$WORKERS" --master_port="$PORT" --log_dir="$LOG_DIR" \
  --join=True "$(command -v mindcv-ext)" train -c "$CONFIG" "$@"
