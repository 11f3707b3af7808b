"""Crash logs: where an unexpected internal error's traceback goes instead of the screen.

A failure a user can cause has a one-line reason (``errors.py``). Anything else is a bug in
fer-video or a library: the user gets one line naming a crash log, and the log, a text file
under the system's temporary folder (``tempfile.gettempdir()``), holds the traceback, the
command line and the versions, for a bug report. Writing the log never raises.
"""
from __future__ import annotations

import datetime
import os
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Optional

PREFIX = "fer-video-crash-"


def write_crash_log(exc: BaseException, context: str = "") -> Optional[Path]:
    """Write ``exc``'s traceback (and ``context``: what was being done) to a new file
    ``fer-video-crash-<UTC time>-<pid>-<n>.log`` in the temporary folder; its path, or None
    if no file could be written there."""
    from . import __version__

    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    lines = [f"fer-video {__version__} crashed: an internal error, not a problem you caused.",
             f"time: {stamp}", f"pid: {os.getpid()}",
             f"python: {sys.version.split()[0]} on {sys.platform}",
             f"command: {' '.join(os.fsdecode(a) for a in sys.argv)!r}"]
    if context:
        lines.append(f"context: {context!r}")
    lines.append("")
    lines.extend(traceback.format_exception(type(exc), exc, exc.__traceback__))
    text = "\n".join(lines)
    try:
        fd, name = tempfile.mkstemp(prefix=f"{PREFIX}{stamp}-{os.getpid()}-", suffix=".log")
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as f:
            f.write(text)
        return Path(name)
    except OSError:
        return None


def internal_error_line(exc: BaseException, context: str = "") -> str:
    """The one line a user sees for an internal error: that it is one, and where its crash
    log is (never the exception's own text)."""
    log = write_crash_log(exc, context)
    where = f"details in {log}" if log is not None else "no crash log could be written"
    return f"internal error in fer-video (a bug, not a problem with the input); {where}"
