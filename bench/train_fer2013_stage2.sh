#!/usr/bin/env bash
# Stage 2 of the FER2013 ResNet50: the small stem (no stem max-pool, so layer4 sees 3x3
# instead of 2x2 at 48x48), started from stage 1's backbone (bench/train_fer2013.sh), the
# whole network at the full learning rate, a new cosine schedule. Then scores it.
# Run it again from a stage-2 run (same stem, same classes: the head is kept too) for a
# further cosine cycle at a lower peak LR: that is stage 3.
# Resumable: rerun the same command after an interruption. Figures -> docs/benchmarks.md.
#   bash bench/train_fer2013_stage2.sh PREVIOUS_RUN [RUN_DIR] [EPOCHS] [PEAK_LR]
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED="${FER_VIDEO_SHARED:-$(cd .. && pwd)/shared}"
PREV="${1:?run directory of the previous stage (bench/train_fer2013.sh, or a stage-2 run)}"
RUN="${2:-runs/fer2013_r50s}"
EPOCHS="${3:-20}"
LR="${4:-1e-3}"
FV="${FV:-.venv/bin/fer-video}"
if [ -f "$RUN/train_state.pt" ]; then
  $FV train --out "$RUN" --resume
else
  $FV train --data "$SHARED/datasets/fer2013" --out "$RUN" --weights "$PREV/best.safetensors" \
    --epochs "$EPOCHS" --batch-size 64 --lr "$LR" --backbone-lr-mult 1.0 --img-size 48 \
    --head seed --stem small
fi
# The test split is scored once, after the epoch was chosen on the validation split.
$FV evaluate --model "$RUN/best.safetensors" --data "$SHARED/datasets/fer2013" --out "$RUN/eval_test"
$FV evaluate --model "$RUN/best.safetensors" --data "$SHARED/datasets/fer2013" --out "$RUN/eval_test_tta" --tta-flip
