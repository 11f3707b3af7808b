"""Where eyes and mouth land in a face crop: each training set's own framing against the
crops that ``analyze`` feeds the model (issue 11, "one face frame from training to video").

The project's detector (MTCNN, ``fer_video.detect.FaceDetector``) is run on a sample of
each training set, upsampled so that its 12-px window sees the face (48 px -> 144 px,
RAF-DB's 100 px -> 200 px), and on real video frames; every landmark is written in the
unit square of the crop (0,0 top-left, 1,1 bottom-right). For video the crop is the one
inference makes: the box crop (square box + margin) and the landmark-aligned crop
(``preprocess.align_face``) in the model's frame (FER2013's when the model has none).

Printed per set: how many faces were found, then the mean (and SD) of the eye midpoint
(x, y), the mouth midpoint y, the eye-to-mouth distance (``em``: from the eye midpoint to
the mouth midpoint) and the roll (degrees; + = clockwise on screen).

    python bench/face_frame.py                 # FER2013, RAF-DB, CK+48 and video crops
    python bench/face_frame.py --n 300 --json face_frames.json
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fer_video.detect import FaceDetector  # noqa: E402

SHARED = Path(os.environ.get("FER_VIDEO_SHARED", Path(__file__).resolve().parents[2] / "shared"))
VIDEO_CLIPS = ["pyfeat_single_face.mp4", "pyfeat_WolfgangLanger_Pexels.mp4", "sadtalker_WDA_KatieHill_000.mp4",
               "labelled/M030_front_happy_level3_001.mp4", "labelled/1001_DFA_ANG_XX.flv",
               "liveportrait_d19.mp4"]


def geometry(points: np.ndarray) -> dict:
    """Frame figures of 5 landmarks (unit-square coordinates), by the same
    ``preprocess.eyes_mouth`` that alignment uses."""
    from fer_video.preprocess import eyes_mouth

    eye, mouth, roll = eyes_mouth(points)
    return {"eye_x": float(eye[0]), "eye_y": float(eye[1]), "mouth_y": float(mouth[1]),
            "em": float(np.linalg.norm(mouth - eye)), "roll": math.degrees(roll)}


def summarise(name: str, rows: list[dict], tried: int) -> dict:
    keys = ["eye_x", "eye_y", "mouth_y", "em", "roll"]
    out = {"set": name, "faces": len(rows), "tried": tried}
    if rows:
        arr = np.array([[r[k] for k in keys] for r in rows])
        out.update({k: float(arr[:, i].mean()) for i, k in enumerate(keys)})
        out.update({k + "_sd": float(arr[:, i].std()) for i, k in enumerate(keys)})
        out["points"] = np.mean([r["points"] for r in rows], axis=0).round(4).tolist()
    return out


def show(s: dict) -> None:
    if not s["faces"]:
        print(f"{s['set']:<26} faces 0/{s['tried']}")
        return
    print(f"{s['set']:<26} faces {s['faces']}/{s['tried']}  eye ({s['eye_x']:.3f}, {s['eye_y']:.3f})  "
          f"mouth_y {s['mouth_y']:.3f}  em {s['em']:.3f} (sd {s['em_sd']:.3f})  "
          f"roll {s['roll']:+.1f} (sd {s['roll_sd']:.1f})")


def training_set(det: FaceDetector, images: np.ndarray, up: int) -> list[dict]:
    from PIL import Image

    rows = []
    side = images.shape[1] * up
    for i in range(0, len(images), 16):
        batch = []
        for im in images[i:i + 16]:
            pil = Image.fromarray(im).convert("RGB").resize((side, side), Image.BICUBIC)
            batch.append(np.asarray(pil))
        for dets in det.detect(batch):
            if not dets or dets[0].landmarks is None:
                continue
            pts = np.array(dets[0].landmarks) / side
            rows.append({**geometry(pts), "points": pts})
    return rows


def sample(n: int, total: int, seed: int = 0) -> np.ndarray:
    return np.sort(np.random.default_rng(seed).permutation(total)[:n])


def video_crops(det: FaceDetector, aligned: bool, n_frames: int, model: str | None) -> tuple[list[dict], int]:
    """Landmarks of the largest face of sampled frames, mapped into the inference crop of
    ``model``'s config (``aligned``: its alignment, or FER2013's frame if it has none)."""
    import dataclasses

    from fer_video.checkpoint import default_model_path, load_config
    from fer_video.data import FER2013_FRAME
    from fer_video.decode import sample_frames
    from fer_video.preprocess import crop_transform

    config = load_config(model or default_model_path())
    if aligned and not config.alignment:
        config = dataclasses.replace(config, alignment=dict(FER2013_FRAME))
    rows, tried = [], 0
    for clip in VIDEO_CLIPS:
        path = SHARED / "videos" / clip
        if not path.is_file():
            path = Path(__file__).resolve().parents[1] / "sample_videos" / Path(clip).name
        if not path.is_file():
            continue
        frames = [f.image for _, f in zip(range(n_frames), sample_frames(str(path), fps=2))]
        tried += len(frames)
        for image, dets in zip(frames, det.detect(frames)):
            if not dets:
                continue
            d = max(dets, key=lambda d: (d.box[2] - d.box[0]) * (d.box[3] - d.box[1]))
            m = crop_transform(d.box, d.landmarks if aligned else None, config)   # frame -> unit crop
            pts = np.array(d.landmarks) @ m[:, :2].T + m[:, 2]
            rows.append({**geometry(pts), "points": pts})
    return rows, tried


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=400, help="images per training set (default: %(default)s)")
    ap.add_argument("--frames", type=int, default=20, help="frames per clip (default: %(default)s)")
    ap.add_argument("--json", help="also write the summaries here")
    ap.add_argument("--model", help="checkpoint whose crop config is used (default: the shipped model)")
    a = ap.parse_args()
    det = FaceDetector(min_face=30, threshold=0.8)
    out = []
    fer = np.load(SHARED / "datasets/fer2013/train.npz")
    idx = sample(a.n, len(fer["labels"]))
    out.append(summarise("FER2013 train", training_set(det, fer["images"][idx], 3), len(idx)))
    show(out[-1])
    import csv

    from PIL import Image
    for name, root, up in (("RAF-DB train", SHARED / "datasets/rafdb", 2), ("CK+48", SHARED / "datasets/ckplus48", 3)):
        with open(root / "MANIFEST.csv", newline="") as f:
            paths = [r["path"] for r in csv.DictReader(f) if r.get("split", "train") == "train"]
        pick = sample(a.n, len(paths))
        imgs = np.stack([np.asarray(Image.open(root / paths[i]).convert("L")) for i in pick])
        out.append(summarise(name, training_set(det, imgs, up), len(pick)))
        show(out[-1])
    for aligned in (False, True):
        rows, tried = video_crops(det, aligned, a.frames, a.model)
        out.append(summarise("video, aligned crop" if aligned else "video, box crop", rows, tried))
        show(out[-1])
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
