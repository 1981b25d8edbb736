#!/usr/bin/env bash
# bash scripts/run_standalone_train.sh CONFIG [--set key=value ...] [--resume auto]
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 CONFIG [extra mindcv-ext train args]" >&2; exit 2; }
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
mindcv-ext train -c "$@"
