#!/usr/bin/env bash
# CK+48 (7 classes incl. contempt), subject-grouped 10-fold cross-validation of the same
# recipe on the same folds (fixed by --seed): fine-tuned from our FER2013 checkpoint with the
# seed head, from scratch with the seed head, and fine-tuned with the plain linear head.
#   bash bench/ckplus_cv.sh PRETRAINED_CHECKPOINT [OUT_DIR] [EPOCHS]
#   ARMS="pretrained scratch linear" (default: all three). SEED=0 (default) fixes the folds and
#   the initialisation; another SEED gives new folds. Resumable fold by fold: rerun it.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED="${FER_VIDEO_SHARED:-$(cd .. && pwd)/shared}"
PRE="${1:?usage: bench/ckplus_cv.sh PRETRAINED_CHECKPOINT [OUT_DIR] [EPOCHS]}"
OUT="${2:-runs/ckplus_cv}"
EPOCHS="${3:-20}"
ARMS="${ARMS:-pretrained scratch linear}"
SEED="${SEED:-0}"
FV="${FV:-.venv/bin/fer-video}"
# every arm uses the pretrained checkpoint's stem (imagenet or small)
STEM="$(.venv/bin/python -c 'import json,sys; print(json.load(open(sys.argv[1].rsplit(".",1)[0]+".json")).get("stem","imagenet"))' "$PRE")"
common=(--data "$SHARED/datasets/ckplus48" --folds 10 --epochs "$EPOCHS" --batch-size 32 --img-size 48 --stem "$STEM" --seed "$SEED")
for arm in $ARMS; do
  case "$arm" in
    pretrained) $FV evaluate "${common[@]}" --head seed --weights "$PRE" --freeze-epochs 2 --lr 1e-3 --out "$OUT/pretrained" ;;
    scratch)    $FV evaluate "${common[@]}" --head seed --weights none --lr 1e-3 --out "$OUT/scratch" ;;
    linear)     $FV evaluate "${common[@]}" --head linear --weights "$PRE" --freeze-epochs 2 --lr 1e-3 --out "$OUT/linear" ;;
    *) echo "unknown arm: $arm" >&2; exit 2 ;;
  esac
done
