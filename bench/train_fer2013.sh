#!/usr/bin/env bash
# Train the FER2013 ResNet50 (from scratch: no ImageNet download here) and score it.
# Resumable: rerun the same command after an interruption. Figures -> docs/benchmarks.md.
#   bash bench/train_fer2013.sh [RUN_DIR] [EPOCHS]
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED="${FER_VIDEO_SHARED:-$(cd .. && pwd)/shared}"
RUN="${1:-runs/fer2013_r50}"
EPOCHS="${2:-15}"
FV="${FV:-.venv/bin/fer-video}"
if [ -f "$RUN/train_state.pt" ]; then
  $FV train --out "$RUN" --resume
else
  $FV train --data "$SHARED/datasets/fer2013" --out "$RUN" --weights none --epochs "$EPOCHS" \
    --batch-size 64 --lr 1e-3 --img-size 48 --head seed --stem imagenet
fi
# The test split is scored once, after the epoch was chosen on the validation split.
$FV evaluate --model "$RUN/best.safetensors" --data "$SHARED/datasets/fer2013" --out "$RUN/eval_test"
$FV evaluate --model "$RUN/best.safetensors" --data "$SHARED/datasets/fer2013" --out "$RUN/eval_test_tta" --tta-flip
