#!/usr/bin/env python3
"""Every public accuracy figure for one or more checkpoints, side by side, in one run.

Rows (each a test split; nothing here chooses a model or a setting):
- FER2013 test, original labels: accuracy on all 7,178 images and clean (without the 568
  that duplicate a train image);
- FER+ test: accuracy against the majority of the FER+ votes (images without a clear
  majority among the 7 classes left out; ``data.ferplus_majority``);
- RAF-DB basic, official test split (3,068 images);
- CK+48 zero-shot: all 981 images, the 6 classes shared with the model (contempt left out);
- the acted clips in ``videos/labelled`` (``bench/labelled_videos.py``'s rule: argmax of the
  mean probabilities of the face seen in most frames; contempt not scored);
- ECE (15 bins) of the calibrated probabilities on each image test split, with the
  uncalibrated figure in brackets where the checkpoint has a temperature.

    python bench/accuracy_table.py                                  # the shipped model
    python bench/accuracy_table.py --model old.safetensors --model new.safetensors
    python bench/accuracy_table.py --model new.safetensors --no-clips --json table.json
    python bench/accuracy_table.py --precision fp32 int8 --tta none flip   # 4 columns
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def clip_accuracy(model: str | None, shared: Path, precision: str = "auto",
                  predictions: dict | None = None, tta: str = "none") -> tuple[int, int]:
    """(right, scored) over the labelled clips; ``predictions`` gets {file: predicted class}."""
    import fer_video
    from fer_video.checkpoint import default_model_path, load_config

    classes = load_config(model or default_model_path()).classes
    folder = shared / "videos" / "labelled"
    scored = correct = 0
    for r in csv.DictReader(open(folder / "labels.csv")):
        if r["label"] not in classes:
            continue
        scored += 1
        _, faces = fer_video.analyze(folder / r["file"], fps=5.0, precision=precision, tta=tta,
                                     **({"model": model} if model else {}))
        pred = None
        if faces:
            face = max(faces, key=lambda f: f.n_frames)
            pred = max(face.mean_probs, key=face.mean_probs.get)
            correct += pred == r["label"]
        if predictions is not None:
            predictions[r["file"]] = pred
    return correct, scored


def score(model: str | None, shared: Path, clips: bool, precision: str = "auto", tta: str = "none") -> dict:
    from fer_video.evaluate import evaluate_model

    d = shared / "datasets"
    fer = evaluate_model(model, str(d / "fer2013"), split="test", precision=precision, tta=tta)
    raf = evaluate_model(model, str(d / "rafdb"), split="test", precision=precision, tta=tta)
    ck = evaluate_model(model, str(d / "ckplus48"), split="test", precision=precision, tta=tta)
    row = {"model": fer["model"], "precision": fer["precision"], "tta": tta, "temperature": fer["temperature"],
           "fer2013_full": fer["accuracy"], "fer2013_clean": fer["clean_accuracy"],
           "ferplus_test": fer.get("ferplus_accuracy"), "ferplus_n": fer.get("ferplus_n"),
           "rafdb_test": raf["accuracy"], "ckplus_zero_shot": ck["accuracy"],
           "ece": {"fer2013": (fer["ece"], fer.get("ece_uncalibrated")),
                   "ferplus": (fer.get("ferplus_ece"), fer.get("ferplus_ece_uncalibrated")),
                   "rafdb": (raf["ece"], raf.get("ece_uncalibrated")),
                   "ckplus": (ck["ece"], ck.get("ece_uncalibrated"))}}
    if clips:
        row["clip_predictions"] = {}
        row["clips"] = clip_accuracy(model, shared, precision, row["clip_predictions"], tta)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", help="checkpoint (repeat to compare; default: the shipped model)")
    ap.add_argument("--no-clips", action="store_true", help="skip the labelled clips (the slowest row)")
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("--tta", nargs="+", default=["none"], choices=["none", "flip", "tencrop"],
                    help="test-time augmentation, as analyze's --tta; several: one column each")
    ap.add_argument("--precision", nargs="+", default=["auto"], choices=["auto", "fp32", "bf16", "int8"],
                    help="the classifier's arithmetic; several: one column per model and precision "
                         "(default: auto, as analyze and evaluate)")
    ap.add_argument("--shared", default=os.environ.get("FER_VIDEO_SHARED", str(REPO.parent / "shared")))
    a = ap.parse_args()
    rows = [score(m, Path(a.shared), not a.no_clips, p, t) for m in (a.model or [None]) for p in a.precision
            for t in a.tta]

    def ece(pair) -> str:
        v, raw = pair
        if v is None:
            return "-"
        return f"{v:.4f}" + (f" ({raw:.4f})" if raw is not None else "")

    names = [Path(r["model"]).name + (f" {r['precision']}" if len(a.precision) > 1 else "")
             + (f" tta {r['tta']}" if len(a.tta) > 1 else "") for r in rows]
    w = max(22, *(len(n) + 2 for n in names))
    print(f"{'':<28}" + "".join(f"{n:>{w}}" for n in names))
    lines = [("FER2013 test, clean", "fer2013_clean"), ("FER2013 test, full", "fer2013_full"),
             ("FER+ test (majority)", "ferplus_test"), ("RAF-DB test", "rafdb_test"),
             ("CK+48 zero-shot (6 cl.)", "ckplus_zero_shot")]
    for label, key in lines:
        print(f"{label:<28}" + "".join(f"{r[key]:>{w}.4f}" if r[key] is not None else f"{'-':>{w}}" for r in rows))
    if not a.no_clips:
        print(f"{'labelled clips':<28}" + "".join(f"{'%d/%d' % tuple(r['clips']):>{w}}" for r in rows))
        if len(rows) > 1:
            first = rows[0]["clip_predictions"]
            print(f"{'  same class as column 1':<28}" + "".join(
                f"{'%d/%d' % (sum(r['clip_predictions'].get(f) == p for f, p in first.items()), len(first)):>{w}}"
                for r in rows))
    for k in ("fer2013", "ferplus", "rafdb", "ckplus"):
        print(f"{'ECE ' + k + ' (uncal.)':<28}" + "".join(f"{ece(r['ece'][k]):>{w}}" for r in rows))
    print(f"{'temperature':<28}" + "".join(f"{r['temperature']:>{w}.3f}" for r in rows))
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
