#!/usr/bin/env bash
# One prepared run for a lent GPU (the device tool): the issue-11 recipe on CUDA, then the
# best checkpoint brought back through $OUT in <= 15 MB pieces (the tool returns at most 8
# files of 16 MiB). Join them here with: cat best.safetensors.part-* > best.safetensors
#
#   bash bench/gpu_train.sh [EPOCHS] [START_WEIGHTS]
#
# Runs on the device machine from the repository root; needs the shared data beside the
# repository (FER_VIDEO_SHARED) and a venv with torch (CUDA build) and facenet-pytorch.
set -euo pipefail
EPOCHS="${1:-20}"
START="${2:-fer_video/models/fer2013_resnet50.safetensors}"
OUT="${OUT:-/tmp/gpu_out}"
SHARED="${FER_VIDEO_SHARED:-$(cd .. && pwd)/shared}"
RUN=/tmp/gpu_run
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"
.venv/bin/fer-video train \
  --data "$SHARED/datasets/fer2013,labels=ferplus,weight=1" --data "$SHARED/datasets/rafdb,weight=1" \
  --weights "$START" --stem small --head seed --face-frame fer2013 --augment video \
  --epochs "$EPOCHS" --lr 3e-4 --backbone-lr-mult 1.0 --batch-size 256 --device cuda --out "$RUN" \
  2>&1 | tail -n 40 | tee "$OUT/train_tail.log"
cp "$RUN/best.json" "$RUN/metrics.jsonl" "$OUT/"
split -b 15M -d "$RUN/best.safetensors" "$OUT/best.safetensors.part-"
ls -la "$OUT"
