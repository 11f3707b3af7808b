"""Worker start-up and the per-job step, written once for every executor.

``start_worker`` runs once where a worker process starts (a process-pool worker, a Ray
task's process): it ties the worker's life to its parent's, leaves Ctrl-C to the parent
and applies the worker's :class:`~fer_video.threads.ThreadPlan`. ``run_one`` runs one job
there: models loaded first (once per process), then ``announce(index)`` (so a timeout counts
from here, not from a worker's start-up), then :func:`fer_video.job.run_job`.

Test-only fault injection, read in the worker (tests/test_parallel.py, test_ray.py; harmless
otherwise): ``FER_VIDEO_TEST_CRASH_ON=<file name>`` makes the worker ``os._exit(1)`` on that
input; ``FER_VIDEO_TEST_SLEEP_ON=<file name>`` makes it sleep ``FER_VIDEO_TEST_SLEEP_S``
seconds (default 600) before analysing that input.
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

if TYPE_CHECKING:
    from ..job import JobResult
    from ..settings import Settings
    from ..threads import ThreadPlan

PR_SET_PDEATHSIG = 1              # <linux/prctl.h>
PARENT_POLL_S = 1.0


def die_with_parent(parent_pid: int) -> None:
    """End this process (``os._exit``, no clean-up) once ``parent_pid``, its parent, is gone.

    On Linux the kernel does it at once: ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` (the signal
    comes when the parent *thread* that started this process ends, which for the process
    executor is the thread running the batch, alive as long as its workers are). A parent
    that was gone before that call is caught by comparing ``os.getppid()`` with
    ``parent_pid`` right after it; elsewhere, or should ``prctl`` be unavailable, a daemon
    thread does the same comparison every ``PARENT_POLL_S`` seconds (an orphan is adopted
    by another process, so its parent pid changes).
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
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


def start_worker(plan: "ThreadPlan", *, parent_pid: Optional[int] = None,
                 ignore_sigint: bool = False) -> None:
    """A worker's start-up: die with ``parent_pid`` (first: nothing may outlive a killed
    parent), ignore SIGINT when the parent handles Ctrl-C, apply the thread plan."""
    if parent_pid is not None:
        die_with_parent(parent_pid)
    if ignore_sigint:
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        except (ValueError, OSError):
            pass
    plan.apply()


def fault_hooks(path: str) -> None:
    """Test-only fault injection (see the module docstring)."""
    name = Path(path).name
    if name and os.environ.get("FER_VIDEO_TEST_CRASH_ON") == name:
        os._exit(1)
    if name and os.environ.get("FER_VIDEO_TEST_SLEEP_ON") == name:
        time.sleep(float(os.environ.get("FER_VIDEO_TEST_SLEEP_S", "600")))


def run_one(index: int, job, out_root: str, settings: "Settings", overwrite: bool,
            plan: "ThreadPlan", announce: Optional[Callable[[int], None]] = None,
            progress=None) -> "JobResult":
    """One job in a worker: models loaded (once per process), ``announce(index)``, the job."""
    from ..job import load_models, run_job

    try:
        load_models(settings)          # a SetupError surfaces from run_job() itself
    except Exception:
        pass
    if announce is not None:
        announce(index)
    fault_hooks(job.path)
    return run_job(job.path, out_root, settings, out_subdir=job.out_subdir, overwrite=overwrite,
                   rel_path=getattr(job, "rel", None), progress=progress, threads=plan)
