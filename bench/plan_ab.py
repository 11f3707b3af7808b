#!/usr/bin/env python3
"""Thread plans side by side: the same clips through ``analyze_video`` in one process.

For each clip and plan (interleaved, ``--rounds`` times; models loaded once, one torch
thread): the median ``wall_s`` (decoding to the last prediction, no model load, no report),
the detection and classification busy seconds, and whether the predictions (face ids,
frames, probabilities, bit for bit) are those of the first plan. The plans are the 2-core
candidates: decoding in its own thread with detection and classification in the caller
(session 8's plan), classification in its own thread with decoding and detection in the
caller (session 9's), and both threads (3 busy threads on 2 cores: over the plan's
invariant, shown for reference), each with 32-crop classification batches; and 8-crop
batches, which start classifying sooner (in fp32 and under autocast they changed
probabilities in the last bits; the bf16 network of session 12 gives the same bits at any
batch size), with the first plan and with the permits plan, which also runs 16-crop ones.

    python bench/plan_ab.py ../shared/videos/sadtalker_WDA_KatieHill_000.mp4 \\
        ../shared/videos/pyfeat_WolfgangLanger_Pexels.mp4
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def parse_clips(doc: str):
    """The clips and options every side-by-side script here takes."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("clips", nargs="+")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--fps", type=float, default=5.0)
    return ap.parse_args()


def interleaved(args, arms: dict) -> dict:
    """``analyze_video`` results by (clip, arm name), ``args.rounds`` each, rounds
    interleaved; ``arms``: name -> (classifier, thread plan or None for the default[,
    a function called before each of the arm's runs]); one torch thread, one detector."""
    import torch

    from fer_video.detect import FaceDetector
    from fer_video.pipeline import analyze_video
    from fer_video.settings import Settings

    torch.set_num_threads(1)
    det = FaceDetector(device="cpu")
    res: dict = {}
    for _ in range(args.rounds):
        for clip in args.clips:
            for name, (clf, plan, *before) in arms.items():
                for f in before:
                    f()
                kw = {} if plan is None else {"threads": plan}
                r = analyze_video(clip, Settings(fps=args.fps), detector=det, classifier=clf, **kw)
                res.setdefault((clip, name), []).append(r)
    return res


def main() -> int:
    args = parse_clips(__doc__)

    from fer_video import pipeline
    from fer_video.classify import EmotionClassifier
    from fer_video.threads import ThreadPlan

    clfs = {bs: EmotionClassifier(None, device="cpu", batch_size=bs) for bs in (32, 16, 8)}

    def flush(frames: int):            # pipeline._FLUSH_FRAMES for one arm (0: full batches only)
        return lambda: setattr(pipeline, "_FLUSH_FRAMES", frames)

    full = flush(0)
    runs = {"classify thread (s9), b32": (clfs[32], ThreadPlan(classify_threads=1), full),
            "decode thread (s8), b32": (clfs[32], ThreadPlan(prefetch=True), full),
            "both threads (3 busy), b32": (clfs[32], ThreadPlan(prefetch=True, classify_threads=1), full),
            "both, 2 permits (s12), b32": (clfs[32], ThreadPlan(prefetch=True, classify_threads=1,
                                                                permits=2), full),
            "classify thread, b8": (clfs[8], ThreadPlan(classify_threads=1), full),
            "both, 2 permits, b16": (clfs[16], ThreadPlan(prefetch=True, classify_threads=1, permits=2),
                                     full),
            "both, 2 permits, b32/16 frames": (clfs[32], ThreadPlan(prefetch=True, classify_threads=1,
                                                                    permits=2), flush(16))}
    res = interleaved(args, runs)
    first = next(iter(runs))
    for clip in args.clips:
        ref = [(p.face_id, p.frame_index, p.probs) for p in res[(clip, first)][0].predictions]
        print(Path(clip).name)
        for name in runs:
            rs = res[(clip, name)]
            same = [(p.face_id, p.frame_index, p.probs) for p in rs[0].predictions] == ref
            print(f"  {name:31s} wall {statistics.median(r.wall_s for r in rs):5.2f} s   busy detect "
                  f"{statistics.median(r.timings['detect'] for r in rs):.2f} classify "
                  f"{statistics.median(r.timings['classify'] for r in rs):.2f}   same predictions: {same}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
