#!/usr/bin/env bash
# Choose test-time augmentation for a FER2013 checkpoint on its own validation carve
# (`evaluate --split val`), then score the test split once with the chosen mode.
#   bash bench/choose_tta.sh CHECKPOINT
# Writes CHECKPOINT's folder/tta_<name>/val_<mode>/ and tta_<name>/test_<chosen>/. Figures -> docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED="${FER_VIDEO_SHARED:-$(cd .. && pwd)/shared}"
CKPT="${1:?usage: bench/choose_tta.sh CHECKPOINT}"
FV="${FV:-.venv/bin/fer-video}"
OUT="$(dirname "$CKPT")/tta_$(basename "${CKPT%.safetensors}")"
for mode in none flip tencrop; do
  $FV evaluate --model "$CKPT" --data "$SHARED/datasets/fer2013" --split val --tta "$mode" --out "$OUT/val_$mode" | grep -E "^(data|accuracy|macro)"
done
# Highest validation accuracy; a tie goes to the mode with fewer views (listed first).
CHOSEN="$(.venv/bin/python - "$OUT" <<'PY'
import json, sys
acc = {m: json.load(open(f"{sys.argv[1]}/val_{m}/metrics.json"))["accuracy"] for m in ("none", "flip", "tencrop")}
chosen = max(acc, key=lambda m: (acc[m], -list(acc).index(m)))
print("validation accuracy: " + ", ".join(f"{m} {a:.4f}" for m, a in acc.items()) + f"; chosen: {chosen}", file=sys.stderr)
print(chosen)
PY
)"
$FV evaluate --model "$CKPT" --data "$SHARED/datasets/fer2013" --tta "$CHOSEN" --out "$OUT/test_$CHOSEN"
