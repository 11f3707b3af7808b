#!/usr/bin/env python3
"""The bf16 classifier two ways, side by side on the same clips, one process: under autocast
(fp32 weights cast every forward, 54 BatchNorms; session 11) against the BatchNorm-folded
network with bf16 weights (``predict.inference_form``; session 12), fp32 as the reference.

For each clip and arm (interleaved, ``--rounds`` times; models loaded once, one torch
thread, the default thread plan): the median ``wall_s`` and x-realtime, the detection and
classification busy seconds, and against fp32 the faces/frames, the largest probability
difference and the top-class changes (``precision_ab.report``).

    python bench/fold_ab.py ../shared/videos/sadtalker_WDA_KatieHill_000.mp4 \\
        ../shared/videos/pyfeat_WolfgangLanger_Pexels.mp4 ../shared/videos/facenet_crowd_1080p.mp4
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from plan_ab import interleaved, parse_clips  # noqa: E402
from precision_ab import report  # noqa: E402


def main() -> int:
    args = parse_clips(__doc__)

    from fer_video import predict
    from fer_video.classify import EmotionClassifier

    def fold(on: bool):
        return lambda: setattr(predict, "_FOLD_BN", on)

    arms = {"fp32": (EmotionClassifier(None, device="cpu", precision="fp32"), None),
            "bf16 autocast": (EmotionClassifier(None, device="cpu", precision="bf16"), None, fold(False)),
            "bf16 folded": (EmotionClassifier(None, device="cpu", precision="bf16"), None, fold(True))}
    report(args, arms, interleaved(args, arms))
    return 0


if __name__ == "__main__":
    sys.exit(main())
