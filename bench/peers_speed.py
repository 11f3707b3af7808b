#!/usr/bin/env python3
"""fer-video's speed against its peers on the same clips, side by side, runs interleaved
(issue 12). Run it on an otherwise idle machine; it says how busy the machine was.

Per clip and per round (``--rounds``, default 3; the median is printed):
- **fer-video, whole process**: ``fer-video analyze CLIP --fps F`` in a fresh process
  (imports, model load and exit counted): wall seconds, CPU seconds (user+sys) and peak
  RSS of the process tree's largest process (``os.wait4``); and the report's own
  ``wall_s`` (**in-pipeline**) with its per-stage busy seconds (``timings_s``).
- **facenet-pytorch's MTCNN** (``facenet_pytorch.MTCNN.detect``, installed with
  fer-video) on the same sampled frames, in this process, one torch thread: seconds per
  frame, beside fer-video's own ``FaceDetector.detect`` on the same frames.
- **the `fer` package** (``fer.Video.analyze(FER(mtcnn=...), frequency=N)``, N = the
  clip's frame rate / ``--fps``, rounded: every N-th frame, as close to ``--fps`` as it
  can sample), when
  ``--fer-python`` names a Python whose environment has it: in-process wall seconds of
  ``analyze`` alone (its imports and model load NOT counted, as the issue measured it),
  Haar and MTCNN detectors; and the same fresh process's wall, CPU and peak RSS (its
  imports, tensorflow's included, and model load counted, as fer-video's whole process
  is: what a user running such a script sees). Recipe for that environment (tensorflow is fer's real need;
  it shares nothing with .venv)::

      python3 -m venv /work/fer-venv
      /work/fer-venv/bin/pip install --no-deps fer==25.10.3 facenet-pytorch==2.6.0
      /work/fer-venv/bin/pip install torch==2.14.1 torchvision==0.29.1
      /work/fer-venv/bin/pip install tensorflow 'opencv-python-headless<5' 'moviepy<2' \\
          'setuptools<81' pandas tqdm requests pillow
      /work/fer-venv/bin/pip uninstall -y triton

  (seen working on 2026-12-01: tensorflow 2.21.0; OpenCV 5 has no CascadeClassifier, fer
  imports pkg_resources and moviepy 1's API). Without the last line `FER(mtcnn=True)`
  dies of SIGSEGV: facenet-pytorch imports torchvision, whose ops import torch._dynamo and
  so triton, whose bundled LLVM (libtriton.so) crashes when loaded into a process that
  holds tensorflow; torch runs on the CPU without triton (seen 2026-12-02).

x-realtime = clip seconds analysed / wall seconds. Ratios printed: fer-video whole process
and in-pipeline against fer Haar's and fer MTCNN's in-process analyze (the issue's
measure), and fer-video's whole process against theirs.

    python bench/peers_speed.py                              # the three benchmark clips
    python bench/peers_speed.py --fer-python /work/fer-venv/bin/python --rounds 3 --json run.json
    python bench/peers_speed.py --from-json run.json          # print a saved run again
    python bench/peers_speed.py --fer-python ... --precision fp32 int8   # two fer-video arms
    python bench/peers_speed.py --fer-python ... --precision auto onnx   # torch and --backend onnx
    python bench/peers_speed.py --precision auto onnx,int8 model=new.safetensors   # three arms, no fer
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FER_VIDEO_SHARED", REPO.parent / "shared"))
CLIPS = ["pyfeat_WolfgangLanger_Pexels.mp4", "sadtalker_WDA_KatieHill_000.mp4", "facenet_crowd_1080p.mp4"]

# fer 25.10.3 calls cv2.waitKey/destroyAllWindows even with display=False; the headless
# OpenCV build has no GUI, so they are no-ops here (they draw nothing; no effect on timing).
FER_SCRIPT = r"""
import json, sys, time
import cv2
cv2.waitKey = lambda *a, **k: -1
cv2.destroyAllWindows = lambda *a, **k: None
from fer.fer import FER
from fer.classes import Video
clip, freq, mtcnn = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "mtcnn"
det = FER(mtcnn=mtcnn)
video = Video(clip, outdir=sys.argv[4])
t0 = time.perf_counter()
video.analyze(det, display=False, frequency=freq, save_video=False, save_frames=False, annotate_frames=False)
print(json.dumps({"wall_s": time.perf_counter() - t0}))
"""


def timed(cmd: list[str], env: dict | None = None, cwd: Path | None = None) -> dict:
    """Run ``cmd``; wall seconds, user+sys CPU seconds and peak RSS (MiB) of the process,
    from ``os.wait4`` (the kernel's accounting of that child)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=out, stderr=err, env={**os.environ, **(env or {})}, cwd=cwd)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return {"wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime, "peak_rss_mib": ru.ru_maxrss / 1024,
                "code": p.returncode, "stdout": out.read().decode(errors="replace"),
                "stderr": err.read().decode(errors="replace")}


def fv_arm(precision: str) -> str:
    """The results key of fer-video run as ``precision`` says (auto: plain "fer-video")."""
    return "fer-video" if precision == "auto" else f"fer-video {precision}"


def arm_args(arm: str) -> list[str]:
    """``analyze`` arguments of an arm: comma-separated tokens, each a ``--precision``
    (auto, fp32, bf16, int8), ``onnx`` (``--backend onnx``), ``tta=T`` (``--tta``) or
    ``model=PATH`` (``--model``): ``onnx,int8``, ``int8,tta=flip``, ``model=/runs/x/best.safetensors``."""
    extra: list[str] = []
    for tok in arm.split(","):
        if tok == "onnx":
            extra += ["--backend", "onnx"]
        elif tok.startswith("model="):
            extra += ["--model", tok[len("model="):]]
        elif tok.startswith("tta="):
            extra += ["--tta", tok[len("tta="):]]
        elif tok != "auto":
            extra += ["--precision", tok]
    return extra


def fer_video_run(clip: Path, fps: float, out: Path, precision: str = "auto") -> dict:
    r = timed([str(REPO / ".venv" / "bin" / "fer-video"), "analyze", str(clip), "--fps", str(fps), "--out", str(out),
               "--overwrite", "--quiet", *arm_args(precision)])
    report = json.loads((out / clip.stem / f"{clip.stem}.json").read_text())
    r.update(in_pipeline_s=report["wall_s"], stages=report.get("timings_s", {}), duration_s=report["input"]["duration_s"])
    return r


def detectors_on_frames(clip: Path, fps: float, n: int = 40) -> dict:
    """Seconds per frame of facenet-pytorch's MTCNN.detect and ours on the same frames."""
    import torch

    torch.set_num_threads(1)
    from facenet_pytorch import MTCNN

    from fer_video.decode import sample_frames
    from fer_video.detect import FaceDetector

    frames = [f.image for _, f in zip(range(n), sample_frames(str(clip), fps=fps))]
    ours = FaceDetector(num_threads=None)
    theirs = MTCNN(keep_all=True, device="cpu")
    out = {}
    for name, fn in (("fer-video FaceDetector", lambda ims: ours.detect(ims)),
                     ("facenet-pytorch MTCNN", lambda ims: [theirs.detect(im) for im in ims])):
        fn(frames[:2])
        t0 = time.perf_counter()
        fn(frames)
        out[name] = (time.perf_counter() - t0) / len(frames)
    return out


def report(results: dict, clips: list[str], rounds: int, fps: float) -> None:
    """Print the per-clip figures of a run (``results``: as ``--json`` saves them)."""
    for name in clips:
        res = results[name]
        med = lambda rows, k: statistics.median(r[k] for r in rows)  # noqa: E731
        arms = [k for k in res if k.startswith("fer-video") and res[k]]
        dur = res[arms[0]][0]["duration_s"]
        print(f"\n{name} ({dur:.1f} s, --fps {fps:g}, median of {rounds})")
        for arm in arms:
            fv_wall = med(res[arm], "wall_s")
            fv_whole, fv_pipe = dur / fv_wall, dur / med(res[arm], "in_pipeline_s")
            print(f"  {arm + ' whole process':<23} {fv_whole:.2f}x realtime ({fv_wall:.2f} s, "
                  f"CPU {med(res[arm], 'cpu_s'):.2f} s, peak RSS {med(res[arm], 'peak_rss_mib'):.0f} MiB)")
            print(f"  {arm + ' in-pipeline':<23} {fv_pipe:.2f}x realtime; stage busy s: "
                  + ", ".join(f"{k} {statistics.median(r['stages'].get(k, 0) for r in res[arm]):.2f}"
                              for k in res[arm][0]["stages"]))
        for peer in ("fer Haar", "fer MTCNN"):
            ok = [r for r in res.get(peer, []) if r.get("in_process_s")]
            if not ok:
                continue
            x = dur / med(ok, "in_process_s")
            print(f"  {peer:<23} {x:.2f}x realtime (in-process analyze only); its whole process "
                  f"{med(ok, 'wall_s'):.2f} s (CPU {med(ok, 'cpu_s'):.2f} s, peak RSS {med(ok, 'peak_rss_mib'):.0f} MiB)")
            for arm in arms:
                fv_wall = med(res[arm], "wall_s")
                fv_whole, fv_pipe = dur / fv_wall, dur / med(res[arm], "in_pipeline_s")
                # its whole process (imports, tensorflow's included, and model load counted)
                # against fer-video's: what a user running each sees
                print(f"  {'':<23} {arm}/{peer}: whole {fv_whole / x:.2f}, in-pipeline {fv_pipe / x:.2f}; "
                      f"whole process against whole process {med(ok, 'wall_s') / fv_wall:.2f}x as fast")
        per_frame = res.get("detectors_s_per_frame")
        if per_frame:
            print("  detection alone, s/frame (1 thread, same frames): "
                  + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in per_frame.items()))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--fps", type=float, default=5.0)
    ap.add_argument("--fer-python", help="a Python whose environment has the `fer` package")
    ap.add_argument("--clips", nargs="+", default=CLIPS)
    ap.add_argument("--precision", nargs="+", default=["auto"],
                    help="fer-video arms, interleaved: each a --precision, onnx (--backend onnx), "
                         "tta=T, model=PATH, or several joined by commas (onnx,int8) (default: auto)")
    ap.add_argument("--json", type=Path, help="also save every run's figures here")
    ap.add_argument("--from-json", type=Path, help="print a saved run (--json) again; runs nothing")
    a = ap.parse_args()
    if a.from_json:
        saved = json.loads(a.from_json.read_text())
        clips = [c for c in a.clips if c in saved] or list(saved)
        first = next(k for k in saved[clips[0]] if k.startswith("fer-video"))
        report(saved, clips, len(saved[clips[0]][first]), a.fps)
        return 0
    load0 = os.getloadavg()[0]
    results: dict = {}
    tmp = Path(tempfile.mkdtemp(prefix="fer-peers-"))
    for rnd in range(a.rounds):
        for name in a.clips:
            clip = SHARED / "videos" / name
            res = results.setdefault(name, {**{fv_arm(p): [] for p in a.precision}, "fer Haar": [], "fer MTCNN": []})
            for p in a.precision:
                res[fv_arm(p)].append(fer_video_run(clip, a.fps, tmp / "fv", p))
            if a.fer_python:
                from fer_video.decode import probe

                freq = max(1, round((probe(str(clip)).fps or a.fps) / a.fps))   # every freq-th frame: ~--fps
                for det in ("haar", "mtcnn"):
                    r = timed([a.fer_python, "-c", FER_SCRIPT, str(clip), str(freq), det, str(tmp / "fer")],
                              env={"CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2"},
                              cwd=tmp)    # fer writes data.csv into its working directory
                    if r["code"] == 0:
                        r["in_process_s"] = json.loads(r["stdout"].strip().splitlines()[-1])["wall_s"]
                    res["fer Haar" if det == "haar" else "fer MTCNN"].append(r)
            print(f"round {rnd + 1}: {name} done", flush=True)
    for name in a.clips:
        results[name]["detectors_s_per_frame"] = detectors_on_frames(SHARED / "videos" / name, a.fps)
    report(results, a.clips, a.rounds, a.fps)
    print(f"\nload average at start {load0:.2f}, at end {os.getloadavg()[0]:.2f} (2 cores: idle is ~0)")
    if a.json:
        a.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
