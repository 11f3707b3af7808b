"""In this process, one input after the other (``--jobs 1``, the default)."""
from __future__ import annotations

from typing import Sequence

from .base import Executor, Options


class Inline(Executor):
    help = "in this process, one input after the other"
    progress = True

    def run(self, jobs: Sequence, out_root, settings, options: Options) -> list:
        from ..job import run_job
        from ..threads import plan_threads

        plan = plan_threads(workers=1)      # all of this process's cores
        results = []
        for i, job in enumerate(jobs):
            result = run_job(job.path, out_root, settings, out_subdir=job.out_subdir,
                             overwrite=options.overwrite, progress=_progress_of(i, options),
                             rel_path=getattr(job, "rel", None), threads=plan)
            results.append(result)
            options.done(i, result)
        return results


class Local(Executor):
    """This machine: in this process, or in worker processes with ``--jobs N`` (N > 1) or
    a ``--timeout`` (which needs a worker to kill)."""
    help = "this machine: in this process, or in worker processes with --jobs N or --timeout"
    accepts = frozenset({"jobs", "timeout"})

    def resolve(self, options: Options) -> Executor:
        from .processes import Processes

        return Processes() if options.given() else Inline()

    def run(self, jobs: Sequence, out_root, settings, options: Options) -> list:
        return self.resolve(options).run(jobs, out_root, settings, options)


def _progress_of(index: int, options: Options):
    """run_job's progress callback for job ``index``: ``options.on_progress`` with its index."""
    if options.on_progress is None:
        return None
    return lambda done, total: options.on_progress(index, done, total)
