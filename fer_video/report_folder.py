"""One report folder on disk: its paths, when it is complete, writing it, and when it may be
reused instead of analysing its input again.

A report folder ``<out>/<sub>/`` holds ``<stem>.frames.csv``, ``<stem>.html`` and, written
last, ``<stem>.json`` (each atomically, by :mod:`fer_video.report`): a report whose JSON
exists and parses is complete (:func:`is_complete`). A complete report stands for its
input when :func:`reusable` says so (the reuse rule, ``RESULTS_VERSION``). Every row of
``summary.csv`` for an analysed input, fresh or reused, is made by :func:`summary_row` from
the report's JSON, so a resumed batch lists exactly what a fresh one does.

Nothing here analyses anything: :func:`fer_video.pipeline.analyze_video` makes the
``VideoResult`` that :func:`write` puts on disk.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from .settings import NOT_IN_RESULT, Settings

if TYPE_CHECKING:       # no run-time import: pipeline and report folder stay independent
    from .pipeline import VideoResult
    from .report import SummaryRow


# -- names and paths ---------------------------------------------------------------------

# A file name has at most 255 bytes (NAME_MAX); the longest made from a stem is the
# temporary ".<stem>.frames.csv.<pid>.tmp" (24 bytes more), and a clash adds "_<ext>_<n>".
MAX_STEM_BYTES = 180
_HASH_CHARS = 10


def report_stem(stem: str) -> str:
    """The stem of an input's report folder and files: ``stem`` itself when it has at most
    ``MAX_STEM_BYTES`` bytes (in the file-system encoding), else its longest prefix that
    leaves room for ``~`` and the first 10 hex digits of the SHA-256 of the whole stem.

    So a 250-character name (which fits a file name, but not ``<stem>.frames.csv``'s
    temporary file) still gets a report, always the same one (a rerun finds it), and two
    long names that differ only after the prefix get different ones.
    """
    raw = os.fsencode(stem)
    if len(raw) <= MAX_STEM_BYTES:
        return stem
    budget = MAX_STEM_BYTES - 1 - _HASH_CHARS
    prefix, used = [], 0
    for ch in stem:
        n = len(os.fsencode(ch))
        if used + n > budget:
            break
        prefix.append(ch)
        used += n
    return "".join(prefix) + "~" + hashlib.sha256(raw).hexdigest()[:_HASH_CHARS]


def output_paths(out_dir: str | os.PathLike, stem: str) -> dict[str, Path]:
    d = Path(out_dir)
    return {"csv": d / f"{stem}.frames.csv", "html": d / f"{stem}.html", "json": d / f"{stem}.json"}


def is_complete(out_dir: str | os.PathLike, stem: str) -> bool:
    """A report is complete when all three files exist and the JSON (written last) parses."""
    paths = output_paths(out_dir, stem)
    if not all(p.is_file() for p in paths.values()):
        return False
    try:
        json.loads(paths["json"].read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return True


def write(result: "VideoResult", out_dir: str | os.PathLike, stem: str,
          identity: dict | None = None) -> dict[str, Any]:
    """Write ``result``'s report folder: CSV, HTML, then JSON (each atomically, by report.py);
    the JSON, last, marks the report complete. ``identity`` (:func:`input_identity`, taken
    before the analysis; default: taken now, keyed by the file name) goes into the JSON's
    ``reuse_key``. Adds the writing time to ``result.timings``
    (``report``) and ``result.wall_s``, sets ``result.outputs`` (``csv``, ``html``, ``json``
    -> path) and returns the JSON object written (for :func:`summary_row`)."""
    from . import report

    t0 = time.perf_counter()
    paths = output_paths(out_dir, stem)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    # An older JSON would mark a half-rewritten report as complete: drop it first.
    paths["json"].unlink(missing_ok=True)
    settings_json = {**result.settings.to_json(), "sample_step_s": result.sample_step_s}
    df = report.frames_table(result.predictions, result.classes)   # no pandas: start-up
    report.write_frames_csv(df, paths["csv"])
    detection = report.detection_to_json(result.detection, result.settings.keyframe_every,
                                         result.n_samples)
    # The page shows the stages before it: writing it is the JSON's `report` stage, still
    # running (0 or a reuse's leftover) while the page is written, so it is left out.
    report.write_html(paths["html"], info=result.info, faces=result.faces, frames=df,
                      classes=result.classes, thumbnails=result.thumbnails,
                      settings=settings_json, model=result.model,
                      wall_s=result.wall_s + (time.perf_counter() - t0),
                      detection=detection,
                      timings={k: v for k, v in result.timings.items() if k != "report"})
    result.timings["report"] = result.timings.get("report", 0.0) + (time.perf_counter() - t0)
    obj = report.build_report_json(info=result.info, settings=settings_json, model=result.model,
                                   faces=result.faces, timings=dict(result.timings),
                                   wall_s=result.wall_s + (time.perf_counter() - t0),
                                   versions=versions(), detection=detection)
    if identity is None:
        identity = input_identity(result.path)
    obj["reuse_key"] = report._jsonable(reuse_key(identity))
    report.write_json(obj, paths["json"])     # last: its presence marks the report complete
    result.wall_s += time.perf_counter() - t0
    result.outputs = {k: str(v) for k, v in paths.items()}
    return obj


# -- report contents ---------------------------------------------------------------------

def versions() -> dict[str, str]:
    """Versions of fer-video and the libraries that shape its results."""
    import platform
    from importlib import metadata

    from . import __version__

    out = {"fer_video": __version__, "python": platform.python_version()}
    for dist in ("torch", "torchvision", "facenet-pytorch", "onnxruntime", "av", "numpy", "pandas", "Pillow"):
        try:
            out[dist.replace("-", "_")] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist.replace("-", "_")] = ""
    return out


# -- summary rows ------------------------------------------------------------------------

def summary_row(input_path: str, obj: dict, report_rel: str) -> "SummaryRow":
    """The ``summary.csv`` row of an input whose report's JSON is ``obj`` (just written, or
    read back from a complete report): the same row either way."""
    from .report import SummaryRow

    faces = obj["faces"]
    return SummaryRow(input=input_path, status="ok", reason="",
                      duration_s=float(obj["input"]["duration_s"]), n_faces=len(faces),
                      dominant=dominant_text(faces), report=report_rel,
                      wall_s=float(obj.get("wall_s") or 0.0))


def reused_row(input_path: str, json_path: Path, report_rel: str, settings: Settings,
               identity: dict | None, arithmetic: Callable[[], dict] | None = None) -> "SummaryRow":
    """The summary row of a complete report read back, or ValueError if :func:`reusable`
    says it does not stand for this input file, these settings, this model and this
    arithmetic."""
    obj = json.loads(Path(json_path).read_text(encoding="utf-8"))
    if not reusable(obj, identity, settings, arithmetic):
        raise ValueError("the report is not for this file, these settings and this model")
    return summary_row(input_path, obj, report_rel)


def failed_row(input_path: str, reason: str, t0: float) -> "SummaryRow":
    """The summary row of an input that failed with ``reason``, begun at ``t0``
    (``time.perf_counter()``)."""
    from .report import SummaryRow

    return SummaryRow(input=input_path, status="failed", reason=reason,
                      wall_s=time.perf_counter() - t0)


def dominant_text(faces) -> str:
    """'1:happy;2:neutral' — each face's dominant emotion, by face_id (summary.csv column);
    ``faces``: ``FaceSummary`` records or their JSON objects."""
    pairs = []
    for f in faces:
        if isinstance(f, dict):
            pairs.append((int(f.get("face_id", 0)), str(f.get("dominant_emotion", ""))))
        else:
            pairs.append((int(f.face_id), f.dominant_emotion))
    return ";".join(f"{i}:{e}" for i, e in sorted(pairs))


# -- the reuse rule ----------------------------------------------------------------------

# The version of the code that makes a report's numbers. Bump it with every change that can
# alter a result for the same input, settings and model (decoding, sampling, detection,
# tracking, classification, aggregation, what makes an input fail): a report made by
# another version is redone, never reused. Reports made before reuse keys existed have none
# and are redone too.
RESULTS_VERSION = 12
# 5: a one-frame stream (a one-frame GIF) is a still image (image defaults, duration 0),
#    and the JSON has ``detection``: a version-4 report lacks it, so it is redone.
# 6: track-guided detection searches a region frame that lost a track again as a whole
#    (its face rows and ids can change), and a stream that appears mid-file no longer
#    fails a video (PyAV's end-of-file read past its stream table: probe.demux_packets).
# 7: the classifier runs in bf16 by default on a CPU with native bfloat16 (``precision``):
#    probabilities move by up to ~0.005, so fp32 reports are redone.
# 8: bf16 runs the BatchNorm-folded network with bf16 weights (``predict.inference_form``)
#    instead of autocast: probabilities move (still within 0.011 of fp32, bench/fold_ab.py).
# 9: R/O-net run in chunks of 16/8 rows padded to powers of two (``FaceDetector._run``):
#    MTCNN scores and landmarks move in their last bits, probabilities by up to 0.0024.
# 10: region frames are searched by R/O-net alone at each tracked box first (``refine_near``),
#    P-net windows only for what that misses: region boxes start from other candidates and
#    move by a few percent, so crops and probabilities move; the JSON gains
#    ``detection.window_searches``.
# 11: ``precision auto`` takes bf16 only on a CPU with bf16 in hardware (``predict.bf16_native``),
#    no longer on AVX-512 CPUs that emulate it (twice as slow there): their reports become fp32.
# 12: fp32 runs the BatchNorm-folded network too (``predict.inference_form``): probabilities
#    move in their last bits (logits by < 2e-4); ``--precision int8`` is new.

# Bytes hashed at each end of an input for its identity (the whole file for a small one).
IDENTITY_SPAN = 64 * 1024

# Settings that only change speed, not the report's numbers; the model is compared by hash.
_NOT_IN_RESULT = NOT_IN_RESULT   # from the Settings fields' affects_result=False
# Settings added after reports existed: a report without one was made with its value here.
_ADDED_LATER = {"tta": "none", "backend": "torch"}


def input_identity(path: str | os.PathLike, rel_path: str | None = None) -> dict | None:
    """What identifies an input file for reuse: ``rel_path`` (its path relative to the
    batch root; default: its file name), its size, its modification time in nanoseconds
    and the SHA-256 of its first and last ``IDENTITY_SPAN`` bytes (the whole file when it
    is smaller than two spans). None when it is not a regular file this process can read:
    such an input is never reused (its analysis then fails with the reason).
    """
    import hashlib
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        with os.fdopen(fd, "rb", closefd=False) as f:
            h = hashlib.sha256(f.read(IDENTITY_SPAN))
            if st.st_size > IDENTITY_SPAN:
                f.seek(max(IDENTITY_SPAN, st.st_size - IDENTITY_SPAN))
                h.update(f.read(IDENTITY_SPAN))
    except OSError:
        return None
    finally:
        os.close(fd)
    rel = rel_path if rel_path else Path(path).name
    return {"rel_path": str(rel), "size_bytes": int(st.st_size), "mtime_ns": int(st.st_mtime_ns),
            "head_tail_sha256": h.hexdigest()}


def reuse_key(identity: dict | None) -> dict:
    """The ``reuse_key`` object of a report's JSON: ``results_version`` and the input's
    identity (:func:`input_identity`) when the analysis began."""
    return {"results_version": RESULTS_VERSION, "input": identity}


@functools.lru_cache(maxsize=8)
def _model_sha256(path: str, size: int, mtime_ns: int) -> str:
    from .checkpoint import file_sha256

    return file_sha256(path)


def reusable(obj: dict, identity: dict | None, settings: Settings,
             arithmetic: Callable[[], dict] | None = None) -> bool:
    """The reuse rule: whether a complete report (its JSON ``obj``) stands for the input
    whose identity is ``identity`` analysed now with ``settings``.

    All of these must hold, else the input is analysed again:

    * the report was made by this ``RESULTS_VERSION`` (a report without a ``reuse_key``,
      made before reuse keys existed, is redone);
    * the input is the same file: same path relative to the batch root, same size, same
      modification time (ns) and same SHA-256 of its first and last 64 KiB
      (:func:`input_identity`); so two files of one size swapped or renamed are redone;
    * the same settings, all but the ones that change speed only (``--device`` and the
      batch sizes), and a model whose weights have the same SHA-256;
    * with ``arithmetic`` (``job.arithmetic``: what these settings run as here, asked only
      when everything above holds), the report's ``model.backend``, ``model.precision`` and
      ``model.tta`` equal to its: ``--precision auto`` is bf16 on one CPU and fp32 on
      another, and a report made with the other is redone.
    """
    from .report import _jsonable

    key = obj.get("reuse_key")
    if not isinstance(key, dict) or key.get("results_version") != RESULTS_VERSION:
        return False
    if identity is None or key.get("input") != json.loads(json.dumps(_jsonable(identity))):
        return False
    now = {**settings.to_json(), "sample_step_s": obj["settings"].get("sample_step_s")}
    made = obj["settings"]
    if any(made.get(k, _ADDED_LATER.get(k)) != v for k, v in now.items() if k not in _NOT_IN_RESULT):
        return False
    from .checkpoint import checkpoint_paths

    weights = checkpoint_paths(settings.model_path())[0]
    st = weights.stat()
    if obj["model"].get("sha256") != _model_sha256(str(weights.resolve()), st.st_size, st.st_mtime_ns):
        return False
    if arithmetic is None:
        return True
    model = obj["model"]
    return all(model.get(k, _ADDED_LATER.get(k)) == v for k, v in arithmetic().items())
