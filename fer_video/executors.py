"""Run a batch's per-video jobs in worker processes (``fer-video analyze --jobs N``).

Every worker runs exactly the same per-video job as the in-process path
(:func:`fer_video.job.run_job`), so reports are identical to
``--jobs 1`` except for timings. Design:

* N *slots*, each a ``ProcessPoolExecutor(max_workers=1)`` with the "spawn" start method
  (never fork: torch's threads + fork can deadlock). One slot runs one video at a time, so
  when its worker dies the culprit is known: that video is marked failed ("worker process
  died (exit code ...)"), the slot gets a fresh pool and the other slots carry on.
* Models load once per worker process (``job.load_models``' per-process cache).
* Threads: one ``threads.ThreadPlan`` for every worker, made from the cores and N
  (:func:`threads.plan_threads`: ``cores // N`` cores each; one core runs every stage in
  the calling thread), applied once as the worker starts and passed to each job, so N
  workers don't oversubscribe the cores. With N = 1 (``--timeout`` alone) the worker has
  the in-process plan.
* ``timeout``: a video still running ``timeout`` seconds after its worker started it
  (models already built, so a worker's start-up does not count) has its worker killed and
  is marked failed ("timed out after N s").
* Results come back in input order; the caller assembles summary.csv / index.html.
* Workers die with the parent, however it ends (SIGKILL included): no orphan keeps
  analysing, holding a GPU or the resource tracker alive (:func:`die_with_parent`).

Test-only hooks, read in the worker (for tests/test_parallel.py, harmless otherwise):
``FER_VIDEO_TEST_CRASH_ON=<file name>`` makes the worker ``os._exit(1)`` on that input;
``FER_VIDEO_TEST_SLEEP_ON=<file name>`` makes it sleep ``FER_VIDEO_TEST_SLEEP_S`` seconds
(default 600) before analysing that input.
"""
from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Callable, Optional, Sequence

from .settings import Settings
from .threads import ThreadPlan, plan_threads, usable_cores

START_METHOD = "spawn"


# ---------------------------------------------------------------- worker side

_STARTED = None      # the parent's queue: ("start", job index, pid, monotonic time)
_PLAN: Optional[ThreadPlan] = None    # this worker's thread plan, applied at its start


_PR_SET_PDEATHSIG = 1              # <linux/prctl.h>
PARENT_POLL_S = 1.0


def die_with_parent(parent_pid: int) -> None:
    """End this process (``os._exit``, no clean-up) once ``parent_pid``, its parent, is gone.

    On Linux the kernel does it at once: ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` (the signal
    comes when the parent *thread* that started this process ends, which for the
    executors' pools is the thread running the batch, alive as long as they are). A
    parent that was gone before that call is caught by comparing ``os.getppid()`` with
    ``parent_pid`` right after it; elsewhere, or should ``prctl`` be unavailable, a daemon
    thread does the same comparison every ``PARENT_POLL_S`` seconds (an orphan is adopted
    by another process, so its parent pid changes).
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(PARENT_POLL_S)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="fer-video-parent-watch", daemon=True).start()


def _init_worker(started, plan: ThreadPlan, parent_pid: Optional[int] = None) -> None:
    global _STARTED, _PLAN
    if parent_pid is not None:
        die_with_parent(parent_pid)     # first: nothing below may outlive a killed parent
    _STARTED = started
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)     # the parent handles Ctrl-C
    except (ValueError, OSError):
        pass
    plan.apply()
    _PLAN = plan


def _test_hooks(path: str) -> None:
    """Test-only fault injection (see the module docstring)."""
    name = Path(path).name
    if name and os.environ.get("FER_VIDEO_TEST_CRASH_ON") == name:
        os._exit(1)
    if name and os.environ.get("FER_VIDEO_TEST_SLEEP_ON") == name:
        time.sleep(float(os.environ.get("FER_VIDEO_TEST_SLEEP_S", "600")))


def _run_in_worker(index: int, path: str, out_root: str, settings: Settings,
                   out_subdir: str, overwrite: bool, rel_path: Optional[str] = None):
    from .job import load_models, run_job

    try:
        load_models(settings)          # once per process; a SetupError surfaces from run_job()
    except Exception:
        pass
    if _STARTED is not None:
        _STARTED.put(("start", index, os.getpid(), time.monotonic()))
    _test_hooks(path)
    return run_job(path, out_root, settings, out_subdir=out_subdir, overwrite=overwrite,
                   rel_path=rel_path, threads=_PLAN)


# ---------------------------------------------------------------- parent side

class _Slot:
    """One single-worker pool and the job it is running."""

    def __init__(self, ctx, started, plan: ThreadPlan):
        self.pool = ProcessPoolExecutor(max_workers=1, mp_context=ctx, initializer=_init_worker,
                                        initargs=(started, plan, os.getpid()))
        self.index: Optional[int] = None
        self.future = None
        self.pid: Optional[int] = None
        self.started_at: Optional[float] = None
        self.process = None

    def submit(self, index: int, job, out_root: str, settings: Settings, overwrite: bool):
        self.index, self.pid, self.started_at = index, None, None
        self.future = self.pool.submit(_run_in_worker, index, job.path, out_root, settings,
                                       job.out_subdir, overwrite, getattr(job, "rel", None))
        # the pool's one worker process (started by now), kept for its exit code after a crash
        procs = list((getattr(self.pool, "_processes", None) or {}).values())
        self.process = procs[0] if len(procs) == 1 else None
        return self.future

    def remember_process(self, pid: int) -> None:
        self.pid = pid

    def exit_code(self) -> str:
        p = self.process
        if p is None:
            return "exit code unknown"
        # The pool's manager thread reaps the dead worker at the same moment (waitpid); if it
        # wins, our own waitpid fails and the code appears only once that thread has stored it
        # on the shared Process object, so poll for it a little while instead of asking once.
        deadline = time.monotonic() + 5.0
        while True:
            try:
                p.join(timeout=0.1)
                code = p.exitcode
            except (ValueError, OSError):       # the Process object was closed meanwhile
                code = None
            if code is not None:
                code = int(code)
                return f"killed by signal {-code}" if code < 0 else f"exit code {code}"
            if time.monotonic() > deadline:
                return "exit code unknown"
            time.sleep(0.05)

    def kill(self) -> None:
        pids = {self.pid} if self.pid else set()
        for p in list((getattr(self.pool, "_processes", None) or {}).values()):
            pids.add(p.pid)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (OSError, TypeError):
                pass

    def close(self, kill: bool = False) -> None:
        if kill:
            self.kill()
        try:
            self.pool.shutdown(wait=not kill, cancel_futures=True)
        except Exception:
            pass


def run_parallel(jobs: Sequence, out_root: str | os.PathLike, settings: Settings, *,
                 workers: int, overwrite: bool = False, timeout: Optional[float] = None,
                 on_done: Optional[Callable[[int, object, bool], None]] = None) -> list:
    """Run every job in ``workers`` processes; return ``[(SummaryRow, skipped)]`` in input order.

    ``on_done(index, row, skipped)`` is called in the parent as each job finishes.
    ``SetupError``/``UsageError`` raised by a job propagate (after the workers are stopped),
    as does KeyboardInterrupt.
    """
    from .report_folder import failed_row

    out_root = str(out_root)
    n = len(jobs)
    workers = max(1, min(int(workers), n))
    plan = plan_threads(usable_cores(), workers)
    ctx = multiprocessing.get_context(START_METHOD)
    started = ctx.SimpleQueue()     # synchronous put: safe even if the worker dies right after
    results: list = [None] * n
    pending = list(range(n))[::-1]            # pop() takes the next job in input order
    slots = [_Slot(ctx, started, plan) for _ in range(workers)]

    def finish(i: int, row, skipped: bool) -> None:
        results[i] = (row, skipped)
        if on_done is not None:
            on_done(i, row, skipped)

    def fail(i: int, reason: str, t0: Optional[float]) -> None:
        row = failed_row(jobs[i].path, reason, time.perf_counter())
        if t0 is not None:
            row.wall_s = max(0.0, time.monotonic() - t0)
        finish(i, row, False)

    def replace(k: int) -> None:
        slots[k].close(kill=True)
        slots[k] = _Slot(ctx, started, plan)

    try:
        while True:
            for slot in slots:
                if slot.future is None and pending:
                    i = pending.pop()
                    slot.submit(i, jobs[i], out_root, settings, overwrite)
            active = [s for s in slots if s.future is not None]
            if not active:
                break
            wait([s.future for s in active], timeout=0.2, return_when=FIRST_COMPLETED)
            # start notices: which worker runs which job, since when
            while not started.empty():
                _, i, pid, t = started.get()
                for s in slots:
                    if s.index == i and s.future is not None:
                        s.remember_process(pid)
                        s.started_at = t
            for k, s in enumerate(slots):
                fut = s.future
                if fut is None:
                    continue
                i = s.index
                if fut.done():
                    s.future = None
                    try:
                        row, skipped = fut.result()
                    except BrokenProcessPool:
                        fail(i, f"worker process died ({s.exit_code()})", s.started_at)
                        replace(k)
                        continue
                    finish(i, row, skipped)
                elif (timeout is not None and s.started_at is not None
                      and time.monotonic() - s.started_at > timeout):
                    s.future = None
                    fail(i, f"timed out after {timeout:g} s", s.started_at)
                    replace(k)
    except BaseException:
        for s in slots:
            s.close(kill=True)
        raise
    for s in slots:
        s.close()
    started.close()
    return results
