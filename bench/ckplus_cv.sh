#!/usr/bin/env bash
# CK+48 (7 classes incl. contempt), subject-grouped 10-fold cross-validation of the same
# recipe, once fine-tuned from our FER2013 checkpoint and once from scratch.
#   bash bench/ckplus_cv.sh PRETRAINED_CHECKPOINT [OUT_DIR] [EPOCHS]
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED="${FER_VIDEO_SHARED:-$(cd .. && pwd)/shared}"
PRE="${1:?usage: bench/ckplus_cv.sh PRETRAINED_CHECKPOINT [OUT_DIR] [EPOCHS]}"
OUT="${2:-runs/ckplus_cv}"
EPOCHS="${3:-20}"
FV="${FV:-.venv/bin/fer-video}"
# both arms use the pretrained checkpoint's stem (imagenet or small)
STEM="$(.venv/bin/python -c 'import json,sys; print(json.load(open(sys.argv[1].rsplit(".",1)[0]+".json")).get("stem","imagenet"))' "$PRE")"
common=(--data "$SHARED/datasets/ckplus48" --folds 10 --epochs "$EPOCHS" --batch-size 32 --img-size 48 --head seed --stem "$STEM")
$FV evaluate "${common[@]}" --weights "$PRE" --freeze-epochs 2 --lr 1e-3 --out "$OUT/pretrained"
$FV evaluate "${common[@]}" --weights none --lr 1e-3 --out "$OUT/scratch"
