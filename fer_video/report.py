"""Reports: ``<stem>.frames.csv``, ``<stem>.json``, ``<stem>.html``; for folders ``index.html``
and ``summary.csv``. Every number written here is defined in docs/outputs.md.

All files are written atomically (``fer_video.atomic``). The HTML is self-contained: no
network access, charts are inline SVG generated here, thumbnails inline base64 JPEG.
"""
from __future__ import annotations

import base64
import json
import math
import os
import re
import dataclasses
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Optional
from urllib.parse import quote

import jinja2
import numpy as np
import pandas as pd
from markupsafe import Markup, escape

from .atomic import atomic_write_text, visible_text
from .labels import canonical_emotion
from .records import DetectionStats, FacePrediction, FaceSummary, VideoInfo

REPORT_SCHEMA_VERSION = 1
BASE_COLUMNS = ["time_s", "frame_index", "face_id", "x1", "y1", "x2", "y2", "det_score"]
SUMMARY_COLUMNS = ["input", "status", "reason", "duration_s", "n_faces", "dominant", "report",
                   "wall_s"]
MAX_CHART_POINTS = 240   # per face; longer tracks are averaged into this many points

# ------------------------------------------------------------------ frames table


def frames_dataframe(predictions: list[FacePrediction], classes: list[str]) -> pd.DataFrame:
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
    data: dict[str, Any] = {
        "time_s": np.array([p.time_s for p in predictions], dtype=np.float64),
        "frame_index": np.array([p.frame_index for p in predictions], dtype=np.int64),
        "face_id": np.array([p.face_id for p in predictions], dtype=np.int64),
        "x1": boxes[:, 0], "y1": boxes[:, 1], "x2": boxes[:, 2], "y2": boxes[:, 3],
        "det_score": np.array([p.det_score for p in predictions], dtype=np.float64),
    }
    for k, c in enumerate(classes):
        data[c] = probs[:, k]
    top = probs.argmax(axis=1) if n else np.zeros(0, dtype=np.int64)
    data["emotion"] = pd.Series([classes[i] for i in top], dtype=object)
    df = pd.DataFrame(data, columns=BASE_COLUMNS + classes + ["emotion"])
    return df.sort_values(["time_s", "face_id"], kind="stable").reset_index(drop=True)


_CSV_FORMATS = {"time_s": "{:.3f}", "x1": "{:.1f}", "y1": "{:.1f}", "x2": "{:.1f}",
                "y2": "{:.1f}", "det_score": "{:.4f}"}
_PROB_FORMAT = "{:.6f}"


def write_frames_csv(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write the frames table: times 3 decimals, boxes 1, det_score 4, probabilities 6.

    The text cells (the header, whose class columns are named by the model's classes, and
    the ``emotion`` column) are written as :func:`csv_text` makes them; numbers as they are.
    """
    out = df.copy()
    for col in out.columns:
        if col in ("frame_index", "face_id", "emotion"):
            continue
        fmt = _CSV_FORMATS.get(col, _PROB_FORMAT)
        if pd.api.types.is_float_dtype(out[col]) or len(out) == 0:
            out[col] = [fmt.format(v) for v in out[col]]
    text_col = list(out.columns).index("emotion") if "emotion" in out.columns else -1
    lines = [_csv_line([csv_text(str(c)) for c in out.columns])]
    for values in out.itertuples(index=False, name=None):
        lines.append(_csv_line([csv_text(str(v)) if k == text_col else str(v)
                                for k, v in enumerate(values)]))
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


# ------------------------------------------------------------------ colours

_KNOWN_COLORS = {
    "angry": "#d62728", "disgust": "#5a9e32", "fear": "#8c4fc4", "happy": "#f2b100",
    "sad": "#2f6fd0", "surprise": "#f27c1c", "neutral": "#8e9aaf", "contempt": "#17a3b8",
}
_FALLBACK = ["#e377c2", "#17becf", "#bcbd22", "#7f3c8d", "#11a579", "#3969ac", "#f2b701",
             "#e73f74", "#80ba5a", "#e68310", "#008695", "#cf1c90"]


def emotion_colors(classes: Iterable[str]) -> dict[str, str]:
    """A fixed colour per class: well-known emotion names, in any spelling
    :func:`fer_video.labels.canonical_emotion` knows, get their usual colour."""
    out: dict[str, str] = {}
    used: set[str] = set()
    rest = []
    for c in classes:
        key = canonical_emotion(c)
        if key in _KNOWN_COLORS and _KNOWN_COLORS[key] not in used:
            out[c] = _KNOWN_COLORS[key]
            used.add(out[c])
        else:
            rest.append(c)
    spare = [col for col in _FALLBACK + list(_KNOWN_COLORS.values()) if col not in used]
    for i, c in enumerate(rest):
        out[c] = spare[i % len(spare)]
    return out


# ------------------------------------------------------------------ SVG charts

def _nice_step(span: float, target: int = 8) -> float:
    if span <= 0:
        return 1.0
    raw = span / target
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if m * mag >= raw:
            return m * mag
    return 10 * mag


def _fmt_tick(v: float, step: float) -> str:
    decimals = max(0, -int(math.floor(math.log10(step)))) if step < 1 else 0
    return f"{v:.{decimals}f}"


def _downsample(times: np.ndarray, probs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Average consecutive samples into at most ``k`` points."""
    n = len(times)
    if n <= k:
        return times, probs
    edges = np.linspace(0, n, k + 1).round().astype(int)
    t = np.array([times[a:b].mean() for a, b in zip(edges[:-1], edges[1:])])
    p = np.array([probs[a:b].mean(axis=0) for a, b in zip(edges[:-1], edges[1:])])
    return t, p


def _runs(times: np.ndarray, step: float) -> list[slice]:
    if len(times) == 0:
        return []
    if step > 0:
        cuts = np.nonzero(np.diff(times) > 2 * step + 1e-9)[0] + 1
    else:
        cuts = np.zeros(0, dtype=int)
    b = [0, *cuts.tolist(), len(times)]
    return [slice(x, y) for x, y in zip(b[:-1], b[1:])]


def _f(v: float) -> str:
    s = f"{v:.1f}"
    return s[:-2] if s.endswith(".0") else s


class _Chart:
    W, H = 760, 206
    L, R, T = 44, 14, 10
    PLOT_B = 148          # bottom of the probability area
    STRIP_T, STRIP_B = 156, 170
    LABEL_Y = 186

    def __init__(self, x_max: float):
        self.x_max = x_max if x_max > 0 else 1.0

    def x(self, t: float) -> float:
        return self.L + (self.W - self.L - self.R) * min(max(t, 0.0), self.x_max) / self.x_max

    def y(self, p: float) -> float:
        return self.PLOT_B - (self.PLOT_B - self.T) * p


def timeline_svg(times: np.ndarray, probs: np.ndarray, classes: list[str],
                 colors: dict[str, str], step: float, x_max: float, segments,
                 label: str = "") -> Markup:
    """Stacked-area chart of class probabilities over time (one filled path per class), the
    smoothed segments as a strip under it, time axis in seconds and a probability axis."""
    ch = _Chart(x_max)
    order = np.argsort(times, kind="stable")
    times, probs = times[order], probs[order]
    out: list[str] = [
        f'<svg class="timeline" viewBox="0 0 {ch.W} {ch.H}" width="100%" role="img" '
        f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">',
        f'<rect x="{ch.L}" y="{ch.T}" width="{ch.W - ch.L - ch.R}" height="{ch.PLOT_B - ch.T}" '
        f'class="plotbg"/>',
    ]
    # Downsample each run in proportion to its length (runs keep their gaps).
    runs = _runs(times, step)
    budget = MAX_CHART_POINTS
    paths: list[list[str]] = [[] for _ in classes]
    for run in runs:
        t, p = times[run], probs[run]
        k = max(1, int(round(budget * len(t) / max(1, len(times)))))
        t, p = _downsample(t, p, k)
        end = min(t[-1] + step, ch.x_max) if step > 0 else t[-1]
        if end > t[-1]:   # hold the last value for one sampling step
            t = np.append(t, end)
            p = np.vstack([p, p[-1:]])
        elif len(t) == 1:  # a lone sample with no step: a thin bar
            t = np.array([t[0], t[0]])
            p = np.vstack([p, p])
        xs = [ch.x(v) for v in t]
        if len(t) == 2 and xs[1] - xs[0] < 2:
            xs[1] = xs[0] + 2
        cum = np.hstack([np.zeros((len(t), 1)), np.cumsum(p, axis=1)])
        cum = np.clip(cum / np.maximum(cum[:, -1:], 1e-12), 0, 1)
        for c in range(len(classes)):
            lo, hi = cum[:, c], cum[:, c + 1]
            if float((hi - lo).max()) < 1e-4:
                continue
            top = " L".join(f"{_f(x)},{_f(ch.y(v))}" for x, v in zip(xs, hi))
            bot = " L".join(f"{_f(x)},{_f(ch.y(v))}" for x, v in zip(reversed(xs), lo[::-1]))
            paths[c].append(f"M{top} L{bot} Z")
    for c, cls in enumerate(classes):
        if paths[c]:
            out.append(f'<path class="area" d="{" ".join(paths[c])}" fill="{colors[cls]}">'
                       f'<title>{escape(cls)}</title></path>')
    # Grid and y axis.
    for v in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = _f(ch.y(v))
        out.append(f'<line class="grid" x1="{ch.L}" x2="{ch.W - ch.R}" y1="{y}" y2="{y}"/>')
        if v in (0.0, 0.5, 1.0):
            out.append(f'<text class="tick" x="{ch.L - 6}" y="{y}" text-anchor="end" '
                       f'dominant-baseline="middle">{v:g}</text>')
    out.append(f'<text class="axis-title" x="12" y="{_f((ch.T + ch.PLOT_B) / 2)}" '
               f'transform="rotate(-90 12 {_f((ch.T + ch.PLOT_B) / 2)})" '
               f'text-anchor="middle">probability</text>')
    # Absences (gaps between runs).
    for a, b in zip(runs[:-1], runs[1:]):
        g0, g1 = ch.x(times[a.stop - 1] + step), ch.x(times[b.start])
        if g1 - g0 > 80:
            out.append(f'<text class="gap" x="{_f((g0 + g1) / 2)}" y="{_f(ch.y(0.5))}" '
                       f'text-anchor="middle" dominant-baseline="middle">not detected</text>')
    # Segment strip.
    out.append(f'<rect class="stripbg" x="{ch.L}" y="{ch.STRIP_T}" width="{ch.W - ch.L - ch.R}" '
               f'height="{ch.STRIP_B - ch.STRIP_T}"/>')
    for s in segments:
        x0, x1 = ch.x(s.start_s), ch.x(s.end_s)
        out.append(f'<rect x="{_f(x0)}" y="{ch.STRIP_T}" width="{_f(max(x1 - x0, 1.0))}" '
                   f'height="{ch.STRIP_B - ch.STRIP_T}" fill="{colors.get(s.emotion, "#999")}">'
                   f'<title>{escape(s.emotion)}: {s.start_s:.2f}–{s.end_s:.2f} s</title></rect>')
    out.append(f'<text class="tick" x="{ch.L - 6}" y="{(ch.STRIP_T + ch.STRIP_B) / 2}" '
               f'text-anchor="end" dominant-baseline="middle">seg.</text>')
    # X axis in seconds.
    tick = _nice_step(ch.x_max)
    n_ticks = int(math.floor(ch.x_max / tick + 1e-9))
    for i in range(n_ticks + 1):
        v = i * tick
        x = _f(ch.x(v))
        out.append(f'<line class="xtick" x1="{x}" x2="{x}" y1="{ch.PLOT_B}" y2="{ch.STRIP_B + 3}"/>')
        out.append(f'<text class="tick" x="{x}" y="{ch.LABEL_Y}" text-anchor="middle">'
                   f'{_fmt_tick(v, tick)}</text>')
    out.append(f'<text class="axis-title" x="{ch.W - ch.R}" y="{ch.H - 2}" text-anchor="end">'
               f'time (s)</text>')
    out.append("</svg>")
    return Markup("\n".join(out))


def share_svg(mean_probs: dict[str, float], colors: dict[str, str], label: str = "") -> Markup:
    """Horizontal stacked bar of mean probability per class, labelled where wide enough."""
    W, H = 760, 26
    total = sum(max(0.0, v) for v in mean_probs.values()) or 1.0
    out = [f'<svg class="share" viewBox="0 0 {W} {H}" width="100%" role="img" '
           f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">']
    x = 0.0
    for cls, v in mean_probs.items():
        w = W * max(0.0, v) / total
        if w <= 0:
            continue
        out.append(f'<rect x="{_f(x)}" y="0" width="{_f(w)}" height="{H}" '
                   f'fill="{colors.get(cls, "#999")}"><title>{escape(cls)}: '
                   f'{100 * v:.1f}%</title></rect>')
        text = f"{cls} {100 * v:.0f}%"
        if len(text) * 6.6 + 8 > w:
            text = f"{100 * v:.0f}%"
        if len(text) * 6.6 + 8 <= w:
            out.append(f'<text class="sharelabel" x="{_f(x + w / 2)}" y="{H / 2}" '
                       f'text-anchor="middle" dominant-baseline="central">{escape(text)}</text>')
        x += w
    out.append("</svg>")
    return Markup("".join(out))


# ------------------------------------------------------------------ HTML helpers

# Characters that would make a name read as another one, or not show at all: the C0 and
# C1 controls (a line feed, an escape, ...), DEL, and the bidirectional marks, embeddings,
# overrides and isolates (U+202E RIGHT-TO-LEFT OVERRIDE shows "evil\u202egnp.mp4" as
# "evil4pm.png"), and the line and paragraph separators.
_HIDDEN_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029"
                           "\u202a-\u202e\u2066-\u2069]")


def display_text(text: str) -> str:
    """``text`` as an HTML page shows a name: :func:`fer_video.atomic.visible_text` (an
    undecodable byte as ``\\xNN``), and each control, bidirectional-formatting or
    line-separator character as a visible ``⟨U+XXXX⟩`` (``evil⟨U+202E⟩gnp.mp4``), so that
    what is shown is the name's characters in their order. Other text is unchanged."""
    return _HIDDEN_CHARS.sub(lambda m: f"⟨U+{ord(m.group()):04X}⟩", visible_text(text))


_env: Optional[jinja2.Environment] = None


def _environment() -> jinja2.Environment:
    global _env
    if _env is None:
        _env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
            autoescape=True, undefined=jinja2.StrictUndefined,
            trim_blocks=True, lstrip_blocks=True)
        _env.filters["secs"] = fmt_seconds
        _env.filters["bytes"] = fmt_bytes
        _env.globals["format_label"] = format_label
    return _env


def format_label(container: str, path: str) -> str:
    """The file format as the report shows it. FFmpeg names a demuxer by its whole family
    ("mov,mp4,m4a,3gp,3g2,mj2"); the file's extension says which member it is."""
    names = [n.strip() for n in container.split(",") if n.strip()]
    if not names:
        return "unknown"
    ext = Path(path).suffix.lower().lstrip(".")
    return (ext if ext in names else names[0]).upper()


def fmt_seconds(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    v = float(v)
    if v >= 60:
        m, s = divmod(v, 60)
        return f"{v:.2f} s ({int(m)}:{s:05.2f})"
    return f"{v:.2f} s"


def fmt_bytes(n: Any) -> str:
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _data_uri(data: bytes) -> str:
    mime = "image/png" if data[:8] == b"\x89PNG\r\n\x1a\n" else "image/jpeg"
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _chart_step(settings: dict, frames: pd.DataFrame) -> float:
    v = settings.get("sample_step_s") if isinstance(settings, dict) else None
    if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
        return float(v)
    diffs: list[float] = []
    for _, g in frames.groupby("face_id"):
        d = np.diff(np.sort(g["time_s"].to_numpy(dtype=np.float64)))
        diffs.extend(d[d > 1e-9].tolist())
    return float(np.median(diffs)) if diffs else 0.0


def _flat(d: dict, prefix: str = "") -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            rows.extend(_flat(v, key + "."))
        elif isinstance(v, (list, tuple)):
            rows.append((key, ", ".join(str(x) for x in v)))
        else:
            rows.append((key, "–" if v is None else str(v)))
    return rows


def write_html(path: str | os.PathLike, *, info: VideoInfo, faces: list[FaceSummary],
               frames: pd.DataFrame, classes: list[str], thumbnails: dict[int, bytes],
               settings: dict, model: dict, wall_s: float) -> None:
    """Write the self-contained ``<stem>.html`` report (no network needed to view it)."""
    classes = list(classes)
    colors = emotion_colors(classes)
    step = _chart_step(settings, frames)
    t_max = float(frames["time_s"].max()) if len(frames) else 0.0
    x_max = max(float(info.duration_s), t_max + step, 1e-6)
    still = bool(info.is_image) or (info.duration_s <= 0 and len(frames["time_s"].unique()) <= 1)
    cards = []
    for face in faces:
        rows = frames[frames["face_id"] == face.face_id]
        times = rows["time_s"].to_numpy(dtype=np.float64)
        probs = rows[classes].to_numpy(dtype=np.float64) if len(rows) else np.zeros((0, len(classes)))
        chart = None
        if not still and len(times):
            chart = timeline_svg(times, probs, classes, colors, step, x_max, face.segments,
                                 label=f"Emotion probabilities over time for face {face.face_id}")
        ranked = sorted(face.mean_probs.items(), key=lambda kv: -kv[1])
        thumb = thumbnails.get(face.face_id)
        cards.append({
            "face": face,
            "thumb": _data_uri(thumb) if thumb else None,
            "chart": chart,
            "share": share_svg(face.mean_probs, colors,
                               label=f"Mean emotion probabilities for face {face.face_id}"),
            "top": [(c, v) for c, v in ranked[:3] if v >= 0.005],
        })
    name = Path(str(info.path)).name or str(info.path)
    shown_path = display_text(str(info.path))
    info = dataclasses.replace(info, path=visible_text(str(info.path)))
    html = _environment().get_template("report.html.j2").render(
        title=display_text(name), shown_path=shown_path,
        info=info, cards=cards, classes=classes, colors=colors, still=still,
        n_samples=len(frames), settings_rows=_flat(dict(settings)),
        model_rows=_flat({k: v for k, v in dict(model).items()}), model=model,
        wall_s=wall_s, step=step, max_points=MAX_CHART_POINTS,
    )
    atomic_write_text(path, html)


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


def shown_name(path: str, root: str | None) -> str:
    """``path`` as ``index.html`` lists it: relative to the batch folder ``root`` when it
    lies under it (``sub/dir/clip.mp4``), else as given. Lexical: ``..`` is resolved,
    symbolic links are not."""
    if not root:
        return path
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(root))
    return path if rel == os.pardir or rel.startswith(os.pardir + os.sep) else rel


def write_index_html(path: str | os.PathLike, rows: list[SummaryRow],
                     root: str | os.PathLike | None = None) -> None:
    """``index.html`` linking every per-video report, with status and reason.

    Each input is listed relative to ``root`` (:func:`shown_name`; the batch folder, named
    in the page's header) and as :func:`display_text` shows it; the full path as given is
    its tooltip. The link is to the report's own bytes (``%E2%80%AE`` for U+202E, ``%FF``
    for an undecodable byte), whatever the text shows.
    """
    root = os.fspath(root) if root is not None else None
    items = []
    for r in rows:
        d = asdict(r)
        # the link takes the name's own bytes (%FF for an undecodable one), the text \xFF
        d["href"] = quote(os.fsencode(r.report.replace(os.sep, "/")), safe="/") if r.report else ""
        name = display_text(shown_name(r.input, root).replace(os.sep, "/"))
        d["name_parts"] = name.split("/")      # a line may break after each "/"
        for k in ("input", "reason", "report"):
            d[k] = display_text(d[k] or "")
        d["dominant_list"] = [tuple(x.split(":", 1)) if ":" in x else ("", x)
                              for x in r.dominant.split(";") if x]
        items.append(d)
    n_ok = sum(r.status == "ok" for r in rows)
    html = _environment().get_template("index.html.j2").render(
        rows=items, n_ok=n_ok, n_failed=len(rows) - n_ok,
        root=display_text(os.path.abspath(root)) if root else "",
        colors=emotion_colors(sorted({e for it in items for _, e in it["dominant_list"]})))
    atomic_write_text(path, html)
