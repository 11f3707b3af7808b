"""Reports: ``<stem>.frames.csv``, ``<stem>.json``, ``<stem>.html``; for folders ``index.html``
and ``summary.csv``. Every number written here is defined in docs/outputs.md.

This module writes the tables and the JSON: frames.csv, summary.csv (``SummaryRow``), the
CSV cell rules (:func:`csv_text`: no cell a spreadsheet would run as a formula; RFC 4180
quoting) and ``<stem>.json``. The HTML pages are :mod:`fer_video.report_html` (charts:
:mod:`fer_video.charts`); their public names are re-exported here, so callers import every
writer from ``report``. All files are written atomically (``fer_video.atomic``).
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Optional

import numpy as np

from .atomic import atomic_write_text, visible_text
from .charts import MAX_CHART_POINTS  # re-exported
from .records import DetectionStats, FacePrediction, FaceSummary, VideoInfo
from .report_html import (display_text, emotion_colors, fmt_bytes, fmt_seconds,  # re-exported
                          format_label, shown_name, write_html, write_index_html)

REPORT_SCHEMA_VERSION = 1
BASE_COLUMNS = ["time_s", "frame_index", "face_id", "x1", "y1", "x2", "y2", "det_score"]
SUMMARY_COLUMNS = ["input", "status", "reason", "duration_s", "n_faces", "dominant", "report",
                   "wall_s"]

# ------------------------------------------------------------------ frames table


class FramesTable:
    """The frames.csv table as named numpy columns (``table[name]``, ``table.columns``,
    ``len(table)``): what the report writers read. ``analyze`` writes its reports without
    pandas (importing it took ~0.5 s of every run's start-up, measured with /usr/bin/time
    on this 2-core machine: ``import numpy`` 0.18-0.21 s, ``import numpy, pandas`` 0.59-0.81
    s); :meth:`to_pandas` (and :func:`frames_dataframe`) give the same table as a DataFrame."""

    def __init__(self, columns: dict[str, np.ndarray]):
        self._data = dict(columns)
        self.columns = list(self._data)

    def __getitem__(self, name: str) -> np.ndarray:
        return self._data[name]

    def __len__(self) -> int:
        return len(self._data[self.columns[0]]) if self.columns else 0

    def to_pandas(self):
        import pandas as pd

        data = {c: (pd.Series(list(v), dtype=object) if v.dtype == object else v)
                for c, v in self._data.items()}
        return pd.DataFrame(data, columns=self.columns)


def frames_table(predictions: list[FacePrediction], classes: list[str]) -> FramesTable:
    """The frames.csv table: one row per face per sampled frame, sorted by time then face_id.

    Columns: ``time_s, frame_index, face_id, x1, y1, x2, y2, det_score``, one probability column
    per class (model order; each row renormalised to sum to 1) and ``emotion`` (top class).
    """
    classes = list(classes)
    clash = set(classes) & set(BASE_COLUMNS + ["emotion"])
    if clash or len(set(classes)) != len(classes):
        raise ValueError(f"class names must be unique and not clash with columns: {sorted(clash)}")
    n = len(predictions)
    probs = np.array([p.probs for p in predictions], dtype=np.float64).reshape(n, len(classes))
    if n and len(predictions[0].probs) != len(classes):
        raise ValueError("number of probabilities does not match the number of classes")
    totals = probs.sum(axis=1, keepdims=True)
    totals[totals <= 0] = 1.0
    probs = probs / totals
    boxes = np.array([p.box for p in predictions], dtype=np.float64).reshape(n, 4)
    data: dict[str, np.ndarray] = {
        "time_s": np.array([p.time_s for p in predictions], dtype=np.float64),
        "frame_index": np.array([p.frame_index for p in predictions], dtype=np.int64),
        "face_id": np.array([p.face_id for p in predictions], dtype=np.int64),
        "x1": boxes[:, 0], "y1": boxes[:, 1], "x2": boxes[:, 2], "y2": boxes[:, 3],
        "det_score": np.array([p.det_score for p in predictions], dtype=np.float64),
    }
    for k, c in enumerate(classes):
        data[c] = probs[:, k]
    top = probs.argmax(axis=1) if n else np.zeros(0, dtype=np.int64)
    data["emotion"] = np.array([classes[i] for i in top], dtype=object)
    order = np.lexsort((data["face_id"], data["time_s"]))    # stable: by time, then face_id
    return FramesTable({c: data[c][order] for c in BASE_COLUMNS + classes + ["emotion"]})


def frames_dataframe(predictions: list[FacePrediction], classes: list[str]):
    """:func:`frames_table` as a pandas DataFrame (index 0..n-1)."""
    return frames_table(predictions, classes).to_pandas()


_CSV_FORMATS = {"time_s": "{:.3f}", "x1": "{:.1f}", "y1": "{:.1f}", "x2": "{:.1f}",
                "y2": "{:.1f}", "det_score": "{:.4f}"}
_PROB_FORMAT = "{:.6f}"


def write_frames_csv(table, path: str | os.PathLike) -> None:
    """Write the frames table (a :class:`FramesTable` or a DataFrame with its columns):
    times 3 decimals, boxes 1, det_score 4, probabilities 6.

    The text cells (the header, whose class columns are named by the model's classes, and
    the ``emotion`` column) are written as :func:`csv_text` makes them; numbers as they are.
    """
    names = [str(c) for c in table.columns]
    cells = []
    for col in table.columns:
        values = np.asarray(table[col])
        if col == "emotion":
            cells.append([csv_text(str(v)) for v in values])
        elif col not in ("frame_index", "face_id") and values.dtype.kind == "f":
            fmt = _CSV_FORMATS.get(col, _PROB_FORMAT)
            cells.append([fmt.format(v) for v in values.tolist()])
        else:
            cells.append([str(v) for v in values.tolist()])
    lines = [_csv_line([csv_text(c) for c in names])]
    lines.extend(_csv_line(row) for row in zip(*cells))
    atomic_write_text(path, "".join(lines))


# ------------------------------------------------------------------ CSV cells

# A spreadsheet evaluates a cell that begins with one of these as a formula (OWASP "CSV
# injection"): =HYPERLINK(...), +1+1, -x, @SUM(1+1), or a tab/CR in front of one.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_text(value: str) -> str:
    """A text cell (a name, a path, a reason; never a number) as a spreadsheet shows it.

    One ``'`` is put in front of a value that begins with ``=``, ``+``, ``-``, ``@``, a
    tab or a carriage return (OWASP's advice: the spreadsheet shows the text instead of
    evaluating it), and in front of one that already begins with ``'``, so the escape can
    be undone: a cell that begins with ``'`` lost exactly one ``'`` at the front.
    """
    value = visible_text(value)
    return "'" + value if value.startswith(_FORMULA_START + ("'",)) else value


def _csv_cell(value: str) -> str:
    """RFC 4180 quoting: in double quotes (inner ones doubled) if the value holds a comma, a
    double quote, a line break (LF or CR: Python's csv module with ``lineterminator="\\n"``
    leaves a CR unquoted, which splits the row), or a semicolon or tab, the separators a
    spreadsheet may pick instead of the comma."""
    if any(ch in value for ch in ',"\r\n;\t'):
        return '"' + value.replace('"', '""') + '"'
    return value


def _csv_line(cells: Iterable[str]) -> str:
    return ",".join(_csv_cell(c) for c in cells) + "\n"


# ------------------------------------------------------------------ JSON


def _jsonable(obj: Any) -> Any:
    """Plain JSON types only: numpy scalars/arrays converted, non-finite floats -> null."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, str):
        return visible_text(obj)      # a name's undecodable bytes as \xNN (valid UTF-8 JSON)
    if obj is None:
        return obj
    if isinstance(obj, os.PathLike):
        return visible_text(os.fsdecode(obj))
    return str(obj)


def _r(x: float, nd: int) -> float:
    return round(float(x), nd)


def face_to_json(face: FaceSummary) -> dict[str, Any]:
    return {
        "face_id": int(face.face_id),
        "first_seen_s": _r(face.first_seen_s, 3),
        "last_seen_s": _r(face.last_seen_s, 3),
        "n_frames": int(face.n_frames),
        "dominant_emotion": face.dominant_emotion,
        "mean_probs": {k: _r(v, 6) for k, v in face.mean_probs.items()},
        "segments": [{"start_s": _r(s.start_s, 3), "end_s": _r(s.end_s, 3), "emotion": s.emotion}
                     for s in face.segments],
    }


def detection_to_json(stats: DetectionStats, keyframe_every: int, sampled_frames: int) -> dict:
    """The JSON's ``detection`` object: ``keyframe_every`` (the setting), ``sampled_frames``
    (frames sampled and searched for faces) and every count of ``stats``
    (``keyframes + roi_frames == sampled_frames``)."""
    return {"keyframe_every": int(keyframe_every), "sampled_frames": int(sampled_frames),
            **{k: int(v) for k, v in asdict(stats).items()}}


def build_report_json(*, info: VideoInfo, settings: dict, model: dict, faces: list[FaceSummary],
                      timings: dict[str, float], wall_s: float,
                      versions: dict[str, str], detection: Optional[dict] = None) -> dict:
    """The ``<stem>.json`` document (plain JSON types; see docs/outputs.md for every field).
    ``detection``: :func:`detection_to_json` (left out when None)."""
    extra = {} if detection is None else {"detection": dict(detection)}
    return _jsonable({
        "schema_version": REPORT_SCHEMA_VERSION,
        "input": {
            "path": str(info.path),
            "size_bytes": int(info.size_bytes),
            "container": info.container,
            "codec": info.codec,
            "width": int(info.width),
            "height": int(info.height),
            "rotation": int(info.rotation),
            "fps": float(info.fps),
            "duration_s": float(info.duration_s),
            "is_image": bool(info.is_image),
        },
        "settings": dict(settings),
        "model": dict(model),
        "versions": dict(versions),
        "wall_s": _r(wall_s, 3),
        "timings_s": {k: _r(v, 3) for k, v in timings.items()},
        **extra,
        "n_faces": len(faces),
        "faces": [face_to_json(f) for f in faces],
    })


def write_json(obj: Any, path: str | os.PathLike) -> None:
    text = json.dumps(_jsonable(obj), indent=2, ensure_ascii=False, allow_nan=False)
    atomic_write_text(path, text + "\n")


# ------------------------------------------------------------------ folders


@dataclass
class SummaryRow:
    """One input of a folder run (a row of summary.csv and of index.html)."""
    input: str                       # input file path
    status: str                      # "ok" or "failed"
    reason: str = ""                 # why it failed ("" when ok)
    duration_s: Optional[float] = None
    n_faces: Optional[int] = None
    dominant: str = ""               # "1:happy;2:neutral": face_id:dominant emotion, by face_id
    report: str = ""                 # html report, relative to the folder output dir ("" if none)
    wall_s: Optional[float] = None


def write_summary_csv(path: str | os.PathLike, rows: list[SummaryRow]) -> None:
    """``summary.csv``: one row per input. Text cells (``input``, ``status``, ``reason``,
    ``dominant``, ``report``) are written as :func:`csv_text` makes them and quoted as
    needed (a line break in a file name stays inside its cell); numbers as they are."""
    lines = [_csv_line(SUMMARY_COLUMNS)]
    for r in rows:
        lines.append(_csv_line([
            csv_text(r.input), csv_text(r.status), csv_text(r.reason),
            "" if r.duration_s is None else f"{r.duration_s:.3f}",
            "" if r.n_faces is None else str(int(r.n_faces)), csv_text(r.dominant),
            csv_text(r.report), "" if r.wall_s is None else f"{r.wall_s:.3f}"]))
    atomic_write_text(path, "".join(lines))


__all__ = ["BASE_COLUMNS", "MAX_CHART_POINTS", "REPORT_SCHEMA_VERSION", "SUMMARY_COLUMNS",
           "SummaryRow", "build_report_json", "csv_text", "detection_to_json", "display_text",
           "emotion_colors", "face_to_json", "fmt_bytes", "fmt_seconds", "format_label",
           "FramesTable", "frames_dataframe", "frames_table", "shown_name", "write_frames_csv",
           "write_html", "write_index_html", "write_json", "write_summary_csv"]
