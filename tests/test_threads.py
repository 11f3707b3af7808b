"""ThreadPlan: one plan per process, made from the cores and the number of workers."""
from __future__ import annotations

import dataclasses

import pytest

from fer_video.threads import ThreadPlan, plan_threads


@pytest.mark.parametrize("cores", range(1, 17))
def test_threads_never_exceed_the_cores(cores):
    """Torch threads of every detection/classification thread that may run at once, plus
    decoding, summed over the workers, never exceed the cores."""
    for workers in range(1, cores + 1):
        plan = plan_threads(cores, workers)
        assert workers * plan.busy_threads() <= cores, (cores, workers, plan)
        assert plan.torch_threads >= 1 and plan.decode_threads == 1
        assert plan.for_device("cuda").busy_threads() <= plan.busy_threads()


def test_plans_by_share_of_cores():
    assert plan_threads(1, 1).inline
    assert plan_threads(8, 8).inline                       # one core each: every stage inline
    assert plan_threads(2, 1) == ThreadPlan(prefetch=True, classify_threads=1, permits=2)
    assert plan_threads(2, 1).busy_threads() == 2           # three threads, two permits
    assert plan_threads(3, 1) == ThreadPlan(prefetch=True, detect_threads=1, classify_threads=1)
    assert plan_threads(16, 1) == ThreadPlan(prefetch=True, detect_threads=2, classify_threads=1)
    assert plan_threads(16, 4) == plan_threads(4, 1)
    assert plan_threads(16, 1).for_device("cuda").detect_threads == 1
    assert plan_threads(16, 1).for_device("cpu").detect_threads == 2


def test_plan_is_a_frozen_picklable_value():
    import pickle

    plan = plan_threads(4, 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.detect_threads = 5          # type: ignore[misc]
    assert pickle.loads(pickle.dumps(plan)) == plan


def test_no_module_globals_for_threads_and_no_constructor_sets_them():
    """Thread behaviour is a value passed along, never a module global an executor changes."""
    import inspect

    from fer_video import decode, detect, pipeline

    for name in ("ONE_CORE", "DETECT_THREADS_CAP", "use_one_core"):
        assert not hasattr(pipeline, name)
    assert not hasattr(decode, "DECODE_THREADS")
    assert inspect.signature(detect.FaceDetector).parameters["num_threads"].default is None


def test_apply_sets_torch_threads_once():
    import torch

    before = torch.get_num_threads()
    try:
        ThreadPlan(torch_threads=1).apply()
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_permits_bound_the_threads_that_work_at_once():
    """A real 2-permit run: the caller plus two threads (the 2-core plan's decoder and
    classifier), each working only under a permit: never more than two at once, counting
    the caller; while the caller waits, its permit lets both threads work."""
    import threading
    import time

    from fer_video.threads import Permits

    permits = Permits(2)
    lock = threading.Lock()
    working, peak, threads_peak = [0], [0], [0]

    def count(d):
        with lock:
            working[0] += d
            peak[0] = max(peak[0], working[0])

    def unit():
        with permits.work():
            count(+1)
            with lock:
                threads_peak[0] = max(threads_peak[0], working[0] - caller_working[0])
            time.sleep(0.002)
            count(-1)

    caller_working = [1]
    permits.acquire()                                     # the caller's own
    count(+1)
    threads = [threading.Thread(target=lambda: [unit() for _ in range(30)]) for _ in range(2)]
    for t in threads:
        t.start()
    for _ in range(10):
        time.sleep(0.003)                                 # the caller works
        count(-1)                                         # ... then only waits
        caller_working[0] = 0
        with permits.waiting():
            time.sleep(0.005)
        caller_working[0] = 1
        count(+1)
    for t in threads:
        t.join()
    permits.release()
    assert peak[0] <= 2                   # the caller and the threads never exceed the permits
    assert threads_peak[0] == 2           # the caller's permit, given up, let both work
    with pytest.raises(ValueError):
        ThreadPlan(detect_threads=1, permits=2)
    assert ThreadPlan(prefetch=True, classify_threads=1).busy_threads() == 3


def test_a_ctrl_c_while_the_caller_waits_for_its_permit_back_is_not_hidden():
    """Ctrl-C can land while the caller waits to take its permit back (leaving ``waiting``):
    it then holds none, and the release at the end of the analysis must not raise over the
    interrupt (a BoundedSemaphore's "released too many times")."""
    from fer_video.threads import Permits

    permits = Permits(1)
    permits.acquire()
    real = permits._sem.acquire

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        with permits.waiting():
            permits._sem.acquire = interrupted        # the interrupt comes as it takes it back
    permits._sem.acquire = real
    permits.release()                                 # holds none: nothing given, no error
    permits.acquire()                                 # and the one permit is still there
    permits.release()
