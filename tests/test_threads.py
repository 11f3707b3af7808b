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
    assert plan_threads(2, 1) == ThreadPlan(classify_threads=1)
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
