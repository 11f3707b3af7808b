#!/usr/bin/env python3
"""Clip-level accuracy on the acted-emotion clips in ../shared/videos/labelled/.

For each clip: run the full pipeline (decode -> MTCNN -> track -> classify) at the default
settings, take the face seen in the most frames, and predict the clip's emotion as the
argmax of that face's mean probabilities. Clips whose label the model lacks (MEAD's
contempt for a 7-class FER model) are listed but not scored. These clips are a test set:
never pick a model or a setting on them.

    python bench/labelled_videos.py [--model PATH] [--fps 5] [--precision P] [--tta T] [--backend B]
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None)
    ap.add_argument("--fps", type=float, default=5.0)
    ap.add_argument("--keyframe-every", type=int, default=None,
                    help="analyze's --keyframe-every (default: analyze's default; 1 = full-frame detection)")
    ap.add_argument("--precision", default="auto", help="analyze's --precision (default: auto)")
    ap.add_argument("--tta", default="none", help="analyze's --tta (default: none)")
    ap.add_argument("--backend", default="torch", help="analyze's --backend (default: torch)")
    ap.add_argument("--shared", default=os.environ.get("FER_VIDEO_SHARED", str(REPO.parent / "shared")))
    a = ap.parse_args()
    import fer_video
    from fer_video.checkpoint import default_model_path, load_config
    from fer_video.predict import resolve_precision

    classes = load_config(a.model or default_model_path()).classes
    shown = (("fp32" if a.precision == "auto" else a.precision) if a.backend == "onnx"
             else resolve_precision(a.precision, "cpu"))
    print(f"--backend {a.backend} --precision {a.precision} ({shown} here) --tta {a.tta}")

    folder = Path(a.shared) / "videos" / "labelled"
    rows = list(csv.DictReader(open(folder / "labels.csv")))
    scored = correct = 0
    settings = {"fps": a.fps, "precision": a.precision, "tta": a.tta, "backend": a.backend}
    if a.keyframe_every:
        settings["keyframe_every"] = a.keyframe_every
    if a.model:
        settings["model"] = a.model
    print(f"{'clip':<38} {'label':<9} {'predicted':<9} top-3 mean probabilities")
    for r in rows:
        frames, faces = fer_video.analyze(folder / r["file"], **settings)
        if not faces:
            # No face found counts as a miss (when the label is one the model knows).
            print(f"{r['file']:<38} {r['label']:<9} {'(no face)':<9}")
            scored += r["label"] in classes
            continue
        face = max(faces, key=lambda f: f.n_frames)
        pred = max(face.mean_probs, key=face.mean_probs.get)
        top3 = sorted(face.mean_probs.items(), key=lambda kv: -kv[1])[:3]
        known = r["label"] in classes
        mark = "" if known else "  (label not in model classes: not scored)"
        if known:
            scored += 1
            correct += pred == r["label"]
        print(f"{r['file']:<38} {r['label']:<9} {pred:<9} "
              + ", ".join(f"{k} {v:.2f}" for k, v in top3) + mark)
    print(f"clip accuracy: {correct}/{scored} = {correct / max(scored, 1):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
