"""The ``fer-video`` command line.

Kept light at import: heavy libraries (torch, PyAV, pandas, rich) load only when a
command runs, so ``--help`` and ``--version`` answer at once.
"""
from __future__ import annotations

import argparse
import gc
import sys
from typing import Optional, Sequence

from . import __version__
from .atomic import display_text
from .errors import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_USAGE, FerVideoError
from .settings import add_settings_options, settings_from_args

PROG = "fer-video"

EXIT_CODES = """\
exit codes:
  0    every input succeeded (a video with no faces is a success)
  1    at least one input failed (unreadable, corrupt, no video stream, ...); the others completed
  2    usage error: bad option value, or the path given does not exist, or --out is not a folder
  3    set-up error: model checkpoint missing or invalid, a dependency missing, --out not writable
  70   internal error (a bug in fer-video): one line naming a crash log with the details
  130  interrupted (Ctrl-C); completed reports are kept, the unfinished one is not written
"""

MAIN_EPILOG = f"""\
examples:
  fer-video analyze movie.mp4                   # one video -> reports/movie/
  fer-video analyze videos/ --recursive         # every video and image in a folder tree
  fer-video analyze photo.jpg                   # a still image is a one-frame video
  fer-video analyze --help                      # all analysis options

{EXIT_CODES}"""

ANALYZE_EPILOG = f"""\
examples:
  fer-video analyze movie.mp4
  fer-video analyze videos/ --recursive --out results/
  fer-video analyze interview.mov --start 60 --end 120 --fps 2
  fer-video analyze photo.jpg --model runs/exp1/best.safetensors --device cpu
  fer-video analyze videos/ --recursive --jobs 2 --timeout 1800   # 2 at a time, 30 min each max
  fer-video analyze videos/ --recursive --executor ray --address auto  # on a running Ray cluster

outputs (under --out, default reports/):
  <stem>/<stem>.frames.csv   one row per face per sampled frame, with class probabilities
  <stem>/<stem>.json         per-face summaries, emotion segments, settings, model, timings
  <stem>/<stem>.html         a self-contained report page
  summary.csv, index.html    for a folder: one row / link per input
  inputs inside sub-folders keep their relative path under --out, so equal names never collide.
  Rerunning skips inputs whose report is complete and was made with the same settings and
  model (use --overwrite to redo them).

{EXIT_CODES}"""


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line (exit code 2)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _finite_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if v != v or v == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number")
    return v


def _positive_float(text: str) -> float:
    if not _finite_float(text) > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number")
    return float(text)


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be an integer >= 1")
    return v


def _gpu_fraction(text: str) -> float:
    if not 0 <= _finite_float(text) <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be a number in [0, 1]")
    return float(text)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Facial emotion recognition for videos: finds every face, follows it "
                    "through the video and writes per-face emotion timelines as CSV, JSON and HTML.",
        epilog=MAIN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    a = sub.add_parser(
        "analyze", help="analyse videos, images or folders of them",
        description="Analyse videos and still images: detect faces, track them, classify their "
                    "emotions and write a report per input.",
        epilog=ANALYZE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    a.add_argument("paths", nargs="+", metavar="PATH", help="a video, an image, or a folder of them")
    a.add_argument("--out", metavar="DIR", default="reports",
                   help="output root folder (default: reports)")
    a.add_argument("-r", "--recursive", action="store_true",
                   help="also analyse files in sub-folders of a folder")
    a.add_argument("--overwrite", action="store_true",
                   help="redo inputs whose report is already complete (default: skip them)")
    a.add_argument("-q", "--quiet", action="store_true",
                   help="no progress bars or summary table; errors are still printed")
    add_settings_options(a, ("sampling", "faces", "model and hardware"))   # settings.Settings
    g = a.add_argument_group("parallelism and faults")
    g.add_argument("-j", "--jobs", type=_positive_int, default=None, metavar="N",
                   help="analyse N inputs at a time, each in its own worker process (model loaded "
                        "once per worker, torch threads split between workers, one face-detection "
                        "thread each); reports are the same as with 1. A worker that crashes fails "
                        "only its input. Default: 1, in this process. With --executor ray: at most "
                        "N tasks at a time (default: as many as the cluster can run)")
    g.add_argument("--timeout", type=_positive_float, default=None, metavar="S",
                   help="fail an input still running after S seconds (its worker process is "
                        "killed; the others go on). Runs inputs in worker processes even with "
                        "--jobs 1. Default: no limit")
    from .executors import DEFAULT, EXECUTORS

    g.add_argument("--executor", choices=list(EXECUTORS), default=DEFAULT,
                   help="; ".join(f"{name}: {cls.help}" for name, cls in EXECUTORS.items())
                        + f". Default: {DEFAULT}")
    g.add_argument("--address", default=None, metavar="ADDR",
                   help="Ray cluster to use, as ray.init takes it: 'auto' for the running cluster, "
                        "HOST:PORT, or ray://HOST:PORT. Default: $RAY_ADDRESS if set, else a new local "
                        "instance for this run")
    g.add_argument("--gpus-per-task", type=_gpu_fraction, default=None, metavar="F",
                   help="GPUs each Ray task requests when the cluster has GPUs (default: 0.25, "
                        "four inputs share a GPU; 0: CPU only)")
    add_settings_options(a, ("timelines",))
    a.set_defaults(func=cmd_analyze)

    from . import train_cli

    train_cli.register(sub)
    return parser


def cmd_analyze(args: argparse.Namespace) -> int:
    from .batch import run_batch

    return run_batch(args.paths, settings_from_args(args), out_root=args.out, recursive=args.recursive,
                     overwrite=args.overwrite, quiet=args.quiet, jobs=args.jobs,
                     timeout=args.timeout, executor=args.executor, address=args.address,
                     gpus_per_task=args.gpus_per_task)


def _interruptible() -> None:
    """Make SIGINT raise KeyboardInterrupt even if the parent started us with it ignored
    (as shells do for background jobs), so Ctrl-C / kill -INT always stops cleanly (130)."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        try:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        except (ValueError, OSError):
            pass


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; return its exit code (README's table). Every way it ends is
    one line on stderr at most: a usage, set-up or input error its message, Ctrl-C
    "interrupted", and anything unexpected (a bug) one line naming a crash log that holds
    the traceback (:mod:`fer_video.crash`), exit code 70; never a traceback."""
    try:
        return _main(argv)
    except (KeyboardInterrupt, SystemExit, BrokenPipeError):
        raise
    except BaseException as exc:      # the last resort: what _main did not expect
        from .crash import internal_error_line

        try:
            print(f"{PROG}: {internal_error_line(exc, 'the fer-video command')}", file=sys.stderr)
        except Exception:
            pass
        return EXIT_INTERNAL


def _main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:     # --help, --version, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    _interruptible()
    try:
        return int(func(args) or 0)
    except FerVideoError as exc:
        print(display_text(f"{PROG}: error: {' '.join(str(exc).split())}"), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 0
    except Exception as exc:          # a bug: one line and a crash log, never a traceback
        from .crash import internal_error_line

        print(f"{PROG}: {internal_error_line(exc, 'the fer-video command')}", file=sys.stderr)
        return EXIT_INTERNAL


def run(argv: Optional[Sequence[str]] = None) -> int:
    """The process entry (the ``fer-video`` console script and ``cli.py``): :func:`main`,
    then the collector told to leave every live object alone, then the quick exit
    (:func:`exit_now`), which returns only where it must not be taken.

    Why: after ``import torch`` the heap holds ~200k long-lived objects, and Python's exit
    traverses them in full collections that find nothing worth freeing. ``gc.freeze()``
    moves them out of the collector's sight: ``python -c "import torch"`` exits in 1.41-1.44 s
    against 1.93-2.19 s, and ``analyze`` of an 8-s talking head takes 2.64-2.86 s against
    3.20-3.38 s (whole process, 3 runs each, idle 2-core machine). Safe at this point:
    every report is written and closed before :func:`main` returns. Not in :func:`main`,
    which tests and library users call in a process that goes on."""
    try:
        code = main(argv)
    finally:
        gc.freeze()
    exit_now(code)
    return code


def exit_now(code: int) -> None:
    """End the process at once with ``code`` after what an exit must do: the atexit
    handlers (temporary folders, Ray, multiprocessing, logging) and flushing stdout and
    stderr. Skipped is the interpreter's teardown of every module and object, and the C++
    libraries' static destructors: ~0.15-0.2 s after torch (start-up ended this way
    1.69-1.98 s against 1.85-2.14 s ended by ``gc.freeze()`` alone, 4 runs each). Returns
    instead, for the normal exit, while another non-daemon thread is alive (the
    interpreter would wait for it) or a tracer or profiler is set (cProfile and coverage
    write their results at the normal exit)."""
    import atexit
    import os
    import threading

    if sys.gettrace() is not None or sys.getprofile() is not None:
        return
    main_thread = threading.main_thread()
    if any(t is not main_thread and not t.daemon and t.is_alive() for t in threading.enumerate()):
        return
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:        # a closed pipe: nothing more can be said there
            pass
    os._exit(code)


if __name__ == "__main__":
    raise SystemExit(run())
