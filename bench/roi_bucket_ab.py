#!/usr/bin/env python3
"""R/O-net padding of region frames and keyframes side by side: ``detect._ROI_BUCKET`` 16
(before session 11) against 8 (now), same clips, one process, runs interleaved.

Per clip and arm: the median ``wall_s`` and detection busy seconds, and whether the face
rows, boxes and probabilities are those of the 16-row arm bit for bit.

    python bench/roi_bucket_ab.py ../shared/videos/sadtalker_WDA_KatieHill_000.mp4 \\
        ../shared/videos/pyfeat_WolfgangLanger_Pexels.mp4 ../shared/videos/facenet_crowd_1080p.mp4
"""
from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from plan_ab import interleaved, parse_clips  # noqa: E402


def main() -> int:
    args = parse_clips(__doc__)

    import fer_video.detect as detect
    from fer_video.classify import EmotionClassifier

    clf = EmotionClassifier(None, device="cpu")

    def bucket(n: int):
        return lambda: setattr(detect, "_ROI_BUCKET", n)

    arms = {"bucket 16": (clf, None, bucket(16)), "bucket 8": (clf, None, bucket(8))}
    res = interleaved(args, arms)
    for clip in args.clips:
        ref = [(p.face_id, p.frame_index, p.box, p.probs) for p in res[(clip, "bucket 16")][0].predictions]
        print(Path(clip).name)
        for name in arms:
            rs = res[(clip, name)]
            same = [(p.face_id, p.frame_index, p.box, p.probs) for p in rs[0].predictions] == ref
            print(f"  {name:10s} wall {statistics.median(r.wall_s for r in rs):5.2f} s   detect busy "
                  f"{statistics.median(r.timings['detect'] for r in rs):.2f} s   same rows/boxes/probs: {same}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
