#!/usr/bin/env bash
# Install, train the default config on the embedded digits, evaluate, export MindIR and check it.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
CONFIG="${1:-configs/resnet/resnet20_digits.yaml}"
OUT="${QUICKSTART_DIR:-runs/quickstart}"
mindcv-ext train -c "$CONFIG" --set train.output_dir="$OUT"
metrics=$(mindcv-ext eval -c "$CONFIG" --ckpt "$OUT/best.ckpt" --json | tail -n 1)
report=$(mindcv-ext export -c "$CONFIG" --ckpt "$OUT/best.ckpt" --format MINDIR --out "$OUT/model" | tail -n 1)
echo "$report"
top1=$(python -c "import json,sys; print('%.3f' % json.loads(sys.argv[1])['top1'])" "$metrics")
agree=$(echo "$report" | sed -n 's/.*top-1 agreement \([0-9.]*\).*/\1/p')
echo "quickstart: val_top1=${top1} mindir_agreement=${agree:-0.000}"
python -c "import sys; sys.exit(0 if float(sys.argv[1]) >= 0.95 else 'quickstart: val_top1 below 0.95')" "$top1"
