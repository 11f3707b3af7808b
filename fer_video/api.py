"""Python API: ``fer_video.analyze(path, **settings) -> (frames DataFrame, faces)``.

    import fer_video
    frames, faces = fer_video.analyze("movie.mp4", fps=2, model="my.safetensors")
    frames, faces = fer_video.analyze("movie.mp4", out="reports")   # also writes the 3 files

Models are loaded once per process and reused across calls.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .errors import UsageError

_ALIASES = {"threshold": "det_threshold", "smoothing": "smoothing_window_s",
            "smoothing_window": "smoothing_window_s", "min_segment": "min_segment_s"}


def analyze(path: str | os.PathLike, *, out: str | os.PathLike | None = None, **settings: Any):
    """Analyse one video or still image.

    ``settings`` are the fields of :class:`fer_video.settings.Settings` (``fps``, ``start``,
    ``end``, ``min_face``, ``det_threshold``, ``batch_size``, ``device``, ``model``,
    ``smoothing_window_s``, ``min_segment_s``, ``min_track``, ...). Returns the per-frame
    table (one row per face per sampled frame, pandas DataFrame) and the per-face summaries
    (list of :class:`fer_video.records.FaceSummary`). Files are written only when ``out`` is
    given: ``<out>/<stem>/<stem>.{frames.csv,html,json}``, as the CLI does (a very long
    stem shortened with a hash, :func:`fer_video.report_folder.report_stem`).

    Raises ``UsageError`` (bad setting, missing path), ``SetupError`` (model) or
    ``InputError`` (unreadable input) — all ``fer_video.errors.FerVideoError``.
    """
    from .job import load_models
    from .pipeline import analyze_video
    from .settings import Settings

    kwargs = {_ALIASES.get(k, k): v for k, v in settings.items()}
    s = Settings.from_kwargs(**kwargs)
    p = Path(path)
    if not p.exists():
        raise UsageError(f"no such file or directory: {path}")
    if p.is_dir():
        raise UsageError(f"{path} is a folder: analyze() takes one video or image "
                         "(for folders use the CLI or fer_video.batch.run_batch)")
    from . import report_folder
    from .threads import plan_threads

    plan = plan_threads()
    plan.apply(uses_torch=s.backend == "torch")   # torch's thread count is process-wide: set here, not by a model
    detector, classifier = load_models(s)
    identity = report_folder.input_identity(p) if out is not None else None   # before analysis
    result = analyze_video(p, s, detector=detector, classifier=classifier, threads=plan)
    if out is not None:
        stem = report_folder.report_stem(p.stem)
        report_folder.write(result, Path(out) / stem, stem, identity=identity)
    return result.frames(), result.faces
