#!/usr/bin/env bash
# Data-parallel training with MindSpore's msrun on any device (CPU, GPU, Ascend).
#   bash scripts/run_distribute.sh CONFIG NUM_WORKERS [extra mindcv-ext train args]
# Logs of every worker go to $LOG_DIR (default runs/msrun_logs); rank 0 writes checkpoints.
# The job fails fast: a worker that cannot join (or dies before init) ends it within
# $MINDCV_EXT_CLUSTER_TIMEOUT seconds (default 60; msrun's --cluster_time_out), a worker that fails
# ends it at once, and workers still running that long after another one exited are ended; the
# failing rank's last log lines are printed (scripts/msrun_watch.py).
# MINDCV_EXT_NO_SETUP=1 skips scripts/setup_env.sh (use the Python environment already on PATH).
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 CONFIG NUM_WORKERS [extra args]" >&2; exit 2; }
CONFIG="$1"; WORKERS="$2"; shift 2
[[ "$WORKERS" =~ ^[1-9][0-9]*$ ]] || { echo "error: NUM_WORKERS must be a positive integer, got '$WORKERS'" >&2; exit 2; }
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ -z "${MINDCV_EXT_NO_SETUP:-}" ]; then
  source "$HERE/setup_env.sh"
fi
LOG_DIR="${LOG_DIR:-runs/msrun_logs}"
PORT="${MASTER_PORT:-$((8118 + RANDOM % 1000))}"
TIMEOUT="${MINDCV_EXT_CLUSTER_TIMEOUT:-60}"
[[ "$TIMEOUT" =~ ^[1-9][0-9]*$ ]] || { echo "error: MINDCV_EXT_CLUSTER_TIMEOUT must be a positive number of seconds, got '$TIMEOUT'" >&2; exit 2; }
# MINDCV_EXT_DIST_ENTRY: the Python script each worker runs (default: the mindcv-ext command)
ENTRY="${MINDCV_EXT_DIST_ENTRY:-$(command -v mindcv-ext)}"
exec python "$HERE/msrun_watch.py" --workers "$WORKERS" --log-dir "$LOG_DIR" --port "$PORT" \
  --cluster-timeout "$TIMEOUT" -- "$ENTRY" train -c "$CONFIG" "$@"
