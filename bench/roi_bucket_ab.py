#!/usr/bin/env python3
"""R/O-net call sizes side by side, same clips, one process, runs interleaved:

  bucket 16   every R/O-net call of a keyframe or region frame padded to a multiple of 16
              rows, in chunks of 512 (before session 11)
  bucket 8    ... to a multiple of 8 (sessions 11-12)
  rows 16/8   R-net in chunks of 16 rows, O-net of 8, a shorter last chunk padded to the
              next power of two (``detect._run`` since session 13)

Per clip and arm: the median ``wall_s`` and detection busy seconds; against the first arm,
whether face rows, boxes and probabilities are the same bit for bit, and if not, the
smallest box IoU of matching rows and the largest probability difference.

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
from roi_detection import iou  # noqa: E402


def bucketed_run(bucket: int):
    """``FaceDetector._run`` as it was before session 13, padding to ``bucket`` rows."""
    def _run(self, net, x, rows: int):
        torch = self._torch
        outs = []
        for i in range(0, len(x), 512):
            chunk = x[i:i + 512]
            n = len(chunk)
            padded = -(-n // bucket) * bucket
            if padded != n:
                chunk = torch.cat([chunk, chunk.new_zeros((padded - n, *chunk.shape[1:]))])
                chunk = chunk.contiguous(memory_format=torch.channels_last)
            outs.append(tuple(v[:n] for v in net(chunk)))
        return tuple(torch.cat(v, dim=0) for v in zip(*outs))
    return _run


def main() -> int:
    args = parse_clips(__doc__)

    from fer_video.classify import EmotionClassifier
    from fer_video.detect import FaceDetector

    clf = EmotionClassifier(None, device="cpu")
    current = FaceDetector._run

    def use(run):
        return lambda: setattr(FaceDetector, "_run", run)

    arms = {"bucket 16": (clf, None, use(bucketed_run(16))), "bucket 8": (clf, None, use(bucketed_run(8))),
            "rows 16/8": (clf, None, use(current))}
    res = interleaved(args, arms)
    FaceDetector._run = current
    first = next(iter(arms))
    for clip in args.clips:
        ref = {(p.face_id, p.frame_index): p for p in res[(clip, first)][0].predictions}
        print(Path(clip).name)
        for name in arms:
            rs = res[(clip, name)]
            rows = {(p.face_id, p.frame_index): p for p in rs[0].predictions}
            same = [(k, p.box, p.probs) for k, p in rows.items()] == [(k, p.box, p.probs) for k, p in ref.items()]
            both = ref.keys() & rows.keys()
            diff = "" if same else (
                f"   rows {len(rows)}/{len(ref)}, min IoU {min(iou(ref[k].box, rows[k].box) for k in both):.3f}, "
                f"max prob diff {max(max(abs(a - b) for a, b in zip(ref[k].probs, rows[k].probs)) for k in both):.4f}")
            print(f"  {name:10s} wall {statistics.median(r.wall_s for r in rs):5.2f} s   detect busy "
                  f"{statistics.median(r.timings['detect'] for r in rs):.2f} s   same rows/boxes/probs: {same}{diff}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
