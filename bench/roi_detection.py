#!/usr/bin/env python3
"""Track-guided detection against full-frame detection on real clips (issue 12, item 2).

Runs the whole analysis (``analyze_video``, the packaged model, every stage inline in one
thread) on each clip once with ``keyframe_every=1`` (full-frame MTCNN on every sampled
frame: the reference) and once per N given, then prints per clip and N:

  rows      face rows (frames.csv rows) of the reference / of the guided run
  box       share of the reference rows that have a guided row in the same frame whose box
            has IoU >= 0.8 with it (a missing row counts as a miss)
  id        the same with the same face_id as well
  faces     n_faces of the reference / of the guided run; ids: "same" when every
            box-matched row carries the reference row's face_id, "1:1" when the ids differ
            but pair up one-to-one (each reference id's box-matched rows all carry one guided
            id, a different one for each), else "DIFF"; spans: faces whose first and last
            sampled frame are the same in both runs / faces of the reference
  key/roi   keyframes / region-searched frames (cuts: keyframes forced by a shot cut; lost:
            region frames searched again as a whole, a face of the frame before not found)
  ms/frame  detection time per sampled frame: wall (busy machine: noisy) and the detecting
            thread's CPU time
  win       region frames whose P-net windows were searched (R-net and O-net alone at the
            tracks' boxes missed one, or a track was missed the frame before)

Each N runs twice: as analyze does (R/O-net first, P-net windows for what they miss) and as
"Nw", P-net windows for every track (the region search before session 14).

    python bench/roi_detection.py [--clips a.mp4 ...] [--fps 5] [--every 3 5 10]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FER_VIDEO_SHARED", REPO.parent / "shared"))
DEFAULT_CLIPS = [SHARED / "videos" / n for n in (
    "pyfeat_WolfgangLanger_Pexels.mp4", "sadtalker_WDA_KatieHill_000.mp4", "facenet_crowd_1080p.mp4")]


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def compare(ref, run) -> dict:
    """The figures above for one guided run against the reference."""
    by_frame: dict = {}
    for p in run.predictions:
        by_frame.setdefault(p.frame_index, []).append(p)
    box_ok = id_ok = 0
    pairs: dict = {}
    for p in ref.predictions:
        best = max(by_frame.get(p.frame_index, []), key=lambda q: iou(p.box, q.box), default=None)
        if best is not None and iou(p.box, best.box) >= 0.8:
            box_ok += 1
            id_ok += best.face_id == p.face_id
            pairs.setdefault(p.face_id, set()).add(best.face_id)
    def spans(r):
        return {f.face_id: (f.first_seen_s, f.last_seen_s) for f in r.faces}
    targets = [next(iter(v)) for v in pairs.values() if len(v) == 1]
    one_to_one = len(targets) == len(pairs) == len(set(targets))
    same = all(v == {k} for k, v in pairs.items())
    n = max(1, len(ref.predictions))
    a, b = spans(ref), spans(run)
    return {"rows": (len(ref.predictions), len(run.predictions)), "box": box_ok / n,
            "id": id_ok / n, "faces": (len(ref.faces), len(run.faces)),
            "ids": "same" if same else "1:1" if one_to_one else "DIFF",
            "spans": (sum(a[k] == b.get(k) for k in a), len(a))}


class _TimedDetector:
    """The detector, with the wall and thread CPU seconds of its calls added up."""

    def __init__(self, detector):
        self._d = detector
        self.wall = self.cpu = 0.0

    def _timed(self, fn, *args):
        w, c = time.perf_counter(), time.thread_time()
        try:
            return fn(*args)
        finally:
            self.wall += time.perf_counter() - w
            self.cpu += time.thread_time() - c

    def detect(self, images):
        return self._timed(self._d.detect, images)

    def detect_one(self, image):
        return self._timed(self._d.detect_one, image)

    def detect_near(self, image, boxes, reach=None):
        return self._timed(self._d.detect_near, image, boxes, reach)

    def refine_near(self, image, boxes):
        return self._timed(self._d.refine_near, image, boxes)


class _WindowsOnly(_TimedDetector):
    """The region search as before session 14: no R/O-net-only first pass (``refine_near``
    finds nothing, so every track's P-net windows are searched, as ``detect_near`` alone did)."""

    def refine_near(self, image, boxes):
        return []


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", nargs="+", type=Path, default=DEFAULT_CLIPS)
    ap.add_argument("--fps", type=float, default=5.0)
    ap.add_argument("--every", nargs="+", type=int, default=[3, 5, 10],
                    help="keyframe intervals to compare with 1 (default: 3 5 10)")
    args = ap.parse_args(argv)

    import torch

    from fer_video.job import load_models
    from fer_video.pipeline import analyze_video
    from fer_video.settings import Settings
    from fer_video.threads import ThreadPlan

    plan = ThreadPlan()            # one thread, every stage inline: detection time is its own
    plan.apply()
    print(f"torch {torch.__version__}, {plan.torch_threads} thread, fps {args.fps:g}")
    print(f"{'clip':34} {'N':>3} {'rows':>9} {'box':>6} {'id':>6} {'faces':>6} {'ids':>5} "
          f"{'spans':>5} {'key/roi':>8} {'cuts':>4} {'lost':>4} {'win':>4} {'ms/frame wall':>13} {'cpu':>6}")
    for clip in args.clips:
        if not clip.is_file():
            print(f"{clip.name:34} missing ({clip})")
            continue
        runs, clocks = {}, {}
        arms = [(1, _TimedDetector)] + [(e, k) for e in args.every for k in (_TimedDetector, _WindowsOnly)]
        for every, kind in arms:
            settings = Settings(fps=args.fps, device="cpu", keyframe_every=every)
            detector, classifier = load_models(settings)
            name = f"{every}w" if kind is _WindowsOnly else str(every)
            timed = clocks[name] = kind(detector)
            runs[name] = analyze_video(clip, settings, detector=timed, classifier=classifier,
                                       threads=plan)
        ref = runs["1"]
        for every, r in runs.items():
            c = compare(ref, r)
            n = max(1, r.n_samples)
            s = r.detection
            print(f"{clip.name[:34]:34} {every:>3} {c['rows'][0]:>4}/{c['rows'][1]:<4} "
                  f"{c['box']:>6.3f} {c['id']:>6.3f} {c['faces'][0]:>2}/{c['faces'][1]:<3} "
                  f"{c['ids']:>5} {c['spans'][0]:>2}/{c['spans'][1]:<2} {s.keyframes:>3}/{s.roi_frames:<4} "
                  f"{s.shot_cuts:>4} {s.lost_tracks:>4} {s.window_searches:>4} {1000 * clocks[every].wall / n:>13.1f} "
                  f"{1000 * clocks[every].cpu / n:>6.1f}")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
