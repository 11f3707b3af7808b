"""Analyse one file or whole folders: discovery, output layout, progress, resume, summary.

Layout under the output root (``--out``, default ``reports/``):

* an input ``movie.mp4`` given directly -> ``<out>/movie/movie.{frames.csv,html,json}``;
* an input found in a folder argument at ``sub/dir/clip.mp4`` -> ``<out>/sub/dir/clip/...``
  (the relative sub-path is mirrored, so equal names in different folders never collide);
* two inputs that would still share a folder (``clip.mp4`` and ``clip.mov``) get
  ``clip_mp4`` / ``clip_mov``;
* a stem too long to name the report files (:func:`report_stem`) is shortened, with a
  hash of the whole stem, so that long names still get reports and never share one.

For a folder (or several inputs) ``summary.csv`` and ``index.html`` are written at the
output root. A report is complete when its JSON, written last, exists: a rerun skips
complete inputs unless ``overwrite``, so an interrupted batch resumes where it stopped.
"""
from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional, Sequence

from .atomic import display_text
from .errors import EXIT_INPUT_FAILED, EXIT_INTERRUPTED, EXIT_OK, SetupError, UsageError
from .media import IMAGE_EXTENSIONS, MEDIA_EXTENSIONS, VIDEO_EXTENSIONS  # noqa: F401  (re-exported)
from .report_folder import MAX_STEM_BYTES, report_stem  # noqa: F401  (re-exported)
from .settings import Settings


def _subdir(rel: Path) -> str:
    """The output sub-folder of an input at ``rel`` (relative to its folder argument)."""
    return (rel.parent / report_stem(rel.stem)).as_posix()


@dataclass(frozen=True)
class Job:
    path: str            # the input, as found
    out_subdir: str      # posix path under the output root; its last part is the file stem
    rel: str = ""        # its path relative to the folder argument (a file argument: its name)


def _is_media(p: Path) -> bool:
    return p.suffix.lower() in MEDIA_EXTENSIONS and not p.name.startswith(".")


def discover(paths: Sequence[str | os.PathLike], recursive: bool = False,
             out_root: str | os.PathLike | None = None) -> tuple[list[Job], bool]:
    """Inputs to analyse, in a deterministic order, and whether this is a batch.

    A file argument is taken whatever its extension (a bad one fails with a reason); a
    folder contributes every entry named like a video or image (sorted; sub-folders with
    ``recursive``; hidden files and the output folder are skipped). An entry so named
    that is not a regular file (a FIFO, device or socket, a broken or looping symbolic
    link, a folder not walked: any folder without ``recursive``, a linked one with it) is
    still an input: it fails with its reason in ``summary.csv`` instead of silently going
    missing. A missing path -> ``UsageError`` (a broken symbolic link given as an argument
    is an input that fails).
    """
    out_abs = Path(out_root).resolve() if out_root is not None else None
    found: list[tuple[str, str, str]] = []     # (path, wanted subdir, path relative to its root)
    batch = len(paths) > 1
    for arg in paths:
        p = Path(arg)
        if not os.path.lexists(p):
            raise UsageError(f"no such file or directory: {arg}")
        if p.is_dir():
            batch = True
            if recursive:
                candidates = []
                for root, dirs, files in os.walk(p):
                    root_p = Path(root)
                    dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                                     and (out_abs is None or (root_p / d).resolve() != out_abs))
                    # a symbolic link to a folder is listed in dirs but not walked: it is an
                    # input like any other entry named like a video (and fails as a folder)
                    candidates.extend(root_p / f for f in files)
                    candidates.extend(root_p / d for d in dirs if (root_p / d).is_symlink())
            else:
                candidates = [c for c in p.iterdir()
                              if out_abs is None or Path(os.path.realpath(c)) != out_abs]
            media = sorted((c for c in candidates if _is_media(c)),
                           key=lambda c: c.relative_to(p).as_posix())
            for c in media:
                rel = c.relative_to(p)
                found.append((str(c), _subdir(rel), rel.as_posix()))
        else:
            found.append((str(p), report_stem(p.stem), p.name))
    if not found:
        where = ", ".join(str(a) for a in paths)
        hint = "" if recursive else " (use --recursive to search sub-folders)"
        raise UsageError(f"no video or image files found in {where}{hint}")
    return _assign_subdirs(found), batch


def _assign_subdirs(found: list[tuple[str, str, str]]) -> list[Job]:
    """Make every output folder unique (case-insensitively), deterministically."""
    def key(s: str) -> str:
        return s.casefold()

    counts: dict[str, int] = {}
    for _, sub, _ in found:
        counts[key(sub)] = counts.get(key(sub), 0) + 1
    jobs: list[Job] = []
    used: set[str] = set()
    seen_paths: set[str] = set()
    for path, sub, rel in found:
        real = os.path.realpath(path)
        if real in seen_paths:          # the same file named twice: analyse it once
            continue
        if os.path.isfile(real):        # (every other entry fails on its own, with its name)
            seen_paths.add(real)
        if counts[key(sub)] > 1:
            ext = Path(path).suffix.lower().lstrip(".")
            sub = f"{sub}_{ext}" if ext else sub
        candidate, n = sub, 2
        while key(candidate) in used:
            candidate = f"{sub}_{n}"
            n += 1
        used.add(key(candidate))
        jobs.append(Job(path=path, out_subdir=candidate, rel=rel))
    return jobs


def batch_root(paths: Sequence[str | os.PathLike]) -> Optional[str]:
    """The folder ``index.html`` lists the inputs relative to (and names in its header):
    a folder argument itself, a file argument's folder; for several arguments the deepest
    folder holding them all. Absolute, lexical (symbolic links are not resolved); None
    when the arguments have no folder in common (different drives on Windows)."""
    folders = [os.path.abspath(a) if os.path.isdir(a) else os.path.dirname(os.path.abspath(a))
               for a in paths]
    try:
        return os.path.commonpath(folders) if folders else None
    except ValueError:
        return None


def check_out_root(out_root: str | os.PathLike, is_batch: bool) -> None:
    """Refuse, before anything is analysed, an output root that cannot take the reports.

    ``out_root`` (or, while it does not exist yet, its nearest existing parent, where it
    would be created) must be a folder in which this process can create a file: a test
    file is created and removed at once, which tells the truth where permission bits do
    not (root, read-only mounts, /proc). For a batch, ``summary.csv`` and ``index.html``
    must not be folders. Raises ``UsageError`` (exit 2) when ``out_root`` or a parent
    exists but is not a folder, or a batch file's name is taken by a folder; ``SetupError``
    (exit 3) when no file can be created there. Nothing is left behind.
    """
    out = Path(out_root)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out_root}: exists and is not a folder")
    where = out
    while not where.exists() and where.parent != where:
        where = where.parent
    if where.exists() and not where.is_dir():
        raise UsageError(f"--out {out_root}: {where} is not a folder")
    try:
        fd, test = tempfile.mkstemp(prefix=".fer-video-write-test.", dir=where)
        os.close(fd)
        os.unlink(test)
    except OSError as exc:
        raise SetupError(f"--out {out_root}: cannot create files in {where} "
                         f"({exc.strerror or type(exc).__name__})") from None
    if is_batch:
        for name in ("summary.csv", "index.html"):
            if (out / name).is_dir():
                raise UsageError(f"--out {out_root}: {out / name} is a folder")


def _fmt_s(seconds: float) -> str:
    return f"{seconds:.1f} s"


def _console(**kw):
    """A rich ``Console`` that goes quiet when its stream's reader goes away (``| head``):
    the batch goes on and its exit code says how the inputs went. rich's own reaction,
    ``SystemExit(1)``, stopped the batch at the next line and said "an input failed"."""
    from rich.console import Console

    class QuietOnClosedPipe(Console):
        def on_broken_pipe(self) -> None:
            self.quiet = True
            stream = sys.stderr if self.stderr else sys.stdout
            try:                                 # later writes (and the exit's flush) go nowhere
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, stream.fileno())
                os.close(devnull)
            except (OSError, ValueError):
                pass

    return QuietOnClosedPipe(**kw)


def run_batch(paths: Sequence[str | os.PathLike], settings: Settings, *,
              out_root: str | os.PathLike = "reports", recursive: bool = False,
              overwrite: bool = False, quiet: bool = False, progress: Optional[bool] = None,
              jobs: Optional[int] = None, timeout: Optional[float] = None, executor: str = "local",
              address: Optional[str] = None, gpus_per_task: Optional[float] = None) -> int:
    """Analyse every input; return the exit code (0 all ok, 1 some failed, 130 interrupted).

    Set-up and usage errors (``SetupError``/``UsageError``) propagate: they concern every input.
    An output root that cannot take the reports is one, raised before any analysis
    (:func:`check_out_root`).
    ``progress``: show rich progress bars (default: when stderr is a terminal and not quiet).
    ``executor``: a name in :data:`fer_video.executors.EXECUTORS`; each runs the same
    per-input job, so reports are the same. ``local`` runs in this process, or with
    ``jobs`` > 1 (or a ``timeout``) that many inputs at a time in worker processes;
    ``timeout``: seconds per input before its worker is killed and the input marked failed.
    ``ray``: the inputs as tasks on a Ray cluster (``address`` as ``ray.init`` takes it, None
    starts a local one; ``jobs`` then caps the tasks in flight, None meaning as many as the
    cluster can run at once; ``gpus_per_task``).
    """
    from .executors import Options, get

    options = Options(overwrite=overwrite, jobs=int(jobs) if jobs else None, timeout=timeout,
                      address=address, gpus_per_task=gpus_per_task)
    engine = get(executor, options)      # a bad combination or a missing Ray: before any work
    out_root = Path(out_root)
    todo, is_batch = discover(paths, recursive=recursive, out_root=out_root)
    check_out_root(out_root, is_batch)       # before the first input, not after the last
    if os.environ.get("FER_VIDEO_TEST_INTERNAL_ERROR") == "batch":   # tests/test_cli.py only
        raise RuntimeError("test hook: an unexpected internal error in the batch runner")
    err = _console(stderr=True, highlight=False, soft_wrap=True)
    out = _console(highlight=False)
    show_bars = (not quiet) and (err.is_terminal if progress is None else progress)
    n = len(todo)
    counts = {"done": 0, "failed": 0}
    bars = overall = None
    current: dict[int, object] = {}        # job index -> its progress bar (engines that report it)

    def describe() -> str:
        return "inputs" + (f" ({counts['failed']} failed)" if counts["failed"] else "")

    def on_progress(i: int, done: float, total: float) -> None:
        if i not in current:
            current[i] = bars.add_task(f"  {display_text(Path(todo[i].path).name)}", total=None)
        bars.update(current[i], completed=round(done, 1),
                    total=round(total, 1) if total > 0 else None)

    def on_done(i: int, result) -> None:
        row = result.row
        counts["done"] += 1
        counts["failed"] += not result.ok
        if bars is not None:
            if i in current:
                bars.remove_task(current.pop(i))
            if overall is not None:
                bars.update(overall, advance=1, description=describe())
        if not result.ok:
            err.print(f"error: {display_text(row.input)}: {display_text(row.reason)}", markup=False,
                      highlight=False)
        elif not quiet and not show_bars:
            what = "skipped (report complete)" if result.reused else (
                f"{row.n_faces} face{'s' if row.n_faces != 1 else ''}"
                + (f" ({row.dominant})" if row.dominant else "") + f" in {_fmt_s(row.wall_s)}")
            err.print(f"[{counts['done']}/{n}] {display_text(row.input)}: {what} -> "
                      f"{display_text(str(out_root / row.report))}", markup=False, highlight=False)

    try:
        if show_bars:
            with _progress_bars(err) as bars:
                if n > 1 or not engine.progress:
                    overall = bars.add_task(describe(), total=n)
                results = engine.run(todo, out_root, settings, replace(
                    options, on_done=on_done, on_progress=on_progress if engine.progress else None))
        else:
            results = engine.run(todo, out_root, settings, replace(options, on_done=on_done))
    except KeyboardInterrupt:
        err.print(f"interrupted: {counts['done'] - counts['failed']}"
                  f" of {n} report(s) complete; run the same command again to resume",
                  markup=False)
        return EXIT_INTERRUPTED

    rows = [r.row for r in results]
    if is_batch:
        write_batch_index(out_root, rows, root=batch_root(paths))
    if not quiet:
        print_summary(out, rows, [r.reused for r in results], out_root, is_batch)
    return EXIT_OK if all(r.ok for r in results) else EXIT_INPUT_FAILED


def _progress_bars(console):
    """The rich progress display used for batches: label, bar, done/total, elapsed, ETA."""
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    # markup=False: the descriptions hold file names, and "[red]x.mp4" is a valid one
    return Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False)


def write_batch_index(out_root: str | os.PathLike, rows, root: Optional[str] = None) -> None:
    """summary.csv and index.html at the output root, each written atomically; an OSError
    (disk full, the folder removed meanwhile) is a one-line ``SetupError``. ``root``
    (:func:`batch_root`): index.html lists the inputs relative to it."""
    from . import report
    from .atomic import atomic_path

    out_root = Path(out_root)
    try:
        out_root.mkdir(parents=True, exist_ok=True)
        with atomic_path(out_root / "summary.csv") as tmp:
            report.write_summary_csv(tmp, rows)
        with atomic_path(out_root / "index.html") as tmp:
            report.write_index_html(tmp, rows, root=root)
    except OSError as exc:    # checked before the run; this is a disk filling up meanwhile
        raise SetupError(f"cannot write the summary in {out_root}: "
                         f"{exc.strerror or type(exc).__name__}") from None


def print_summary(console, rows, skipped, out_root: Path, is_batch: bool) -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table(title="fer-video summary", title_justify="left")
    table.add_column("input", overflow="fold")
    table.add_column("status")
    table.add_column("duration", justify="right")
    table.add_column("faces", justify="right")
    table.add_column("dominant emotion per face / reason", overflow="fold")
    for row, was_skipped in zip(rows, skipped):
        ok = row.status == "ok"
        status = ("[green]ok[/]" + (" (skipped)" if was_skipped else "")) if ok else "[red]failed[/]"
        # Names and reasons as Text, never as markup: ".../x[/red].mp4" is a valid path.
        table.add_row(Text(display_text(row.input)), status, _fmt_s(row.duration_s or 0.0) if ok else "",
                      str(row.n_faces) if ok else "",
                      Text((row.dominant.replace(";", " ") or "no face") if ok else display_text(row.reason)))
    console.print(table)
    failed = sum(1 for r in rows if r.status != "ok")
    console.print(f"{len(rows) - failed} ok, {failed} failed", markup=False, highlight=False)
    if is_batch:
        console.print(display_text(f"index: {out_root / 'index.html'}  summary: {out_root / 'summary.csv'}"),
                      markup=False, highlight=False)
    elif rows and rows[0].report:
        console.print(display_text(f"report: {out_root / rows[0].report}"), markup=False,
                      highlight=False)
