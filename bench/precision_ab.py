#!/usr/bin/env python3
"""The classifier's arithmetic side by side: fp32 against bf16 and int8 on the same clips, one process.

For each clip and arm (interleaved, ``--rounds`` times; models loaded once, one torch
thread, the default thread plan): the median ``wall_s`` (decoding to the last prediction,
no model load, no report) and x-realtime, the detection and classification busy seconds,
and, against the fp32 arm, whether the face ids and frames are the same, the largest
probability difference, and how many face rows change their top class. The arms: fp32 and
bf16 with 32-crop batches (analyze's), bf16 with 8-crop batches (classification starts
sooner and overlaps detection more), where oneDNN runs bf16, and int8 with 32-crop batches
(fer_video/int8.py), alone and with flip averaging (``precision auto`` on a CPU without
native bf16), where torch has the x86 quantized engine. Every arm but the last has tta none.

    python bench/precision_ab.py ../shared/videos/sadtalker_WDA_KatieHill_000.mp4 \\
        ../shared/videos/pyfeat_WolfgangLanger_Pexels.mp4 ../shared/videos/facenet_crowd_1080p.mp4
"""
from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from plan_ab import interleaved, parse_clips  # noqa: E402


def report(args, arms: dict, res: dict) -> None:
    """Per clip and arm: median wall, x-realtime, busy seconds, and against the first arm
    the faces/frames, the largest probability difference and the top-class changes."""
    import numpy as np

    first = next(iter(arms))
    for clip in args.clips:
        ref = res[(clip, first)][0].predictions
        key = [(p.face_id, p.frame_index) for p in ref]
        p_ref = np.array([p.probs for p in ref])
        duration = res[(clip, first)][0].info.duration_s
        print(f"{Path(clip).name} ({len(ref)} face rows)")
        for name in arms:
            rs = res[(clip, name)]
            preds = rs[0].predictions
            same = [(p.face_id, p.frame_index) for p in preds] == key
            p = np.array([q.probs for q in preds])
            diff = float(np.abs(p - p_ref).max()) if same and len(p) else float("nan")
            flips = int((p.argmax(1) != p_ref.argmax(1)).sum()) if same and len(p) else -1
            wall = statistics.median(r.wall_s for r in rs)
            xrt = f"  {duration / wall:5.2f}x realtime" if duration else ""
            print(f"  {name:14s} wall {wall:5.2f} s{xrt}   busy detect "
                  f"{statistics.median(r.timings['detect'] for r in rs):.2f} classify "
                  f"{statistics.median(r.timings['classify'] for r in rs):.2f}   same faces/frames: {same}, "
                  f"max prob diff {diff:.4f}, top class changed on {flips} rows")


def main() -> int:
    args = parse_clips(__doc__)

    from fer_video.classify import EmotionClassifier

    from fer_video.int8 import int8_engine
    from fer_video.predict import bf16_runs

    def clf(precision: str, batch: int = 32, tta: str = "none"):
        return EmotionClassifier(None, device="cpu", batch_size=batch, precision=precision, tta=tta)

    arms = {"fp32, b32": (clf("fp32"), None)}
    if bf16_runs("cpu"):
        arms["bf16, b32"] = (clf("bf16"), None)
        arms["bf16, b8"] = (clf("bf16", 8), None)
    if int8_engine() is not None:
        arms["int8, b32"] = (clf("int8"), None)
        arms["int8 flip, b32"] = (clf("int8", tta="flip"), None)
    report(args, arms, interleaved(args, arms))
    return 0


if __name__ == "__main__":
    sys.exit(main())
