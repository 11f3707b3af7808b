#!/usr/bin/env bash
# After a FER2013 run with kept epochs (train --keep-epochs, or snapshots of last.* per
# epoch named epoch_NNN.*): average its last K epochs for each K, pick on the validation
# carve between the best averaged model and the run's best single epoch, then score only the
# pick on the test split (plain and with flip TTA). The choice never sees the test split.
#   bash bench/average_and_score.sh RUN_DIR ["3 5 10 15 20"]
# Prints the pick; test metrics land in RUN_DIR/eval_test_<pick>[_tta]/. Figures -> docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED="${FER_VIDEO_SHARED:-$(cd .. && pwd)/shared}"
RUN="${1:?usage: bench/average_and_score.sh RUN_DIR [\"K1 K2 ...\"]}"
LASTS="${2:-3 5 10 15 20}"
FV="${FV:-.venv/bin/fer-video}"
# shellcheck disable=SC2086
$FV average "$RUN" --last $LASTS
PICK="$(.venv/bin/python - "$RUN" <<'PY'
import json, sys
from fer_video.train import _selection_key
s = json.load(open(f"{sys.argv[1]}/average.json"))
single, avg = s["best_single_epoch"], s["chosen"]
pick = "averaged" if _selection_key(avg) > _selection_key(single) else "best"
print(f"validation: best single epoch {single['epoch']} acc {single['val_acc']:.4f} loss {single.get('val_loss', float('nan')):.4f}; "
      f"averaged last {avg['last']} acc {avg['val_acc']:.4f} loss {avg['val_loss']:.4f}; pick: {pick}", file=sys.stderr)
print(pick)
PY
)"
$FV evaluate --model "$RUN/$PICK.safetensors" --data "$SHARED/datasets/fer2013" --out "$RUN/eval_test_$PICK"
$FV evaluate --model "$RUN/$PICK.safetensors" --data "$SHARED/datasets/fer2013" --out "$RUN/eval_test_${PICK}_tta" --tta-flip
echo "pick: $PICK ($RUN/$PICK.safetensors); export it with: python bench/export_default_model.py $RUN --checkpoint $PICK"
