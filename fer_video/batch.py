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
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from .atomic import visible_text
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
    ``jobs`` > 1 (or a ``timeout``): analyse that many inputs at a time in worker processes
    (:mod:`fer_video.executors`); each runs the same per-video job, so reports are the same.
    ``timeout``: seconds per input before its worker is killed and the input marked failed.
    ``executor="ray"``: run the inputs as tasks on a Ray cluster (:mod:`fer_video.ray_executor`;
    ``address`` as ``ray.init`` takes it, None starts a local one; ``jobs`` then caps the tasks
    in flight, None meaning as many as the cluster can run at once).
    """
    from rich.console import Console

    from .job import run_job

    workers = int(jobs) if jobs else 1
    if executor not in ("local", "ray"):
        raise UsageError(f"--executor must be local or ray (got {executor!r})")
    if executor != "ray" and (address is not None or gpus_per_task is not None):
        raise UsageError("--address and --gpus-per-task go with --executor ray")
    if executor == "ray":
        from .ray_executor import import_ray

        import_ray()        # a missing extra is a set-up error before any work starts
    out_root = Path(out_root)
    todo, is_batch = discover(paths, recursive=recursive, out_root=out_root)
    check_out_root(out_root, is_batch)       # before the first input, not after the last
    if os.environ.get("FER_VIDEO_TEST_INTERNAL_ERROR") == "batch":   # tests/test_cli.py only
        raise RuntimeError("test hook: an unexpected internal error in the batch runner")
    max_in_flight = jobs
    jobs = todo     # type: ignore[assignment]  # the in-process path below
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    out = Console(highlight=False)
    show_bars = (not quiet) and (err.is_terminal if progress is None else progress)

    rows, skipped = [], []
    n = len(jobs)

    def note(i: int, job, row, was_skipped: bool) -> None:
        if row.status != "ok":
            err.print(visible_text(f"error: {row.input}: {row.reason}"), markup=False)
        elif not quiet and not show_bars:
            what = "skipped (report complete)" if was_skipped else (
                f"{row.n_faces} face{'s' if row.n_faces != 1 else ''}"
                + (f" ({row.dominant})" if row.dominant else "") + f" in {_fmt_s(row.wall_s)}")
            err.print(visible_text(f"[{i}/{n}] {row.input}: {what} -> {out_root / row.report}"),
                      markup=False)

    runner = None
    if executor == "ray":
        from .ray_executor import run_ray

        def runner(todo, out_root, settings, **kw):
            return run_ray(todo, out_root, settings, address=address, gpus_per_task=gpus_per_task,
                           max_in_flight=max_in_flight, **kw)
    elif workers > 1 or timeout is not None:
        from .executors import run_parallel

        def runner(todo, out_root, settings, **kw):
            return run_parallel(todo, out_root, settings, workers=workers, **kw)
    if runner is not None:
        return _run_parallel(runner, todo, out_root, settings, timeout=timeout,
                             overwrite=overwrite, is_batch=is_batch, root=batch_root(paths),
                             quiet=quiet,
                             show_bars=show_bars, err=err, out=out, note=note)

    from .threads import plan_threads

    plan = plan_threads(workers=1)      # in-process: all of this process's cores
    try:
        if show_bars:
            with _progress_bars(err) as bars:
                overall = bars.add_task("inputs", total=n) if n > 1 else None
                for i, job in enumerate(jobs, start=1):
                    label = Path(job.path).name
                    task = bars.add_task(f"  {label}", total=None)

                    def on_progress(done: float, total: float, task=task) -> None:
                        bars.update(task, completed=round(done, 1),
                                    total=round(total, 1) if total > 0 else None)

                    row, was_skipped = run_job(job.path, out_root, settings, out_subdir=job.out_subdir,
                                               overwrite=overwrite, progress=on_progress,
                                               rel_path=job.rel, threads=plan)
                    bars.remove_task(task)
                    rows.append(row)
                    skipped.append(was_skipped)
                    if overall is not None:
                        bars.advance(overall)
                    note(i, job, row, was_skipped)
        else:
            for i, job in enumerate(jobs, start=1):
                row, was_skipped = run_job(job.path, out_root, settings, out_subdir=job.out_subdir,
                                           overwrite=overwrite, rel_path=job.rel, threads=plan)
                rows.append(row)
                skipped.append(was_skipped)
                note(i, job, row, was_skipped)
    except KeyboardInterrupt:
        done = sum(1 for r in rows if r.status == "ok")
        err.print(f"interrupted: {done} of {n} report(s) complete; run the same command again "
                  "to resume", markup=False)
        return EXIT_INTERRUPTED

    if is_batch:
        write_batch_index(out_root, rows, root=batch_root(paths))
    if not quiet:
        print_summary(out, rows, skipped, out_root, is_batch)
    return EXIT_OK if all(r.status == "ok" for r in rows) else EXIT_INPUT_FAILED


def _progress_bars(console):
    """The rich progress display used for batches: label, bar, done/total, elapsed, ETA."""
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False)


def _run_parallel(runner, todo, out_root: Path, settings: Settings, *,
                  timeout: Optional[float], overwrite: bool, is_batch: bool,
                  root: Optional[str], quiet: bool,
                  show_bars: bool, err, out, note) -> int:
    """``run_batch`` through an executor (``runner``: worker processes or Ray): one progress
    bar for the batch, reports in input order."""
    n = len(todo)
    counts = {"done": 0, "failed": 0}
    bars = overall = None

    def describe() -> str:
        return "inputs" + (f" ({counts['failed']} failed)" if counts["failed"] else "")

    def on_done(i: int, row, was_skipped: bool) -> None:
        counts["done"] += 1
        counts["failed"] += row.status != "ok"
        if bars is not None:
            bars.update(overall, advance=1, description=describe())
        note(counts["done"], todo[i], row, was_skipped)

    try:
        if show_bars:
            with _progress_bars(err) as bars:
                overall = bars.add_task(describe(), total=n)
                results = runner(todo, out_root, settings, overwrite=overwrite,
                                 timeout=timeout, on_done=on_done)
        else:
            results = runner(todo, out_root, settings, overwrite=overwrite, timeout=timeout,
                             on_done=on_done)
    except KeyboardInterrupt:
        err.print(f"interrupted: {counts['done'] - counts['failed']}"
                  f" of {n} report(s) complete; run the same command again to resume",
                  markup=False)
        return EXIT_INTERRUPTED

    rows = [r for r, _ in results]
    skipped = [s for _, s in results]
    if is_batch:
        write_batch_index(out_root, rows, root=root)
    if not quiet:
        print_summary(out, rows, skipped, out_root, is_batch)
    return EXIT_OK if all(r.status == "ok" for r in rows) else EXIT_INPUT_FAILED


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

    table = Table(title="fer-video summary", title_justify="left")
    table.add_column("input", overflow="fold")
    table.add_column("status")
    table.add_column("duration", justify="right")
    table.add_column("faces", justify="right")
    table.add_column("dominant emotion per face / reason", overflow="fold")
    for row, was_skipped in zip(rows, skipped):
        ok = row.status == "ok"
        status = ("[green]ok[/]" + (" (skipped)" if was_skipped else "")) if ok else "[red]failed[/]"
        table.add_row(visible_text(row.input), status, _fmt_s(row.duration_s or 0.0) if ok else "",
                      str(row.n_faces) if ok else "",
                      (row.dominant.replace(";", " ") or "no face") if ok else visible_text(row.reason))
    console.print(table)
    failed = sum(1 for r in rows if r.status != "ok")
    console.print(f"{len(rows) - failed} ok, {failed} failed", markup=False, highlight=False)
    if is_batch:
        console.print(f"index: {out_root / 'index.html'}  summary: {out_root / 'summary.csv'}",
                      markup=False, highlight=False)
    elif rows and rows[0].report:
        console.print(visible_text(f"report: {out_root / rows[0].report}"), markup=False,
                      highlight=False)
