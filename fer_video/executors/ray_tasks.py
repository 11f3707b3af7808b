"""One Ray task per input on a Ray cluster (``fer-video analyze --executor ray``).

The same per-video job as every other executor (:func:`fer_video.job.run_job`), so the
reports are byte-identical to ``--jobs 1`` apart from timings. Design:

* One Ray *task* per video, ``num_cpus=1`` (one torch, face-detection and decoding thread)
  and, when the cluster has GPUs, ``num_gpus=--gpus-per-task`` (default 0.25: four videos
  share a GPU). ``max_calls=0`` keeps worker processes alive between tasks, so a worker
  loads the models once (``job.load_models``' per-process cache), not once per video.
* At most ``max_in_flight`` tasks are submitted at a time (default: as many as the
  cluster's CPUs/GPUs can run at once), so results, progress and ``--timeout`` follow the
  videos actually running, and Ctrl-C has little to cancel.
* A task tells a small actor when its models are loaded; ``--timeout`` counts from then,
  as with ``--jobs`` (a worker's start-up does not count). A task past its time is
  force-cancelled (Ray kills its worker process) and the video marked failed.
* A worker that dies (``os._exit``, a signal, Ray's out-of-memory killer, a lost node)
  fails only its video: "worker process died (...)". Tasks are never retried here: a
  second run of the same command retries what failed (complete reports are skipped).
* A driver that dies (SIGKILL, the OOM killer) takes its tasks with it: Ray ends a dead
  driver's job and kills its workers (~2 s, measured with Ray 2.60). A local instance this
  run started also loses its GCS and raylet with the driver, and a watchdog
  (:mod:`.reaper`) kills the raylet's agents, which Ray left alive for minutes.
* Token authentication (Ray >= 2.59): connecting to a cluster with ``--address`` sends
  the token Ray finds (``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH``, ``~/.ray/auth_token``)
  unless ``RAY_AUTH_MODE`` says otherwise: ``ray start --head`` enables authentication
  whenever such a token exists, and plain ``ray.init(address=...)`` would not send it.
* Paths: a task runs in the driver's working directory (``chdir``), so relative paths in
  reports match the single-process run. On a multi-node cluster, inputs and ``--out``
  must be on a filesystem every node mounts at the same path, and fer-video must be
  installed on every node.

``FER_VIDEO_*`` environment variables of the driver are passed to the tasks (the test
hooks of :mod:`fer_video.executors.worker` use them). Ray is imported only when this
executor runs: without it, ``--executor ray`` is a one-line set-up error (exit 3).
"""
from __future__ import annotations

import logging
import os
import time
from typing import Optional, Sequence

from ..errors import SetupError, UsageError
from .base import Executor, Options
from .worker import run_one, start_worker

DEFAULT_GPUS_PER_TASK = 0.25
RAY_HINT = "pip install 'fer-video[ray]' (or: pip install 'ray[default]>=2.9')"


def import_ray():
    """``import ray``, or a SetupError saying how to get it."""
    try:
        import ray
    except ImportError:
        raise SetupError(f"--executor ray needs Ray, which is not installed: {RAY_HINT}") from None
    return ray


# ---------------------------------------------------------------- worker side

def ray_task(index: int, job, out_root: str, settings, overwrite: bool, cwd: str, start_log):
    """One input in a Ray worker process (reused between tasks: models load once)."""
    from ..job import JobResult
    from ..threads import plan_threads

    plan = plan_threads(cores=1, workers=1)   # a task asks Ray for one CPU
    start_worker(plan)                        # Ray's raylet owns the worker's life and Ctrl-C
    if not os.path.isdir(cwd):
        return JobResult.failed(job.path, f"working directory {cwd} does not exist on this Ray "
                                "node (use paths on a filesystem every node mounts)",
                                time.perf_counter())
    os.chdir(cwd)
    announce = None if start_log is None else start_log.started.remote
    return run_one(index, job, out_root, settings, overwrite, plan, announce)


class StartLog:
    """Which tasks have their models loaded and are analysing (for --timeout)."""

    def __init__(self):
        self._items: list[int] = []

    def started(self, index: int) -> None:
        self._items.append(index)

    def drain(self) -> list[int]:
        items, self._items = self._items, []
        return items


# ---------------------------------------------------------------- driver side

def _check_reachable(address: str, wait_s: float = 10.0) -> None:
    """ray.init retries an unreachable HOST:PORT for ever: try the port first, fail in one line."""
    import socket

    target = address[len("ray://"):] if address.startswith("ray://") else address
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        return                                     # "auto", "local", or Ray's own error
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=wait_s).close()
    except OSError as exc:
        raise SetupError(f"cannot connect to the Ray cluster at {address}: "
                         f"{exc.strerror or type(exc).__name__}") from None


def _ray_token_available() -> bool:
    """Whether Ray can find an authentication token (its env variables or ~/.ray/auth_token)."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return True
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or os.path.join(os.path.expanduser("~"), ".ray", "auth_token")
    return os.path.isfile(path)


def _client_token_mode() -> None:
    """RAY_AUTH_MODE=token for this process, with Ray's cached config refreshed (Ray reads
    the variable once, when it is imported)."""
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available)
    except ImportError:        # Ray before 2.59: no default token authentication to meet
        return
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def _init(ray, address: Optional[str]):
    """Connect to (or start) a cluster. Returns None when Ray was already initialised by the
    caller, else what to hand to :func:`_shutdown` at the end (this call started or
    connected it): the watchdog of a new local instance (:mod:`.reaper`), or True."""
    if ray.is_initialized():
        return None
    env = {k: v for k, v in os.environ.items() if k.startswith("FER_VIDEO_")}
    # As Ray does, RAY_ADDRESS stands in for a missing --address. Otherwise "local" starts a
    # new instance: plain ray.init() would join whatever cluster /tmp/ray/ray_current_cluster
    # names, and wait for ever if that one is gone.
    address = address or os.environ.get("RAY_ADDRESS") or None
    kwargs = dict(address=address or "local", include_dashboard=False, log_to_driver=False,
                  logging_level=logging.ERROR, configure_logging=True)
    if env:
        kwargs["runtime_env"] = {"env_vars": env}
    reaper = True
    if address:
        _check_reachable(address)
        # Since Ray 2.59 `ray start --head` turns token authentication on whenever a token
        # exists (a local ray.init() writes ~/.ray/auth_token), but ray.init(address=...)
        # sends the token only when RAY_AUTH_MODE=token: connecting to a cluster on this
        # machine failed ("InvalidAuthToken") after any earlier local run. A client in token
        # mode also connects to a cluster without authentication (tried with Ray 2.60).
        if "RAY_AUTH_MODE" not in os.environ and _ray_token_available():
            _client_token_mode()
    else:
        from . import reaper as reaper_mod

        reaper = reaper_mod.start() or True
    try:
        try:
            ray.init(**kwargs)
        except BaseException:
            if reaper is not True:
                reaper.done()
            raise
    except ConnectionError as exc:
        where = address or "a new local cluster"
        raise SetupError(f"cannot connect to the Ray cluster at {where}: "
                         f"{' '.join(str(exc).split())[:300]}") from None
    except ValueError as exc:     # e.g. a malformed address
        raise UsageError(f"--address {address!r}: {' '.join(str(exc).split())[:300]}") from None
    return reaper


def _shutdown(ray, owned) -> None:
    if owned is None:
        return
    ray.shutdown()
    if owned is not True:
        owned.done()


def _died_reason(exc: BaseException) -> str:
    # Ray's text ("connection error code 2", ...) says nothing reliable about the process's own
    # exit status, so only the kind of failure is kept; Ray's logs on the node have the rest.
    return f"worker process died ({type(exc).__name__})"


def task_resources(cluster: dict, device: str, gpus_per_task: Optional[float]) -> tuple[float, int]:
    """(GPUs each task asks for, tasks the cluster can run at once) from
    ``ray.cluster_resources()``: one CPU per task, and a share of a GPU when there are GPUs
    and the device is not forced to the CPU."""
    cpus = max(1, int(cluster.get("CPU", 1)))
    gpus = float(cluster.get("GPU", 0))
    per_gpu = 0.0
    if gpus > 0 and device != "cpu":
        per_gpu = DEFAULT_GPUS_PER_TASK if gpus_per_task is None else float(gpus_per_task)
    slots = cpus if per_gpu <= 0 else min(cpus, max(1, int(gpus / per_gpu + 1e-9)))
    return per_gpu, slots


class Ray(Executor):
    """Every job as a Ray task; results in input order.

    ``options.address``: as ``ray.init`` takes it (``"auto"``: the running cluster; ``None``:
    the ``RAY_ADDRESS`` environment variable if set, else a new local instance for this
    call, stopped at the end, never an existing one). ``options.jobs``: tasks in flight
    (default: as many as the cluster can run at once). ``options.gpus_per_task``: see
    :func:`task_resources`."""
    help = "one task per input on a Ray cluster, same reports (needs pip install 'fer-video[ray]')"
    accepts = frozenset({"jobs", "timeout", "address", "gpus_per_task"})

    def check(self, options: Options) -> None:
        import_ray()        # a missing extra is a set-up error before any work starts

    def run(self, jobs: Sequence, out_root, settings, options: Options) -> list:
        return _run(jobs, out_root, settings, options)


def _run(jobs: Sequence, out_root, settings, options: Options) -> list:
    ray = import_ray()
    from ray.exceptions import GetTimeoutError, RayError, RayTaskError, TaskCancelledError

    from ..job import JobResult

    address, max_in_flight, timeout = options.address, options.jobs, options.timeout
    gpus_per_task = options.gpus_per_task

    n = len(jobs)
    results: list = [None] * n
    if n == 0:
        return results
    owned = _init(ray, address)
    try:
        per_gpu, slots = task_resources(ray.cluster_resources(), settings.device, gpus_per_task)
        in_flight_max = max(1, min(n, int(max_in_flight) if max_in_flight else slots))

        task = ray.remote(num_cpus=1, num_gpus=per_gpu, max_retries=0, max_calls=0)(ray_task)
        start_log = ray.remote(num_cpus=0)(StartLog).remote()
        cwd = os.getcwd()
        out_root = str(out_root)
        pending = list(range(n))[::-1]
        running: dict = {}            # ObjectRef -> job index
        started_at: dict = {}         # job index -> driver's monotonic time its analysis began

        def finish(i: int, result) -> None:
            results[i] = result
            options.done(i, result)

        def fail(i: int, reason: str) -> None:
            result = JobResult.failed(jobs[i].path, reason, time.perf_counter())
            if i in started_at:
                result.row.wall_s = max(0.0, time.monotonic() - started_at[i])
            finish(i, result)

        try:
            while pending or running:
                while pending and len(running) < in_flight_max:
                    i = pending.pop()
                    ref = task.remote(i, jobs[i], out_root, settings, options.overwrite, cwd,
                                      start_log)
                    running[ref] = i
                ready, _ = ray.wait(list(running), num_returns=1, timeout=0.2)
                try:
                    for i in ray.get(start_log.drain.remote(), timeout=10):
                        started_at.setdefault(i, time.monotonic())
                except GetTimeoutError:
                    pass
                for ref in ready:
                    i = running.pop(ref)
                    try:
                        result = ray.get(ref)
                    except RayTaskError as exc:            # a Python exception inside the job
                        cause = getattr(exc, "cause", None)
                        if isinstance(cause, (SetupError, UsageError)):
                            raise cause from None
                        fail(i, " ".join(str(cause or exc).split())[:300])
                        continue
                    except TaskCancelledError:
                        fail(i, "cancelled")
                        continue
                    except RayError as exc:               # the worker (or its node) died
                        fail(i, _died_reason(exc))
                        continue
                    finish(i, result)
                if timeout is not None:
                    now = time.monotonic()
                    for ref, i in list(running.items()):
                        if i in started_at and now - started_at[i] > timeout:
                            ray.cancel(ref, force=True)     # kills the worker process
                            del running[ref]
                            fail(i, f"timed out after {timeout:g} s")
        except BaseException:
            for ref in running:
                try:
                    ray.cancel(ref, force=True)
                except Exception:
                    pass
            raise
        return results
    finally:
        _shutdown(ray, owned)
