#!/usr/bin/env python3
"""Seeded mutation fuzzing of `fer-video analyze` in folder batches (issue 14).

Seeds: the clips in ``sample_videos/`` and the same clips remuxed (PyAV, no re-encoding)
into Matroska, QuickTime and FLV containers (FLV re-encoded to FLV1, FLV's own codec),
plus, when present, the shared folder's HEVC ``.mov`` and CREMA-D ``.flv`` clips. Each case
is one mutated copy of a seed, made by one or more of: byte flips (1-64 random bytes),
chunk deletion, chunk duplication, header truncation (a prefix of 1-99%), tail truncation,
zeroing a chunk, and a splice of two seeds. Cases go in folders of ``--batch`` files;
every folder is analysed twice in real subprocesses, ``--jobs 1`` and ``--jobs 2``, both
with ``--timeout``, and the two ``summary.csv`` files are compared.

Printed at the end (and with ``--json``):
- ``cases``: mutated files analysed (each twice);
- ``crashes``: batch runs that exited with a code other than 0 or 1, or printed a Python
  traceback on stderr;
- ``hangs``: batch runs killed after ``--batch-timeout`` seconds (the per-input
  ``--timeout`` should have ended every input long before);
- ``missing rows``: inputs absent from a summary.csv;
- ``internal-exception reasons``: failure reasons that carry a Python exception's text
  (``IndexError``, ``AttributeError``, ``NoneType``, ...) instead of what is wrong with the file;
- ``--jobs disagreements``: inputs whose status differs between ``--jobs 1`` and ``--jobs 2``;
- ``slowest case``: the input with the largest ``wall_s``, and its file.

The same ``--seed`` and ``--cases`` give the same files. A case that shows a problem is
kept under ``--keep`` (default ``fuzz_findings/``) with the two summaries.

    python bench/fuzz.py --cases 30                  # ~30 cases (the tests run this)
    python bench/fuzz.py --cases 10000 --seed 1      # the benchmark in docs/benchmarks.md
    python bench/fuzz.py --seed 13 --batch 100 --write-batch 52 --keep b52   # one batch's files again
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FER_VIDEO_SHARED", REPO.parent / "shared"))
# Reason text that comes from Python, not from fer-video's own description of the file.
INTERNAL = re.compile(r"\b(IndexError|AttributeError|KeyError|TypeError|ValueError|ZeroDivisionError|"
                      r"AssertionError|RuntimeError|NameError|UnboundLocalError|OverflowError|"
                      r"MemoryError|RecursionError|StopIteration|NotImplementedError|NoneType|"
                      r"Traceback|object has no attribute|list index out of range)\b")


def make_seeds(folder: Path) -> list[Path]:
    """The seed files: sample clips, their remuxes into other containers, shared extras."""
    import av

    folder.mkdir(parents=True, exist_ok=True)
    seeds = []
    for clip in sorted((REPO / "sample_videos").glob("*.mp4")):
        dst = folder / clip.name
        shutil.copy(clip, dst)
        seeds.append(dst)
    base = seeds[0] if seeds else None
    if base is not None:
        for ext, fmt in ((".mkv", "matroska"), (".mov", "mov")):
            out = folder / (base.stem + ext)
            with av.open(str(base)) as src, av.open(str(out), "w", format=fmt) as dst:
                s_in = src.streams.video[0]
                s_out = dst.add_stream_from_template(s_in)
                for packet in src.demux(s_in):
                    if packet.dts is None:
                        continue
                    packet.stream = s_out
                    dst.mux(packet)
            seeds.append(out)
        out = folder / (base.stem + ".flv")
        with av.open(str(base)) as src, av.open(str(out), "w", format="flv") as dst:
            s_in = src.streams.video[0]
            s_out = dst.add_stream("flv", rate=int(round(float(s_in.average_rate or 25))))
            s_out.width, s_out.height, s_out.pix_fmt = s_in.codec_context.width, s_in.codec_context.height, "yuv420p"
            for frame in src.decode(s_in):
                for p in s_out.encode(frame.reformat(format="yuv420p")):
                    dst.mux(p)
            for p in s_out.encode():
                dst.mux(p)
        seeds.append(out)
    for rel in ("videos/pyfeat_face_noface.mov", "videos/labelled/1001_DFA_ANG_XX.flv"):
        p = SHARED / rel
        if p.is_file() and p.stat().st_size < 5_000_000:
            dst = folder / p.name
            shutil.copy(p, dst)
            seeds.append(dst)
    return seeds


def mutate(data: bytes, other: bytes, rng: random.Random) -> tuple[bytes, str]:
    """One mutated copy of ``data`` (``other``: a second seed, for splices) and its recipe."""
    b = bytearray(data)
    steps = []
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        kind = rng.choice(("flip", "flip", "delete", "duplicate", "head", "tail", "zero", "splice"))
        n = len(b)
        if n < 16:
            break
        if kind == "flip":
            k = rng.randint(1, 64)
            for _ in range(k):
                i = rng.randrange(n)
                b[i] ^= 1 << rng.randrange(8)
            steps.append(f"flip{k}")
        elif kind == "delete":
            i, L = rng.randrange(n), rng.randint(1, max(1, n // 20))
            del b[i:i + L]
            steps.append(f"del@{i}+{L}")
        elif kind == "duplicate":
            i, L = rng.randrange(n), rng.randint(1, max(1, n // 20))
            b[i:i] = b[i:i + L]
            steps.append(f"dup@{i}+{L}")
        elif kind == "head":
            keep = max(1, int(n * rng.uniform(0.01, 0.99)))
            b = b[:keep]
            steps.append(f"head{keep}")
        elif kind == "tail":
            cut = rng.randint(1, max(1, n // 2))
            b = b[cut:]
            steps.append(f"tail-{cut}")
        elif kind == "zero":
            i, L = rng.randrange(n), rng.randint(1, max(1, n // 50))
            b[i:i + L] = bytes(len(b[i:i + L]))
            steps.append(f"zero@{i}+{L}")
        else:
            i = rng.randrange(n)
            j = rng.randrange(len(other))
            b = b[:i] + bytearray(other[j:])
            steps.append(f"splice@{i}/{j}")
    return bytes(b), "+".join(steps)


def run_batch(folder: Path, out: Path, jobs: int, timeout: float, batch_timeout: float) -> dict:
    cmd = [sys.executable, str(REPO / "cli.py"), "analyze", str(folder), "--out", str(out), "--jobs", str(jobs),
           "--timeout", str(timeout), "--fps", "1", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=batch_timeout, env=env)
        code, err, hung = r.returncode, r.stderr, False
    except subprocess.TimeoutExpired as exc:
        code, err, hung = None, (exc.stderr or b"").decode("utf-8", "replace") if isinstance(exc.stderr, bytes) \
            else (exc.stderr or ""), True
    rows = {}
    summary = out / "summary.csv"
    if summary.is_file():
        with open(summary, newline="", encoding="utf-8", errors="surrogateescape") as f:
            for row in csv.DictReader(f):
                rows[Path(row["input"].lstrip("'")).name] = row
    return {"code": code, "stderr": err, "hung": hung, "rows": rows, "wall_s": time.perf_counter() - t0}


def _cases(rng: random.Random, seeds: list[Path], blobs: list[bytes]):
    """The mutated cases in order: (seed index, bytes, recipe), drawn from ``rng`` as a run draws them."""
    while True:
        k = rng.randrange(len(seeds))
        data, recipe = mutate(blobs[k], blobs[rng.randrange(len(seeds))], rng)
        yield k, data, recipe


def write_batch(seed: int, batch: int, which: int, out: Path) -> int:
    """Write batch ``which`` of a run (``--seed``, ``--batch``) into ``out``, and nothing else."""
    work = Path(tempfile.mkdtemp(prefix="fer-fuzz-"))
    try:
        seeds = make_seeds(work / "seeds")
        blobs = [p.read_bytes() for p in seeds]
        cases = _cases(random.Random(seed), seeds, blobs)
        out.mkdir(parents=True, exist_ok=True)
        for made in range(which * batch):
            k, data, _ = next(cases)
            if made >= (which - 1) * batch:
                (out / f"case{made:05d}{seeds[k].suffix}").write_bytes(data)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"wrote batch {which} ({batch} cases) into {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=30, help="mutated files in all (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    ap.add_argument("--batch", type=int, default=30, help="files per folder batch (default: %(default)s)")
    ap.add_argument("--timeout", type=float, default=60.0, help="per-input --timeout, s (default: %(default)s)")
    ap.add_argument("--batch-timeout", type=float, default=1800.0,
                    help="a batch run still going after this many seconds counts as a hang (default: %(default)s)")
    ap.add_argument("--keep", type=Path, default=Path("fuzz_findings"), help="where problem cases are copied")
    ap.add_argument("--json", type=Path, help="also write the tallies here")
    ap.add_argument("--write-batch", type=int, metavar="K",
                    help="only write batch K's files (the same bytes a run with this --seed and "
                         "--batch analysed) into --keep, and stop: to reproduce a finding in its batch")
    a = ap.parse_args(argv)
    if a.write_batch:
        return write_batch(a.seed, a.batch, a.write_batch, a.keep)
    rng = random.Random(a.seed)
    work = Path(tempfile.mkdtemp(prefix="fer-fuzz-"))
    tally = {"cases": 0, "crashes": 0, "hangs": 0, "missing_rows": 0, "internal_exception_reasons": 0,
             "jobs_disagreements": 0, "failed": 0, "ok": 0, "slowest_case": None, "findings": []}
    try:
        seeds = make_seeds(work / "seeds")
        blobs = [p.read_bytes() for p in seeds]
        cases = _cases(rng, seeds, blobs)
        made = 0
        batch_no = 0
        while made < a.cases:
            batch_no += 1
            folder = work / f"batch{batch_no:04d}"
            folder.mkdir()
            recipes = {}
            for _ in range(min(a.batch, a.cases - made)):
                k, data, recipe = next(cases)
                name = f"case{made:05d}{seeds[k].suffix}"
                (folder / name).write_bytes(data)
                recipes[name] = f"{seeds[k].name}:{recipe}"
                made += 1
            runs = {j: run_batch(folder, work / f"out{batch_no:04d}_j{j}", j, a.timeout, a.batch_timeout)
                    for j in (1, 2)}
            tally["cases"] += len(recipes)
            problems: dict[str, list[str]] = {}
            for j, r in runs.items():
                if r["hung"]:
                    tally["hangs"] += 1
                    problems.setdefault("(batch)", []).append(f"jobs {j}: hang")
                elif r["code"] not in (0, 1) or "Traceback (most recent call last)" in r["stderr"]:
                    tally["crashes"] += 1
                    problems.setdefault("(batch)", []).append(f"jobs {j}: exit {r['code']}: {r['stderr'][-300:]}")
            for name in recipes:
                r1, r2 = runs[1]["rows"].get(name), runs[2]["rows"].get(name)
                for j, row in ((1, r1), (2, r2)):
                    if row is None:
                        if not runs[j]["hung"]:
                            tally["missing_rows"] += 1
                            problems.setdefault(name, []).append(f"jobs {j}: no summary row")
                        continue
                    if INTERNAL.search(row.get("reason", "")):
                        tally["internal_exception_reasons"] += 1
                        problems.setdefault(name, []).append(f"jobs {j}: reason {row['reason']!r}")
                    w = float(row.get("wall_s") or 0)
                    if tally["slowest_case"] is None or w > tally["slowest_case"][0]:
                        tally["slowest_case"] = (w, name, recipes[name])
                if r1 is not None:
                    tally["ok" if r1["status"] == "ok" else "failed"] += 1
                if r1 is not None and r2 is not None and r1["status"] != r2["status"]:
                    tally["jobs_disagreements"] += 1
                    problems.setdefault(name, []).append(
                        f"status jobs1 {r1['status']} ({r1['reason']}) vs jobs2 {r2['status']} ({r2['reason']})")
            for name, what in problems.items():
                tally["findings"].append({"case": name, "recipe": recipes.get(name, ""), "problems": what})
                if name != "(batch)":
                    a.keep.mkdir(parents=True, exist_ok=True)
                    shutil.copy(folder / name, a.keep / name)
            print(f"batch {batch_no}: {made}/{a.cases} cases; crashes {tally['crashes']} hangs {tally['hangs']} "
                  f"internal {tally['internal_exception_reasons']} disagreements {tally['jobs_disagreements']}",
                  flush=True)
            shutil.rmtree(folder, ignore_errors=True)
            for j in (1, 2):
                shutil.rmtree(work / f"out{batch_no:04d}_j{j}", ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"cases: {tally['cases']} (ok {tally['ok']}, failed {tally['failed']} with --jobs 1)")
    print(f"crashes: {tally['crashes']}")
    print(f"hangs: {tally['hangs']}")
    print(f"missing rows: {tally['missing_rows']}")
    print(f"internal-exception reasons: {tally['internal_exception_reasons']}")
    print(f"--jobs disagreements: {tally['jobs_disagreements']}")
    if tally["slowest_case"]:
        w, name, recipe = tally["slowest_case"]
        print(f"slowest case: {name} ({recipe}) {w:.3f} s")
    for f in tally["findings"][:20]:
        print(f"  {f['case']} [{f['recipe']}]: " + "; ".join(f["problems"]))
    if a.json:
        a.json.write_text(json.dumps(tally, indent=2) + "\n")
    bad = tally["crashes"] + tally["hangs"] + tally["missing_rows"] + tally["internal_exception_reasons"] \
        + tally["jobs_disagreements"]
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
