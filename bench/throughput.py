#!/usr/bin/env python3
"""Folder throughput of `fer-video analyze DIR` under each executor (video-seconds per wall-second).

    python bench/throughput.py [--folder DIR | --repeat K] [--configs jobs1 jobs2 ray2] [-- analyze args]

Without --folder it builds a folder of copies of the 12 talking-head / single-face clips of
``$FER_VIDEO_SHARED/videos`` (121.5 video-s, 14 MB), each copied K times under distinct names
(copies: a batch analyses a file named twice only once), so
worker start-up is amortised as it is on a real archive. Each configuration runs in a fresh
process over the same folder into an empty output folder. Configurations:

    jobs1   --jobs 1 (in-process: decode thread, 2 detection threads, a classify thread)
    jobsN   --jobs N (N worker processes)
    rayN    --executor ray --jobs N (a local Ray instance started by the run, N tasks at a time)

CPU is the whole machine's busy time from /proc/stat over the run (so Ray's daemons and
workers count too); run it on an otherwise idle machine. "CPU per video-s" lets a reader
extrapolate to more cores: with C cores and enough videos, throughput <= C / (CPU per video-s).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FER_VIDEO_SHARED", REPO.parent / "shared"))
CLIPS = [f"liveportrait_d{i}.mp4" for i in (10, 11, 12, 13, 14, 18, 19, 20)] + [
    "pyfeat_WolfgangLanger_Pexels.mp4", "pyfeat_single_face.mp4",
    "sadtalker_WDA_AlexandriaOcasioCortez_000.mp4", "sadtalker_WDA_KatieHill_000.mp4"]


def busy_jiffies() -> tuple[int, int]:
    """(busy, total) CPU jiffies of the whole machine since boot."""
    fields = [int(v) for v in open("/proc/stat").readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)     # idle + iowait
    total = sum(fields[:8])
    return total - idle, total


def build_folder(dest: Path, repeat: int) -> Path:
    for k in range(repeat):
        for name in CLIPS:
            src = SHARED / "videos" / name
            if not src.is_file():
                raise SystemExit(f"missing {src} (set FER_VIDEO_SHARED)")
            shutil.copyfile(src, dest / f"r{k}_{name}")
    return dest


def config_args(name: str) -> list[str]:
    if name.startswith("jobs"):
        return ["--jobs", name[4:]]
    if name.startswith("ray"):
        return ["--executor", "ray", "--jobs", name[3:]]
    raise SystemExit(f"unknown configuration {name!r} (jobsN or rayN)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folder", type=Path, default=None)
    ap.add_argument("--repeat", type=int, default=3, help="copies of the 12 clips (default 3)")
    ap.add_argument("--configs", nargs="*", default=["jobs1", "jobs2", "ray2"])
    ap.add_argument("extra", nargs="*")
    a = ap.parse_args()
    exe = Path(sys.executable).with_name("fer-video")
    cmd0 = [str(exe)] if exe.exists() else [sys.executable, str(REPO / "cli.py")]
    hz = os.sysconf("SC_CLK_TCK")
    with tempfile.TemporaryDirectory() as work:
        folder = a.folder or build_folder(Path(work), a.repeat)
        print(f"folder: {folder} ({len(list(folder.iterdir()))} files), cpus: {os.cpu_count()}, "
              f"extra args: {' '.join(a.extra) or '-'}")
        base = None
        for name in a.configs:
            with tempfile.TemporaryDirectory() as tmp:
                cmd = cmd0 + ["analyze", str(folder), "--out", tmp, "--quiet", *config_args(name), *a.extra]
                b0, _ = busy_jiffies()
                t0 = time.perf_counter()
                r = subprocess.run(cmd, capture_output=True, text=True)
                wall = time.perf_counter() - t0
                b1, _ = busy_jiffies()
                cpu = (b1 - b0) / hz
                durations = [json.loads(p.read_text())["input"]["duration_s"]
                             for p in Path(tmp).rglob("*.json")]
                n, vs = len(durations), sum(durations)
                rate = vs / wall
                base = base or rate
                print(f"{name:6s} exit {r.returncode}, {n} videos, {vs:.1f} video-s in {wall:.1f} s wall "
                      f"-> {rate:.2f} video-s per wall-s ({rate / base:.2f}x {a.configs[0]}); "
                      f"CPU {cpu:.1f} s = {cpu / wall:.2f} cores busy, {cpu / max(vs, 1e-9):.3f} CPU-s per video-s")
                if r.returncode != 0:
                    print("   stderr:", r.stderr.strip()[-500:])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
