"""Worker processes on this machine (``--jobs N``, ``--timeout``).

Every worker runs exactly the same per-video job as the in-process run
(:func:`fer_video.job.run_job`), so reports are identical to ``--jobs 1`` except for
timings. Design:

* N *slots*, each one worker process started with "spawn" (never fork: torch's threads +
  fork can deadlock) and a pipe. One slot runs one video at a time, so when its worker dies
  the culprit is known: that video is marked failed ("worker process died (exit code N)" /
  "(killed by signal N)"), the slot gets a fresh worker and the other slots carry on. The
  slot owns its ``multiprocessing.Process``, so the exit code is its own to read.
* Models load once per worker process (``job.load_models``' per-process cache).
* Threads: one ``threads.ThreadPlan`` for every worker, made from the cores and N
  (:func:`threads.plan_threads`: ``cores // N`` cores each), applied as the worker starts
  (:func:`worker.start_worker`) and passed to each job. With N = 1 (``--timeout`` alone)
  the worker has the in-process plan.
* ``timeout``: a video still running ``timeout`` seconds after its worker started it
  (models already built, so a worker's start-up does not count) has its worker killed and
  is marked failed ("timed out after N s").
* Workers die with the parent, however it ends (SIGKILL included): no orphan keeps
  analysing or holding a GPU (:func:`worker.die_with_parent`).
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import time
from multiprocessing.connection import wait
from typing import Optional, Sequence

from .base import Executor, Options
from .worker import run_one, start_worker

START_METHOD = "spawn"
POLL_S = 0.2


def worker_main(conn, plan, parent_pid: int) -> None:
    """A slot's worker: start up once, then run the jobs its parent sends, one at a time.

    Messages to the parent: ``("start", index, monotonic time)`` once the models are loaded,
    then ``("done", index, JobResult)`` or ``("raise", index, exception)`` (a set-up or
    usage error, or a bug outside the job's own handling: the parent re-raises it)."""
    start_worker(plan, parent_pid=parent_pid, ignore_sigint=True)

    def announce(index: int) -> None:
        conn.send(("start", index, time.monotonic()))

    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg is None:
            return
        index, job, out_root, settings, overwrite = msg
        try:
            result = run_one(index, job, out_root, settings, overwrite, plan, announce)
        except BaseException as exc:          # noqa: BLE001  (the parent decides)
            try:
                conn.send(("raise", index, exc))
            except Exception:                  # not picklable: its text is enough
                conn.send(("raise", index, RuntimeError(f"{type(exc).__name__}: {exc}")))
            continue
        conn.send(("done", index, result))


class Slot:
    """One worker process and the job it is running."""

    def __init__(self, ctx, plan):
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=worker_main, args=(child, plan, os.getpid()),
                                   name="fer-video-worker", daemon=True)
        self.process.start()
        child.close()
        self.index: Optional[int] = None
        self.started_at: Optional[float] = None     # monotonic time its job's analysis began
        self.dead = False                           # its pipe was closed: the worker is gone

    @property
    def busy(self) -> bool:
        return self.index is not None

    def submit(self, index: int, job, out_root: str, settings, overwrite: bool) -> None:
        self.index, self.started_at = index, None
        try:
            self.conn.send((index, job, out_root, settings, overwrite))
        except OSError:          # it died at start-up: seen as a closed pipe in receive()
            pass

    def receive(self) -> list:
        """The worker's messages waiting in the pipe; ``dead`` is set once it is closed
        (the worker ended: a dead process's pipe reads as closed after its last message)."""
        msgs = []
        try:
            while not self.dead and self.conn.poll():
                msgs.append(self.conn.recv())
        except (EOFError, OSError):
            self.dead = True
        return msgs

    def exit_code(self, wait_s: float = 5.0) -> str:
        """How the (dead) worker ended: "exit code N" or "killed by signal N"."""
        self.process.join(timeout=wait_s)
        code = self.process.exitcode
        if code is None:
            return "exit code unknown"
        return f"killed by signal {-code}" if code < 0 else f"exit code {code}"

    def kill(self) -> None:
        if self.process.is_alive():
            try:
                os.kill(self.process.pid, signal.SIGKILL)
            except OSError:
                pass
        self.process.join(timeout=5.0)

    def close(self, kill: bool = False) -> None:
        if kill:
            self.kill()
        else:
            try:
                self.conn.send(None)
            except OSError:
                pass
            self.process.join(timeout=10.0)
            if self.process.is_alive():
                self.kill()
        self.conn.close()


class Processes(Executor):
    help = "worker processes on this machine, even for --jobs 1 (a crash fails only its input)"
    accepts = frozenset({"jobs", "timeout"})

    def run(self, jobs: Sequence, out_root, settings, options: Options) -> list:
        from ..job import JobResult
        from ..threads import plan_threads, usable_cores

        out_root = str(out_root)
        n = len(jobs)
        results: list = [None] * n
        if n == 0:
            return results
        workers = max(1, min(int(options.jobs or 1), n))
        plan = plan_threads(usable_cores(), workers)
        ctx = multiprocessing.get_context(START_METHOD)
        pending = list(range(n))[::-1]            # pop() takes the next job in input order
        slots = [Slot(ctx, plan) for _ in range(workers)]

        def finish(slot: Slot, result) -> None:
            i, slot.index = slot.index, None
            results[i] = result
            options.done(i, result)

        def fail(k: int, reason: str) -> None:
            slot = slots[k]
            result = JobResult.failed(jobs[slot.index].path, reason, time.perf_counter())
            if slot.started_at is not None:
                result.row.wall_s = max(0.0, time.monotonic() - slot.started_at)
            slot.close(kill=True)
            slots[k] = Slot(ctx, plan)
            finish(slot, result)

        try:
            while True:
                for slot in slots:
                    if not slot.busy and pending:
                        i = pending.pop()
                        slot.submit(i, jobs[i], out_root, settings, options.overwrite)
                busy = [s for s in slots if s.busy]
                if not busy:
                    break
                wait([s.conn for s in busy] + [s.process.sentinel for s in busy], timeout=POLL_S)
                for k, slot in enumerate(slots):
                    for kind, _, payload in slot.receive():
                        if kind == "start":
                            slot.started_at = payload
                        elif kind == "done":
                            finish(slot, payload)
                        else:
                            raise payload
                    if not slot.busy:
                        continue
                    if slot.dead:
                        fail(k, f"worker process died ({slot.exit_code()})")
                    elif (options.timeout is not None and slot.started_at is not None
                          and time.monotonic() - slot.started_at > options.timeout):
                        fail(k, f"timed out after {options.timeout:g} s")
        except BaseException:
            for s in slots:
                s.close(kill=True)
            raise
        for s in slots:
            s.close()
        return results
