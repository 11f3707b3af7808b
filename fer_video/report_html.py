"""The HTML pages: ``<stem>.html`` (one input: faces, thumbnails, charts, settings) and
``index.html`` (a folder run: every input, its status and a link to its report), from the
Jinja templates in ``templates/``; the fixed colour per emotion, and how a page shows a name
(:func:`display_text`). Self-contained: no network access, charts are inline SVG
(:mod:`fer_video.charts`), thumbnails inline base64 JPEG. Written atomically.
"""
from __future__ import annotations

import base64
import dataclasses
import math
import os
import re
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Optional
from urllib.parse import quote

import jinja2
import numpy as np

from .atomic import atomic_write_text, display_text, visible_text
from .charts import MAX_CHART_POINTS, share_svg, timeline_svg
from .labels import canonical_emotion
from .records import FaceSummary, VideoInfo

if TYPE_CHECKING:
    from .report import SummaryRow

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


# ------------------------------------------------------------------ HTML helpers

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


def _chart_step(settings: dict, times: np.ndarray, face_ids: np.ndarray) -> float:
    v = settings.get("sample_step_s") if isinstance(settings, dict) else None
    if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
        return float(v)
    diffs: list[float] = []
    for face_id in np.unique(face_ids):
        d = np.diff(np.sort(times[face_ids == face_id]))
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


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def detection_sentence(d: dict) -> str:
    """One plain sentence saying how the sampled frames were searched for faces, from the
    JSON's ``detection`` object (docs/outputs.md, "Track-guided detection")."""
    n, every = int(d.get("sampled_frames", 0)), int(d.get("keyframe_every", 1))
    keys, roi = int(d.get("keyframes", 0)), int(d.get("roi_frames", 0))
    cuts, lost = int(d.get("shot_cuts", 0)), int(d.get("lost_tracks", 0))
    windows = int(d.get("window_searches", 0))
    if every <= 1:
        return f"{_count(n, 'sampled frame')}, each searched as a whole."
    why = [f"{keys - cuts - lost} scheduled: the first and then at most every {_ordinal(every)}"]
    if cuts:
        why.append(f"{cuts} after a shot cut")
    if lost:
        why.append(f"{lost} where a tracked face was lost")
    text = (f"{_count(n, 'sampled frame')}: {keys} searched as a whole ({'; '.join(why)}), "
            f"{roi} searched only where tracked faces were expected")
    if windows:
        text += f" ({windows} of them with a wider window search)"
    return text + "."


def write_html(path: str | os.PathLike, *, info: VideoInfo, faces: list[FaceSummary],
               frames, classes: list[str], thumbnails: dict[int, bytes],
               settings: dict, model: dict, wall_s: float,
               detection: Optional[dict] = None,
               timings: Optional[dict[str, float]] = None) -> None:
    """Write the self-contained ``<stem>.html`` report (no network needed to view it).
    ``frames``: the frames table (``report.FramesTable``, or a DataFrame of its columns).
    ``detection``: the JSON's ``detection`` object (``report.detection_to_json``) and
    ``timings``: busy seconds per stage (the JSON's ``timings_s``), shown under
    "Processing" when given."""
    classes = list(classes)
    colors = emotion_colors(classes)
    all_times = np.asarray(frames["time_s"], dtype=np.float64)
    face_ids = np.asarray(frames["face_id"])
    all_probs = (np.column_stack([np.asarray(frames[c], dtype=np.float64) for c in classes])
                 if len(all_times) else np.zeros((0, len(classes))))
    step = _chart_step(settings, all_times, face_ids)
    t_max = float(all_times.max()) if len(all_times) else 0.0
    x_max = max(float(info.duration_s), t_max + step, 1e-6)
    still = bool(info.is_image) or (info.duration_s <= 0 and len(np.unique(all_times)) <= 1)
    cards = []
    for face in faces:
        mine = face_ids == face.face_id
        times, probs = all_times[mine], all_probs[mine]
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
        n_samples=len(all_times), settings_rows=_flat(dict(settings)),
        model_rows=_flat({k: v for k, v in dict(model).items()}), model=model,
        wall_s=wall_s, step=step, max_points=MAX_CHART_POINTS,
        search=detection_sentence(detection) if detection else None,
        stage_rows=[(k, float(v)) for k, v in (timings or {}).items()],
    )
    atomic_write_text(path, html)


# ------------------------------------------------------------------ folders

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


__all__ = ["display_text", "emotion_colors", "fmt_bytes", "fmt_seconds", "format_label",
           "shown_name", "write_html", "write_index_html"]
