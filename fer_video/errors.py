"""Errors a user can cause, each with a one-line message and a documented exit code.

Exit codes (also in README and ``fer-video --help``):
  0  every input succeeded (a video with no faces is a success)
  1  at least one input failed (unreadable, corrupt, no video stream, ...); the others completed
  2  usage error: bad option value, or the path given does not exist, or --out is not a folder
  3  set-up error: model checkpoint missing/invalid, a dependency missing, weights unavailable,
     no file can be created in --out
  70 internal error (a bug): one line naming a crash log that holds the traceback
  130 interrupted (Ctrl-C); completed reports are kept, the unfinished one is not written
"""
from __future__ import annotations

EXIT_OK = 0
EXIT_INPUT_FAILED = 1
EXIT_USAGE = 2
EXIT_SETUP = 3
EXIT_INTERNAL = 70          # sysexits.h EX_SOFTWARE
EXIT_INTERRUPTED = 130


class FerVideoError(Exception):
    """Base class: ``str(err)`` is the one-line message shown to the user."""
    exit_code = EXIT_INPUT_FAILED


class InputError(FerVideoError):
    """An input file cannot be analysed (missing, empty, corrupt, not a video, no video stream)."""
    exit_code = EXIT_INPUT_FAILED

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class UsageError(FerVideoError):
    exit_code = EXIT_USAGE


class SetupError(FerVideoError):
    """Model, dependency or environment problem: nothing can be analysed until it is fixed."""
    exit_code = EXIT_SETUP
