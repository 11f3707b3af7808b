#!/usr/bin/env python3
"""The torch-free detector (``fer_video.mtcnn_onnx.OnnxFaceDetector``) against the torch one
(``fer_video.detect.FaceDetector``) on the same sampled frames, one thread each (issue 12).

Per clip (the first ``--frames`` frames sampled at ``--fps``):

- **agreement**: full-frame detection of every frame by both; the share of the torch
  detector's faces that the ONNX one finds at IoU >= 0.8 (and the lowest IoU), frames with
  the same face count, the largest score difference; then the same for ``refine_near``
  and ``detect_near`` at the frame before's boxes (the region searches between keyframes);
- **speed**: ms per sampled frame of a track-guided loop like analyze's (full frame on every
  ``--keyframe-every``-th frame or when a face is lost, else ``refine_near`` at the frame
  before's boxes), best of ``--rounds``, the two detectors interleaved;

then, in fresh processes (median of ``--rounds``): import + construction + one detection
of a frame, for each detector (the start-up a torch-free ``analyze`` would have).

    python bench/onnx_detector.py ../shared/videos/sadtalker_WDA_KatieHill_000.mp4 \\
        ../shared/videos/pyfeat_WolfgangLanger_Pexels.mp4 ../shared/videos/facenet_crowd_1080p.mp4
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
    return ix * iy / union if union > 0 else 0.0


def _agreement(pairs) -> str:
    """'found X/Y at IoU >= 0.8 (lowest Z), same count F/G, score diff D' over (ref, got) lists."""
    import numpy as np

    ious, same, diffs = [], 0, [0.0]
    for ref, got in pairs:
        same += len(ref) == len(got)
        for d in ref:
            best = max(got, key=lambda e: _iou(d.box, e.box), default=None)
            ious.append(_iou(d.box, best.box) if best else 0.0)
            if best:
                diffs.append(abs(d.score - best.score))
    ious = np.array(ious) if ious else np.ones(1)
    return (f"found {int((ious >= 0.8).sum())}/{len(ious)} at IoU >= 0.8 (lowest {ious.min():.3f}), "
            f"same count {same}/{len(pairs)}, score diff <= {max(diffs):.4f}")


def _guided_ms(det, frames, every: int) -> float:
    t = time.perf_counter()
    prev: list = []
    for i, frame in enumerate(frames):
        found = det.refine_near(frame, [d.box for d in prev]) if (i % every and prev) else None
        if found is None or len(found) < len(prev):
            found = det.detect_one(frame)
        prev = found
    return (time.perf_counter() - t) / len(frames) * 1000


def _startup_s(kind: str, clip: str) -> float:
    make = ("from fer_video.mtcnn_onnx import OnnxFaceDetector as D" if kind == "onnx" else
            "import torch; torch.set_num_threads(1); from fer_video.detect import FaceDetector as D")
    code = (f"import time; t = time.perf_counter(); {make}; from fer_video.decode import sample_frames; "
            f"f = next(iter(sample_frames({clip!r}, fps=1))).image; D().detect([f]); "
            "print(time.perf_counter() - t)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    return float(out.stdout.split()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("clips", nargs="+")
    ap.add_argument("--fps", type=float, default=5.0)
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--keyframe-every", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    import onnxruntime
    import torch

    from fer_video.decode import sample_frames
    from fer_video.detect import FaceDetector
    from fer_video.mtcnn_onnx import OnnxFaceDetector

    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, one thread each, fps {a.fps:g}")
    dets = {"torch": FaceDetector(), "onnx": OnnxFaceDetector()}
    for clip in a.clips:
        frames = [f.image for _, f in zip(range(a.frames), sample_frames(clip, fps=a.fps))]
        ref, got = dets["torch"].detect(frames), dets["onnx"].detect(frames)
        print(f"{Path(clip).name} ({len(frames)} frames)")
        print(f"  full frame:  {_agreement(list(zip(ref, got)))}")
        for name in ("refine_near", "detect_near"):
            pairs = [(getattr(dets['torch'], name)(f, [d.box for d in b]), getattr(dets['onnx'], name)(f, [d.box for d in b]))
                     for b, f in zip(ref, frames[1:]) if b]
            print(f"  {name}: {_agreement(pairs)}")
        times: dict = {k: [] for k in dets}
        for _ in range(a.rounds):
            for k, det in dets.items():
                times[k].append(_guided_ms(det, frames, a.keyframe_every))
        t, o = min(times["torch"]), min(times["onnx"])
        print(f"  track-guided (keyframe every {a.keyframe_every}), ms/frame, best of {a.rounds}: "
              f"torch {t:.1f}, onnx {o:.1f} (onnx/torch {o / t:.2f}x)")
    starts = {k: [] for k in dets}
    for _ in range(a.rounds):
        for k in dets:
            starts[k].append(_startup_s(k, a.clips[0]))
    print(f"fresh process, import + construction + one detection, median of {a.rounds}: "
          + ", ".join(f"{k} {statistics.median(v):.2f} s" for k, v in starts.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
