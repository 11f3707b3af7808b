"""Executors: how a batch's per-input jobs are run. One contract (:mod:`.base`), one file
per engine, one line per engine in ``EXECUTORS``; ``fer-video analyze --executor`` offers
exactly these names.

* ``local`` (default): ``inline`` for ``--jobs 1``, ``processes`` with ``--jobs N`` or
  ``--timeout``;
* ``inline``: in this process (:mod:`.inline`);
* ``processes``: worker processes on this machine (:mod:`.processes`);
* ``ray``: one task per input on a Ray cluster (:mod:`.ray_tasks`; Ray imported only then).

Every engine runs :func:`fer_video.job.run_job` per input and returns
:class:`fer_video.job.JobResult` s in input order, so the reports are the same whichever
runs them.
"""
from __future__ import annotations

from ..errors import UsageError
from .base import FLAGS, Executor, Options
from .inline import Inline, Local
from .processes import Processes
from .ray_tasks import Ray

EXECUTORS: dict[str, type[Executor]] = {
    "local": Local,
    "inline": Inline,
    "processes": Processes,
    "ray": Ray,
}
DEFAULT = "local"

__all__ = ["DEFAULT", "EXECUTORS", "Executor", "Options", "get"]


def get(name: str, options: Options) -> Executor:
    """The engine that runs ``name`` with these options (``resolve``d), its options checked
    (``UsageError``: an unknown name or an option it does not take; its own ``check`` may
    raise a ``SetupError``)."""
    if name not in EXECUTORS:
        raise UsageError(f"--executor must be one of {', '.join(EXECUTORS)} (got {name!r})")
    executor = EXECUTORS[name]()
    extra = sorted(options.given() - executor.accepts, key=list(FLAGS).index)
    if extra:
        takers = [n for n, cls in EXECUTORS.items() if set(extra) <= cls.accepts]
        flags = " and ".join(FLAGS[k] for k in extra)
        where = " or ".join(f"--executor {n}" for n in takers) or "no executor"
        raise UsageError(f"{flags} go{'es' if len(extra) == 1 else ''} with {where}")
    executor.check(options)
    return executor.resolve(options)
