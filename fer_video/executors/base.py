"""The contract every executor keeps (one file per engine, one line in the registry).

An executor is a class: ``run(jobs, out_root, settings, options) -> list[JobResult]`` runs
:func:`fer_video.job.run_job` once per job (a :class:`fer_video.batch.Job`: ``path``,
``out_subdir``, ``rel``) and returns one :class:`~fer_video.job.JobResult` per job, in input
order. It must:

* fail only the input concerned when a worker dies or runs past ``options.timeout``
  (``JobResult.failed(path, reason, t0)``) and go on with the others;
* call ``options.on_done(index, result)`` as each job ends (in the calling process), and
  ``options.on_progress(index, done, total)`` if it can follow a job's frames (``progress``);
* let ``SetupError``/``UsageError`` raised by a job, and KeyboardInterrupt, propagate,
  with its workers stopped;
* start its workers with :func:`fer_video.executors.worker.start_worker` (thread plan,
  death with the parent) and run each job with :func:`~fer_video.executors.worker.run_one`.

``accepts`` names the :class:`Options` fields it takes (others given are a usage error
before any work starts); ``check`` may raise a set-up error early (a missing library).
summary.csv, index.html and the progress display stay the batch's job.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, ClassVar, Optional, Sequence

if TYPE_CHECKING:
    from ..job import JobResult
    from ..settings import Settings


@dataclass(frozen=True)
class Options:
    """How to run a batch (the analyze options that are not settings)."""
    overwrite: bool = False
    jobs: Optional[int] = None              # workers / tasks in flight (None: the engine's default)
    timeout: Optional[float] = None         # seconds per input once its worker has started it
    address: Optional[str] = None           # a cluster to use (Ray)
    gpus_per_task: Optional[float] = None   # GPU share each task asks for (Ray)
    on_done: Optional[Callable[[int, "JobResult"], None]] = None
    on_progress: Optional[Callable[[int, float, float], None]] = None

    def given(self) -> set[str]:
        """The engine options set to something other than "as usual" (``--jobs 1`` is usual)."""
        names = {k for k in ("timeout", "address", "gpus_per_task") if getattr(self, k) is not None}
        if self.jobs not in (None, 1):
            names.add("jobs")
        return names

    def done(self, index: int, result: "JobResult") -> None:
        if self.on_done is not None:
            self.on_done(index, result)


FLAGS = {"jobs": "--jobs", "timeout": "--timeout", "address": "--address",
         "gpus_per_task": "--gpus-per-task"}


class Executor:
    help: ClassVar[str] = ""                     # one line for analyze --help
    accepts: ClassVar[frozenset[str]] = frozenset()   # Options fields it takes
    progress: ClassVar[bool] = False             # calls on_progress

    def check(self, options: Options) -> None:
        """Raise a SetupError/UsageError before any input is analysed (default: nothing)."""

    def resolve(self, options: Options) -> "Executor":
        """The engine that will run these options (an executor that picks one: ``local``)."""
        return self

    def run(self, jobs: Sequence, out_root: str | os.PathLike, settings: "Settings",
            options: Options) -> list["JobResult"]:
        raise NotImplementedError
