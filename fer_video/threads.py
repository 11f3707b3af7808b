"""How one process spends its cores: a ``ThreadPlan``, made once, passed to the stages.

A plan is made from the cores the process may use and the number of workers sharing them
(:func:`plan_threads`), applied once where a process (or worker) starts
(:meth:`ThreadPlan.apply`: torch's intra-op thread count is process-wide), and handed to the
analysis (:func:`fer_video.pipeline.analyze_video`) and the decoder. No stage reads or
changes a module-level thread setting, and no constructor sets torch's thread count.

The invariant, checked by tests/test_threads.py for 1..16 cores and 1..cores workers:
``workers * plan.busy_threads() <= cores`` -- the torch threads of every detection and
classification thread that may run at once, plus decoding, never exceed the cores.

Nothing in a plan changes a result, only where and when work runs: detection results are
consumed in frame order, classification batches are formed the same way, and FFmpeg always
decodes with one thread (``decode_threads``; see ``probe.configure_decoder``: its frame threads
change what a damaged stream decodes to).
"""
from __future__ import annotations

import functools
import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass, replace


# Linux's CPU flags for bfloat16 in hardware (``predict.bf16_native``, ``job.arithmetic``).
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str] | None:
    """The CPU's feature flags as Linux lists them (``/proc/cpuinfo``), read once; None
    where there is no such list. No torch: a run that only reuses reports asks it too."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            flags = frozenset(next((ln for ln in f if ln.startswith("flags")), "").split())
    except OSError:
        return None
    return flags or None


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@dataclass(frozen=True)
class ThreadPlan:
    """Threads of one analysing process.

    torch_threads:    torch intra-op threads of every torch call (process-wide, set by
                      :meth:`apply`). One: MTCNN's many small ops run up to 15x slower with
                      two, and one is what every mode has run with so far.
    detect_threads:   detection batches in flight at once, each in its own thread; 0 runs
                      detection in the calling thread.
    classify_threads: 1 runs classification in its own thread, alongside detection; 0 runs
                      it in the calling thread.
    decode_threads:   FFmpeg threads per decoder (always 1, see the module docstring).
    prefetch:         decode ahead in a thread of its own (else one frame at a time, only
                      while the calling thread waits for it: a helper thread that never runs
                      alongside the caller, there for the stall guard, ``--stall-timeout``).
    permits:          at most this many of the plan's threads work at once (0: no bound
                      beyond the threads themselves): the caller, the decode thread and the
                      classification thread each hold one of these :class:`Permits` while
                      they work, and the caller gives its own up while it waits for a frame
                      or a result. So decoding ahead can use the core that classification
                      leaves idle without a third busy thread.
    """
    torch_threads: int = 1
    detect_threads: int = 0
    classify_threads: int = 0
    decode_threads: int = 1
    prefetch: bool = False
    permits: int = 0

    def __post_init__(self):
        if self.permits and self.detect_threads:
            raise ValueError("permits bound the decode and classification threads of a plan "
                             "that detects in the calling thread (detect_threads 0)")

    @property
    def inline(self) -> bool:
        """Every stage in the calling thread, one after the other (a one-core worker)."""
        return not self.prefetch and self.detect_threads == 0 and self.classify_threads == 0

    def busy_threads(self) -> int:
        """The most threads this plan keeps running at once: the torch threads of every
        thread that runs detection or classification, plus decoding, at most ``permits``
        threads' worth when that is set."""
        callers = self.detect_threads + self.classify_threads
        caller_torch = self.detect_threads == 0 or self.classify_threads == 0
        torch_busy = self.torch_threads * (callers + (1 if caller_torch else 0))
        if self.prefetch:
            busy = torch_busy + self.decode_threads
        else:
            # decoding in the calling thread alternates with that thread's own torch work
            own = self.torch_threads if caller_torch else 0
            busy = torch_busy - own + max(own, self.decode_threads)
        return min(busy, self.permits * self.torch_threads) if self.permits else busy

    def for_device(self, device: str) -> "ThreadPlan":
        """This plan for a detector on ``device``: one detection thread on a GPU (it
        serialises the work anyway)."""
        if str(device).startswith("cpu") or self.detect_threads <= 1:
            return self
        return replace(self, detect_threads=1)

    def apply(self, uses_torch: bool = True) -> None:
        """Set torch's intra-op threads for this process (once, where a process starts);
        ``uses_torch=False`` (the ONNX backend, whose sessions take their thread count
        each): nothing, and torch is not imported."""
        if not uses_torch:
            return
        import torch

        if torch.get_num_threads() != self.torch_threads:
            torch.set_num_threads(self.torch_threads)


class Permits:
    """The plan's ``permits`` for one analysis: a thread holds one while it works
    (:meth:`work`); the caller, which holds one throughout, gives it up while it only waits
    (:meth:`waiting`). With ``n`` = 0 both are no-ops."""

    def __init__(self, n: int = 0):
        self._sem = threading.BoundedSemaphore(n) if n > 0 else None
        self._held = threading.local()      # permits this thread holds

    def acquire(self) -> None:
        if self._sem is not None:
            self._sem.acquire()
            self._held.n = getattr(self._held, "n", 0) + 1

    def release(self) -> None:
        """Give back one of this thread's permits; none held (a Ctrl-C that came while it
        waited to take one back): nothing to give, and no error to hide the interrupt."""
        if self._sem is not None and getattr(self._held, "n", 0) > 0:
            self._held.n -= 1
            self._sem.release()

    @contextmanager
    def work(self):
        self.acquire()
        try:
            yield
        finally:
            self.release()

    @contextmanager
    def waiting(self):
        self.release()
        try:
            yield
        finally:
            self.acquire()


def plan_threads(cores: int | None = None, workers: int = 1) -> ThreadPlan:
    """The plan of each of ``workers`` processes sharing ``cores`` (default: this
    process's usable cores). Each worker gets ``cores // workers`` (at least one):

    * 1 core: every stage in the calling thread;
    * 2 cores: detection in the caller; classification in its own thread and decoding
      ahead in another, which take turns on the second core (2 ``permits``: the decoder
      works while classification waits for crops, and on the caller's core while the
      caller waits for a frame). Session 9's plan decoded in the caller between detection
      batches (bench/plan_ab.py: 27% less wall on the Pexels clip and 9% on the talking
      head than decoding in its own thread with detection and classification in the
      caller; identical predictions);
    * 3 cores: decoding, one detection thread and one classification thread;
    * 4 or more: decoding, two detection threads and one classification thread.
    """
    cores = usable_cores() if cores is None else int(cores)
    share = max(1, cores // max(1, int(workers)))
    if share == 1:
        return ThreadPlan()
    if share == 2:
        return ThreadPlan(prefetch=True, classify_threads=1, permits=2)
    if share == 3:
        return ThreadPlan(prefetch=True, detect_threads=1, classify_threads=1)
    return ThreadPlan(prefetch=True, detect_threads=2, classify_threads=1)
