#!/usr/bin/env python3
"""Whole-process speed and memory of `fer-video analyze` on real clips (CPU).

Runs the installed CLI in a fresh process per clip (imports and model loading included,
as a user experiences it), then prints:
  x-realtime = video seconds analysed / wall seconds of the whole process
  faces/s    = face detections classified (rows of frames.csv) / wall seconds
  the per-stage split from the report JSON (decode, detect, track, classify, aggregate,
  report), the start-up time (process wall minus the in-pipeline wall), and peak RSS.
With --long N it also builds an N-minute input by looping the clip (stream copy, no
re-encode) and compares peak memory with the short clip's.

    python bench/speed.py [--clips a.mp4 b.mp4] [--fps 5] [--long 10] [-- extra analyze args]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FER_VIDEO_SHARED", REPO.parent / "shared"))
DEFAULT_CLIPS = [SHARED / "videos" / "pyfeat_WolfgangLanger_Pexels.mp4", SHARED / "videos" / "facenet_crowd_1080p.mp4"]


def fer_video_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("fer-video")
    return [str(exe)] if exe.exists() else [sys.executable, str(REPO / "cli.py")]


def run_once(clip: Path, out: Path, extra: list[str]) -> dict:
    """One fresh process; returns wall, peak RSS of that child (KiB) and the report JSON."""
    cmd = fer_video_cmd() + ["analyze", str(clip), "--out", str(out), "--quiet", "--overwrite", *extra]
    # Peak RSS of one child: run it under a tiny wrapper that reports its own ru_maxrss.
    wrapper = ("import resource,subprocess,sys,json;r=subprocess.run(sys.argv[1:]);"
               "print(json.dumps({'rc':r.returncode,'maxrss_kib':resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))")
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", wrapper, *cmd], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"analyze failed on {clip}:\n{p.stderr[-2000:]}")
    stats = json.loads(p.stdout.strip().splitlines()[-1])
    if stats["rc"] != 0:
        raise SystemExit(f"analyze exited {stats['rc']} on {clip}:\n{p.stderr[-2000:]}")
    report = next((out / clip.stem).glob("*.json"))
    frames_csv = next((out / clip.stem).glob("*.frames.csv"))
    n_rows = sum(1 for _ in open(frames_csv)) - 1
    return {"wall": wall, "maxrss_mib": stats["maxrss_kib"] / 1024, "report": json.loads(report.read_text()),
            "rows": n_rows}


def loop_clip(src: Path, minutes: float, dst: Path) -> Path:
    """Concatenate the clip with itself (video stream copy) until it lasts `minutes`."""
    import av

    with av.open(str(src)) as probe:
        dur = float(probe.duration / 1e6)
    times = max(1, int(minutes * 60 / dur + 0.999))
    with av.open(str(dst), "w") as out_c:
        out_s = None
        offset = 0
        for _ in range(times):
            with av.open(str(src)) as in_c:
                s = in_c.streams.video[0]
                if out_s is None:
                    out_s = out_c.add_stream_from_template(s)
                last = 0
                for pkt in in_c.demux(s):
                    if pkt.dts is None:
                        continue
                    pkt.dts += offset
                    pkt.pts += offset
                    last = max(last, pkt.pts + (pkt.duration or 0))
                    pkt.stream = out_s
                    out_c.mux(pkt)
                offset = last
    return dst


def describe(name: str, r: dict) -> str:
    rep = r["report"]
    info = rep.get("input", rep.get("video", {}))
    dur = float(info.get("duration_s") or info.get("duration") or 0)
    settings = rep.get("settings", {})
    start, end = float(settings.get("start") or 0), settings.get("end")
    analysed = (min(float(end), dur) if end else dur) - start
    stages = rep.get("timings_s") or rep.get("timings") or {}
    inner = float(rep.get("wall_s") or 0)
    lines = [f"{name}: {info.get('width')}x{info.get('height')}, {analysed:.1f} s analysed, "
             f"{rep.get('n_faces', len(rep.get('faces', [])))} face ids, {r['rows']} face rows",
             f"  wall {r['wall']:.2f} s (whole process) -> x-realtime {analysed / r['wall']:.2f}, "
             f"faces/s {r['rows'] / r['wall']:.1f}, peak RSS {r['maxrss_mib']:.0f} MiB",
             f"  start-up (imports + model load + exit) {r['wall'] - inner:.2f} s; in-pipeline {inner:.2f} s: "
             + ", ".join(f"{k} {v:.2f}" for k, v in stages.items())]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", nargs="*", type=Path, default=DEFAULT_CLIPS)
    ap.add_argument("--fps", default="5")
    ap.add_argument("--long", type=float, default=0.0, help="also loop the first clip to N minutes (memory check)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per clip; the fastest is reported")
    ap.add_argument("extra", nargs="*", help="extra `fer-video analyze` arguments (after --)")
    a = ap.parse_args()
    extra = ["--fps", a.fps, *a.extra]
    print(f"command: {' '.join(fer_video_cmd())} analyze CLIP {' '.join(extra)}   (cpus: {os.cpu_count()})")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "reports"
        short = None
        for clip in a.clips:
            best = min((run_once(clip, out, extra) for _ in range(a.repeat)), key=lambda r: r["wall"])
            short = short or best
            print(describe(clip.name, best))
        if a.long:
            looped = loop_clip(a.clips[0], a.long, Path(tmp) / f"{a.clips[0].stem}_looped.mp4")
            r = run_once(looped, out, extra)
            print(describe(looped.name, r))
            ratio = r["maxrss_mib"] / short["maxrss_mib"]
            print(f"peak memory {a.long:g}-min loop vs short clip: {r['maxrss_mib']:.0f} / {short['maxrss_mib']:.0f} MiB "
                  f"= {ratio:.3f}x ({'within' if ratio <= 1.10 else 'OVER'} the 10% budget)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
