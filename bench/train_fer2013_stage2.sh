#!/usr/bin/env bash
# Stage 2 of the FER2013 ResNet50: the small stem (no stem max-pool, so layer4 sees 3x3
# instead of 2x2 at 48x48), started from stage 1's backbone (bench/train_fer2013.sh), the
# whole network at the full learning rate, a new cosine schedule. Then scores it.
# Resumable: rerun the same command after an interruption. Figures -> docs/benchmarks.md.
#   bash bench/train_fer2013_stage2.sh STAGE1_RUN [RUN_DIR] [EPOCHS]
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED="${FER_VIDEO_SHARED:-$(cd .. && pwd)/shared}"
STAGE1="${1:?the stage-1 run directory (bench/train_fer2013.sh)}"
RUN="${2:-runs/fer2013_r50s}"
EPOCHS="${3:-20}"
FV="${FV:-.venv/bin/fer-video}"
if [ -f "$RUN/train_state.pt" ]; then
  $FV train --out "$RUN" --resume
else
  $FV train --data "$SHARED/datasets/fer2013" --out "$RUN" --weights "$STAGE1/best.safetensors" \
    --epochs "$EPOCHS" --batch-size 64 --lr 1e-3 --backbone-lr-mult 1.0 --img-size 48 \
    --head seed --stem small
fi
# The test split is scored once, after the epoch was chosen on the validation split.
$FV evaluate --model "$RUN/best.safetensors" --data "$SHARED/datasets/fer2013" --out "$RUN/eval_test"
$FV evaluate --model "$RUN/best.safetensors" --data "$SHARED/datasets/fer2013" --out "$RUN/eval_test_tta" --tta-flip
