#!/usr/bin/env python3
"""Start-up of fer-video, in fresh processes, median of N runs (issue 12: <= 1.5 s).

Rows, each a whole process (interpreter start to exit), measured from here:
- ``python -c pass``: the interpreter alone;
- ``import torch``: the floor every torch-based tool pays;
- ``fer-video --help``;
- ``start-up``: import the analysis, load the face detector and the default emotion model
  (weights read, network built), exit -- what ``analyze`` pays before its first frame;
  twice: ending as a bare ``python -c`` does, and ending as the ``fer-video`` process entry
  (``fer_video.cli.run``) does: ``gc.freeze()``, so that exit skips the full collections
  over torch's heap, then ``cli.exit_now`` (atexit handlers, flush, ``os._exit``);
- ``analyze still``: ``fer-video analyze`` of one still image (``--quiet``), the whole
  command, its report written.

    python bench/startup.py            # 5 runs each
    python bench/startup.py --runs 9
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

LOAD = ("from fer_video.pipeline import analyze_video; from fer_video.detect import FaceDetector; "
        "from fer_video.classify import EmotionClassifier; FaceDetector(device='cpu'); "
        "EmotionClassifier(None, device='cpu')")
# what fer_video.cli.run does after main(): freeze the heap, then the quick exit
EXIT_AS_CLI = "; import gc; gc.freeze(); from fer_video.cli import exit_now; exit_now(0)"


def _time(cmd: list[str], env: dict) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=REPO)
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        still = Path(tmp) / "face.png"
        subprocess.run([py, "-c", "import av, sys; c = av.open(sys.argv[1]); "
                        "next(c.decode(video=0)).to_image().save(sys.argv[2])",
                        str(REPO / "sample_videos" / "pyfeat_single_face.mp4"), str(still)], check=True)
        rows = {
            "python -c pass": [py, "-c", "pass"],
            "import torch": [py, "-c", "import torch"],
            "fer-video --help": [py, str(REPO / "cli.py"), "--help"],
            "start-up, bare exit": [py, "-c", LOAD],
            "start-up (imports + both models + exit)": [py, "-c", LOAD + EXIT_AS_CLI],
            "analyze still (whole command)": [py, str(REPO / "cli.py"), "analyze", str(still), "--quiet",
                                              "--overwrite", "--out", str(Path(tmp) / "out")],
        }
        times: dict[str, list[float]] = {k: [] for k in rows}
        for _ in range(args.runs):                       # interleaved, so load changes hit all rows
            for name, cmd in rows.items():
                times[name].append(_time(cmd, env))
    load = os.getloadavg()[0]
    print(f"median of {args.runs} runs, seconds (load average {load:.2f} at the end; 2 cores: idle is ~0)")
    for name, ts in times.items():
        print(f"  {name:42s} {statistics.median(ts):6.2f}   (min {min(ts):.2f}, max {max(ts):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
