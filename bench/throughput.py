#!/usr/bin/env python3
"""Folder throughput of `fer-video analyze DIR --jobs N` (video-seconds per wall-second).

Each configuration runs in a fresh process over the same folder with --overwrite; the
per-video CPU time (user+sys of the whole run / number of videos) lets a reader
extrapolate to more cores.

    python bench/throughput.py [--folder DIR] [--jobs 1 2] [-- extra analyze args]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FER_VIDEO_SHARED", REPO.parent / "shared"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folder", type=Path, default=SHARED / "videos" / "labelled")
    ap.add_argument("--jobs", nargs="*", type=int, default=[1, 2])
    ap.add_argument("extra", nargs="*")
    a = ap.parse_args()
    exe = Path(sys.executable).with_name("fer-video")
    cmd0 = [str(exe)] if exe.exists() else [sys.executable, str(REPO / "cli.py")]
    print(f"folder: {a.folder} (cpus: {os.cpu_count()})")
    for jobs in a.jobs:
        with tempfile.TemporaryDirectory() as tmp:
            cmd = cmd0 + ["analyze", str(a.folder), "--out", tmp, "--quiet", "--jobs", str(jobs), *a.extra]
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            r = subprocess.run(cmd, capture_output=True, text=True)
            wall = time.perf_counter() - t0
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            durations = [json.loads(p.read_text())["input"]["duration_s"] for p in Path(tmp).rglob("*.json")]
            n = len(durations)
            print(f"--jobs {jobs}: exit {r.returncode}, {n} videos, {sum(durations):.1f} video-s in {wall:.1f} s wall "
                  f"-> {sum(durations) / wall:.2f} video-s per wall-s; CPU {cpu:.1f} s ({cpu / max(n, 1):.1f} s per video)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
