"""``analyze --jobs N`` / ``--timeout``: worker processes give the same reports as in-process,
and a crashed or slow worker fails only its own input (real clips, real MTCNN)."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fer_video.batch import run_batch
from fer_video.cli import main

from conftest import PARALLEL_CLIPS as CLIPS
from conftest import REPO
TIMING_KEYS = {"wall_s", "timings", "timings_s", "speed", "realtime_factor", "created",
               "created_at", "elapsed_s"}


def _strip(obj):
    """A report's JSON without timing/wall-clock fields (anything else must match)."""
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items()
                if k not in TIMING_KEYS and "wall" not in k and "timing" not in k}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def _summary(out: Path) -> list[dict]:
    return list(csv.DictReader(open(out / "summary.csv", newline="")))


def assert_same_reports(one: Path, two: Path, folder: Path) -> None:
    """Per-video CSV byte-identical, JSON and summary.csv equal apart from timings."""
    for name in CLIPS:
        stem = Path(name).stem
        a, b = one / stem, two / stem
        assert (a / f"{stem}.frames.csv").read_bytes() == (b / f"{stem}.frames.csv").read_bytes()
        ja = json.loads((a / f"{stem}.json").read_text())
        jb = json.loads((b / f"{stem}.json").read_text())
        assert _strip(ja) == _strip(jb), stem
    ra, rb = _summary(one), _summary(two)
    assert [r["input"] for r in rb] == [str(folder / n) for n in sorted(CLIPS)]   # input order
    for x, y in zip(ra, rb):
        x.pop("wall_s"), y.pop("wall_s")
        assert x == y
    assert (two / "index.html").is_file()


@pytest.mark.slow
def test_jobs_2_gives_the_same_reports_as_jobs_1(folder, serial_reports, settings_for, tmp_path):
    settings = settings_for(fps=2.0)
    two = tmp_path / "two"
    assert run_batch([folder], settings, out_root=two, quiet=True, jobs=2) == 0
    assert_same_reports(serial_reports, two, folder)
    # resume: a complete batch is skipped by the workers too
    mtimes = {p: p.stat().st_mtime_ns for p in two.rglob("*.json")}
    assert run_batch([folder], settings, out_root=two, quiet=True, jobs=2) == 0
    assert all(p.stat().st_mtime_ns == m for p, m in mtimes.items())


@pytest.mark.slow
def test_crashed_and_timed_out_workers_fail_only_their_input(folder, model_path, tmp_path,
                                                             monkeypatch, capsys):
    """One input kills its worker (os._exit), one sleeps past --timeout; the third completes."""
    monkeypatch.setenv("FER_VIDEO_TEST_CRASH_ON", "pyfeat_no_face.mp4")
    monkeypatch.setenv("FER_VIDEO_TEST_SLEEP_ON", "liveportrait_d19.mp4")
    monkeypatch.setenv("FER_VIDEO_TEST_SLEEP_S", "120")
    out = tmp_path / "out"
    code = main(["analyze", str(folder), "--jobs", "2", "--timeout", "8", "--fps", "2",
                 "--model", str(model_path), "--device", "cpu", "--out", str(out), "--quiet"])
    assert code == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    rows = {Path(r["input"]).name: r for r in _summary(out)}
    assert rows["pyfeat_single_face.mp4"]["status"] == "ok"
    assert rows["pyfeat_no_face.mp4"]["status"] == "failed"
    assert rows["pyfeat_no_face.mp4"]["reason"] == "worker process died (exit code 1)"
    assert rows["liveportrait_d19.mp4"]["status"] == "failed"
    assert rows["liveportrait_d19.mp4"]["reason"] == "timed out after 8 s"
    assert "worker process died" in err and "timed out after 8 s" in err
    assert (out / "pyfeat_single_face" / "pyfeat_single_face.json").is_file()
    assert not (out / "liveportrait_d19" / "liveportrait_d19.json").exists()


def test_a_dead_workers_exit_code_is_its_reason(monkeypatch, tmp_path):
    """A real worker dies with os._exit(1) on its job: the slot sees its pipe close and reads
    the exit code from the process it owns (with concurrent.futures' pool the pool's manager
    thread reaped it first, and CI once saw ``exit code unknown``)."""
    import multiprocessing
    from types import SimpleNamespace

    from fer_video.executors import processes
    from fer_video.settings import Settings
    from fer_video.threads import plan_threads

    monkeypatch.setenv("FER_VIDEO_TEST_CRASH_ON", "dies.mp4")
    ctx = multiprocessing.get_context(processes.START_METHOD)
    slot = processes.Slot(ctx, plan_threads(1, 1))
    try:
        job = SimpleNamespace(path=str(tmp_path / "dies.mp4"), out_subdir=None)
        slot.submit(0, job, str(tmp_path / "out"), Settings(), False)
        deadline = time.monotonic() + 120
        messages = []
        while not slot.dead:
            assert time.monotonic() < deadline, "the worker did not die"
            messages += slot.receive()
            time.sleep(0.05)
        assert [m[0] for m in messages] == ["start"]        # models loaded, then the crash
        assert slot.exit_code() == "exit code 1"
    finally:
        slot.close(kill=True)


def _proc_table() -> dict[int, tuple[int, str, str]]:
    """pid -> (parent pid, start time, state) of every process, from /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = open(f"/proc/{entry}/stat").read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()     # after "pid (comm) "
        table[int(entry)] = (int(fields[1]), fields[19], fields[0])
    return table


def _descendants(pid: int) -> dict[int, str]:
    """pid -> start time of every living descendant of ``pid``."""
    table, found, todo = _proc_table(), {}, [pid]
    while todo:
        parent = todo.pop()
        for child, (ppid, started, state) in table.items():
            if ppid == parent and child not in found and state != "Z":
                found[child] = started
                todo.append(child)
    return found


def _alive(procs: dict[int, str]) -> list[int]:
    table = _proc_table()
    return [p for p, started in procs.items()
            if p in table and table[p][1] == started and table[p][2] != "Z"]


def _cmdline(pid: int) -> str:
    try:
        return open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_die_with_a_killed_parent(folder, model_path, tmp_path):
    """SIGKILL the parent of ``analyze FOLDER --jobs 2`` (no clean-up can run): its spawn
    workers, one of them busy on an input, and multiprocessing's resource tracker must not
    live on as orphans."""
    d = tmp_path / "in"
    d.mkdir()
    clip = (folder / "pyfeat_single_face.mp4").read_bytes()
    for name in ("a_busy.mp4", "b.mp4", "c.mp4", "d.mp4"):
        (d / name).write_bytes(clip)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO), "FER_VIDEO_TEST_SLEEP_ON": "a_busy.mp4",
           "FER_VIDEO_TEST_SLEEP_S": "600"}
    proc = subprocess.Popen([sys.executable, str(REPO / "cli.py"), "analyze", str(d), "--jobs", "2",
                             "--fps", "1", "--model", str(model_path), "--device", "cpu",
                             "--out", str(out), "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    procs: dict[int, str] = {}
    try:
        deadline = time.monotonic() + 600
        # both workers have run their start-up once the other one has finished b.mp4
        while not (out / "b" / "b.json").is_file():
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no report completed in time"
            time.sleep(0.2)
        procs = _descendants(proc.pid)
        workers = [p for p in procs if "multiprocessing.spawn" in _cmdline(p)]
        assert len(workers) == 2, {p: _cmdline(p) for p in procs}
        proc.kill()
        proc.wait(timeout=30)
        time.sleep(5)
        left = _alive(procs)
        assert not left, {p: _cmdline(p) for p in left}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        for p in _alive(procs):        # the ones this test started, should the check fail
            os.kill(p, signal.SIGKILL)


def _damaged_copy(src: Path, dst: Path, seed: int = 1) -> Path:
    """``src`` with a few random bits flipped past its first 2000 bytes (the MP4 header and
    index stay whole, the H.264 data is damaged): a real corrupt clip, the same for a seed."""
    import random

    rng = random.Random(seed)
    data = bytearray(src.read_bytes())
    for _ in range(rng.randint(1, 30)):
        data[rng.randrange(2000, len(data))] ^= 1 << rng.randrange(8)
    dst.write_bytes(bytes(data))
    return dst


def _decoded_frames(path: Path, threads: int) -> list[bytes]:
    """Every frame of ``path`` as PyAV decodes it with FFmpeg's frame threading and
    ``threads`` threads (errors end the list)."""
    import av

    out = []
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        s.codec_context.thread_count = threads
        try:
            for frame in c.decode(s):
                out.append(frame.to_ndarray(format="rgb24").tobytes())
        except av.error.FFmpegError:
            pass
    return out


@pytest.mark.slow
def test_a_corrupt_clip_gives_the_same_result_with_jobs_1_and_jobs_2(samples, settings_for,
                                                                     tmp_path):
    """Decoding settings that change results are the same in every mode: a damaged H.264
    clip (which FFmpeg's frame threading decodes differently with 1 and 2 threads) gets the
    same status and a byte-identical frames.csv in-process (--jobs 1) and in one-core
    workers (--jobs 2)."""
    d = tmp_path / "in"
    d.mkdir()
    bad = _damaged_copy(samples / "pyfeat_single_face.mp4", d / "damaged.mp4")
    (d / "intact.mp4").write_bytes((samples / "pyfeat_no_face.mp4").read_bytes())
    one_thread, two_threads = _decoded_frames(bad, 1), _decoded_frames(bad, 2)
    assert one_thread != two_threads          # the damage is one that threading changes
    settings = settings_for(fps=2.0)
    one, two = tmp_path / "one", tmp_path / "two"
    run_batch([d], settings, out_root=one, quiet=True)
    run_batch([d], settings, out_root=two, quiet=True, jobs=2)
    ra, rb = _summary(one), _summary(two)
    assert [(r["input"], r["status"], r["reason"]) for r in ra] == \
        [(r["input"], r["status"], r["reason"]) for r in rb]
    csv_a, csv_b = one / "damaged" / "damaged.frames.csv", two / "damaged" / "damaged.frames.csv"
    assert csv_a.is_file() == csv_b.is_file()
    if csv_a.is_file():
        assert csv_a.read_bytes() == csv_b.read_bytes()
