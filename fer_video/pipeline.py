"""One video in, one result (and optionally three report files) out.

``analyze_video`` streams sampled frames through detection (batched across frames),
tracking and classification, holding at most one detection batch of frames in memory
plus small per-face records (boxes, probabilities, one thumbnail per face). Memory stays
flat however long the video is.

``run_video_job`` is the self-contained per-input job used by the batch runner (and meant
to be run in worker processes later): it loads the models lazily, once per process, and
never raises for a bad input — it returns a ``SummaryRow`` with ``status="failed"``.
"""
from __future__ import annotations

import functools
import io
import json
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from .batch import report_stem
from .errors import FerVideoError, InputError, SetupError, UsageError
from .records import FacePrediction, FaceSummary, VideoInfo
from .settings import Settings

STAGES = ("decode", "detect", "track", "classify", "aggregate", "report")
THUMB_SIDE = 128          # thumbnails are at most this many pixels on their longer side
THUMB_MARGIN = 0.2        # fraction of the box side added around a face for its thumbnail

ProgressFn = Callable[[float, float], None]   # (seconds done, seconds total)


@dataclass
class VideoResult:
    """Everything known about one analysed input."""
    path: str
    info: VideoInfo
    settings: Settings
    model: dict[str, Any]
    classes: list[str]
    predictions: list[FacePrediction]
    faces: list[FaceSummary]
    thumbnails: dict[int, bytes]            # face_id -> JPEG
    timings: dict[str, float]               # seconds per stage (see STAGES)
    wall_s: float                           # seconds for this input, models already loaded
    n_samples: int                          # frames sampled and analysed
    sample_step_s: float = 0.0              # seconds between samples (0 for a still image)
    outputs: Optional[dict[str, str]] = None   # "csv", "html", "json" -> path, when written
    identity: Optional[dict[str, Any]] = None  # the input's identity for reuse (input_identity)

    def frames(self):
        """The per-frame table (pandas DataFrame), as written to ``<stem>.frames.csv``."""
        from .report import frames_dataframe

        return frames_dataframe(self.predictions, self.classes)


class _Timer:
    """Accumulates seconds per stage."""

    def __init__(self) -> None:
        self.t = {s: 0.0 for s in STAGES}

    def add(self, stage: str, since: float) -> float:
        now = time.perf_counter()
        self.t[stage] = self.t.get(stage, 0.0) + (now - since)
        return now


@dataclass
class _Track:
    first_time: float
    first_order: int
    n: int = 0
    best_score: float = -1.0
    best_crop: Optional[np.ndarray] = None
    records: list = field(default_factory=list)   # (frame_index, time_s, box, score, probs)


class _Prefetch:
    """Decode ahead in a background thread (PyAV releases the GIL while decoding), so
    decoding overlaps detection. The queue is bounded: at most ``depth`` frames wait."""

    def __init__(self, iterable, depth: int):
        self._q: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self.busy_s = 0.0                 # seconds the decode thread spent producing frames
        self._thread = threading.Thread(target=self._run, args=(iterable,), daemon=True,
                                        name="fer-video-decode")
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, iterable) -> None:
        it = iter(iterable)
        try:
            while not self._stop.is_set():
                t0 = time.perf_counter()
                try:
                    item = next(it)
                except StopIteration:
                    self.busy_s += time.perf_counter() - t0
                    self._put(("end", None))
                    return
                self.busy_s += time.perf_counter() - t0
                if not self._put(("frame", item)):
                    return
        except BaseException as exc:    # handed to the consumer, raised there
            self._put(("error", exc))
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    pass

    def __iter__(self):
        return self

    def __next__(self):
        kind, value = self._q.get()
        if kind == "frame":
            return value
        if kind == "error":
            raise value
        self._q.put((kind, value))        # stay exhausted
        raise StopIteration

    def close(self) -> None:
        self._stop.set()
        try:
            while True:
                self._q.get_nowait()
        except queue.Empty:
            pass
        self._thread.join(timeout=5)


class _Inline:
    """Stands in for a thread pool and runs each call at once: a one-core worker gains
    nothing from threads, and saves their hand-offs."""

    def submit(self, fn, *args):
        from concurrent.futures import Future

        fut: Future = Future()
        try:
            fut.set_result(fn(*args))
        except BaseException as exc:       # raised where the result is taken, as with a pool
            fut.set_exception(exc)
        return fut

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        pass


class _NoPrefetch:
    """``_Prefetch``'s interface, decoding in the caller's thread (one-core workers)."""

    def __init__(self, iterable):
        self._it = iter(iterable)
        self.busy_s = 0.0

    def __iter__(self):
        return self

    def __next__(self):
        t0 = time.perf_counter()
        try:
            return next(self._it)
        finally:
            self.busy_s += time.perf_counter() - t0

    def close(self) -> None:
        close = getattr(self._it, "close", None)
        if close is not None:
            close()


# One-core batch worker (see use_one_core): every stage runs in the calling thread.
ONE_CORE = False

# Per-process cap on detection threads; batch workers (``--jobs N > 1``) set it to 1 so N
# processes do not oversubscribe the cores. None: decided by ``_detect_workers``.
DETECT_THREADS_CAP: int | None = None


def use_one_core() -> None:
    """Make this process a one-core batch worker (--jobs N > 1, a Ray task): decoding,
    detection and classification run in the calling thread, one after the other, with one
    torch thread (FFmpeg decodes with one thread in every mode: ``decode.DECODE_THREADS``).
    Several such workers keep the cores busy without oversubscribing them, and without the
    threads' hand-offs. Nothing here changes a result, only where and when work runs."""
    import torch

    global DETECT_THREADS_CAP, ONE_CORE
    torch.set_num_threads(1)
    DETECT_THREADS_CAP = 1
    ONE_CORE = True


def _detect_workers(device: str) -> int:
    """Threads for face detection: 2 on a multi-core CPU, 1 on a GPU (it serialises anyway)."""
    if not str(device).startswith("cpu"):
        return 1
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    n = max(1, min(2, cpus))
    return min(n, DETECT_THREADS_CAP) if DETECT_THREADS_CAP else n


def _thumbnail(image: np.ndarray, box) -> np.ndarray:
    """A small colour crop around a face (not model preprocessing: only for the HTML report)."""
    from PIL import Image

    h, w = image.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    mx, my = (x2 - x1) * THUMB_MARGIN, (y2 - y1) * THUMB_MARGIN
    l, t = max(0, int(x1 - mx)), max(0, int(y1 - my))
    r, b = min(w, int(np.ceil(x2 + mx))), min(h, int(np.ceil(y2 + my)))
    if r <= l or b <= t:
        return np.zeros((1, 1, 3), dtype=np.uint8)
    crop = Image.fromarray(np.ascontiguousarray(image[t:b, l:r]))
    crop.thumbnail((THUMB_SIDE, THUMB_SIDE))
    return np.asarray(crop)


def _jpeg(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).convert("RGB").save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def versions() -> dict[str, str]:
    """Versions of fer-video and the libraries that shape its results."""
    import platform
    from importlib import metadata

    from . import __version__

    out = {"fer_video": __version__, "python": platform.python_version()}
    for dist in ("torch", "torchvision", "facenet-pytorch", "av", "numpy", "pandas"):
        try:
            out[dist.replace("-", "_")] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist.replace("-", "_")] = ""
    return out


def sample_step(info: VideoInfo, settings: Settings) -> float:
    """Seconds between consecutive samples (0.0 for a still image)."""
    if info.is_image:
        return 0.0
    step = 1.0 / settings.fps
    if info.fps and info.fps > 0:
        step = max(step, 1.0 / info.fps)
    return step


def _window(info: VideoInfo, settings: Settings) -> tuple[float, float]:
    """(start, end) seconds of the part analysed; end may be 0.0 when unknown."""
    if info.is_image:
        return 0.0, 0.0
    end = info.duration_s
    if settings.end is not None:
        end = min(end, settings.end) if end > 0 else settings.end
    return settings.start, end


def analyze_video(path: str | os.PathLike, settings: Settings, *, detector, classifier,
                  out_dir: str | os.PathLike | None = None, stem: str | None = None,
                  progress: ProgressFn | None = None,
                  identity: dict | None = None) -> VideoResult:
    """Analyse one input (video or still image).

    ``detector``: a ``detect.FaceDetector``; ``classifier``: a ``classify.EmotionClassifier``.
    Writes ``<stem>.frames.csv``, ``<stem>.html`` and, last, ``<stem>.json`` into ``out_dir``
    when it is given (``stem`` defaults to the input's file stem, shortened as
    :func:`fer_video.batch.report_stem` does). Raises ``InputError`` for
    an unreadable input. A video without faces is a valid, empty result. ``identity``
    (:func:`input_identity`, taken before the analysis; default: taken here, keyed by the
    file name) goes into the JSON's ``reuse_key``.
    """
    from .decode import probe, sample_frames
    from .track import FaceTracker

    path = str(path)
    t_start = time.perf_counter()
    if identity is None and out_dir is not None:
        identity = input_identity(path)
    timer = _Timer()
    t = time.perf_counter()
    info = probe(path)
    t = timer.add("decode", t)

    w_start, w_end = _window(info, settings)
    if not info.is_image and info.duration_s > 0 and settings.start >= info.duration_s:
        raise InputError(path, f"--start {settings.start:g} s is at or past the end of the video "
                               f"({info.duration_s:.2f} s)")
    total = max(w_end - w_start, 0.0)

    tracker = FaceTracker(iou_threshold=settings.iou_threshold, max_gap_s=settings.max_gap_s)
    tracks: dict[int, _Track] = {}
    pending: list[tuple[int, Any, np.ndarray]] = []   # (raw id, TrackedFace, model crop)
    n_samples = 0
    last_time = 0.0

    # Classification runs in one worker thread, alongside detection (which uses one torch
    # thread on CPU): first it loads the classifier's weights, then it takes batches of crops.
    from concurrent.futures import ThreadPoolExecutor

    pool = _Inline() if ONE_CORE else ThreadPoolExecutor(max_workers=1,
                                                         thread_name_prefix="fer-video-classify")
    inflight: list = []            # [(metas, future)], oldest first; at most a few
    worker_s = [0.0]

    def classify(crops: list) -> np.ndarray:
        t0 = time.perf_counter()
        try:
            return classifier.predict_crops(crops)
        finally:
            worker_s[0] += time.perf_counter() - t0

    def collect(wait_all: bool = False) -> None:
        while inflight and (wait_all or len(inflight) > 2 or inflight[0][1].done()):
            metas, fut = inflight.pop(0)
            for (raw, tf), p in zip(metas, fut.result(), strict=True):
                tracks[raw].records.append((int(tf.frame_index), float(tf.time_s),
                                            tuple(float(v) for v in tf.box), float(tf.score),
                                            tuple(float(v) for v in p)))

    def flush() -> None:
        if pending:
            metas = [(raw, tf) for raw, tf, _ in pending]
            crops = [c for _, _, c in pending]
            pending.clear()
            inflight.append((metas, pool.submit(classify, crops)))
        collect()

    # Detection of consecutive batches runs in a few threads (each torch op single-threaded
    # on CPU); results are consumed strictly in frame order, so tracking is unchanged.
    n_det = _detect_workers(getattr(classifier, "device", "cpu"))
    det_pool = _Inline() if ONE_CORE else ThreadPoolExecutor(max_workers=n_det,
                                                             thread_name_prefix="fer-video-detect")
    det_inflight: list = []        # [(frames, future)], oldest first
    det_s = [0.0]

    def detect(images: list) -> list:
        t0 = time.perf_counter()
        try:
            return detector.detect(images)
        finally:
            det_s[0] += time.perf_counter() - t0

    def submit(batch: list) -> None:
        det_inflight.append((batch, det_pool.submit(detect, [f.image for f in batch])))
        while len(det_inflight) > n_det:
            process(*det_inflight.pop(0))

    def process(batch: list, fut) -> None:
        dets = fut.result()
        for frame, frame_dets in zip(batch, dets, strict=True):
            t0 = time.perf_counter()
            tracked = tracker.update(frame.frame_index, frame.time_s, frame_dets)
            t0 = timer.add("track", t0)
            for tf in tracked:
                raw = int(tf.face_id)
                tr = tracks.get(raw)
                if tr is None:
                    tr = tracks[raw] = _Track(first_time=float(tf.time_s), first_order=len(tracks))
                tr.n += 1
                if tf.score > tr.best_score:
                    tr.best_score = float(tf.score)
                    tr.best_crop = _thumbnail(frame.image, tf.box)
                pending.append((raw, tf, classifier.crop(frame.image, tf.box, tf.landmarks)))
            timer.add("classify", t0)
            if len(pending) >= classifier.batch_size:
                flush()

    if callable(getattr(classifier, "load", None)):
        pool.submit(classifier.load)           # weights load while the first frames decode
    sampled = sample_frames(path, fps=settings.fps, start=settings.start, end=settings.end, info=info)
    frames = _NoPrefetch(sampled) if ONE_CORE else _Prefetch(sampled, depth=settings.batch_size)
    batch: list = []
    finished = False
    try:
        for frame in frames:
            batch.append(frame)
            n_samples += 1
            last_time = float(frame.time_s)
            if len(batch) >= settings.batch_size:
                submit(batch)
                batch = []
                if progress is not None:
                    progress(min(max(0.0, last_time - w_start), total), total)
        if batch:
            submit(batch)
            batch = []
        while det_inflight:
            process(*det_inflight.pop(0))
        flush()
        collect(wait_all=True)
        finished = True
    finally:
        frames.close()
        det_pool.shutdown(wait=finished, cancel_futures=True)
        pool.shutdown(wait=finished, cancel_futures=True)
        timer.t["detect"] += det_s[0]
        timer.t["classify"] += worker_s[0]
        # decode runs alongside detection: its stage time is the decode thread's own time
        timer.t["decode"] += frames.busy_s
    if n_samples == 0:
        where = "" if info.is_image else (
            f" between {w_start:g} s and "
            + ("the end" if settings.end is None else f"{settings.end:g} s"))
        raise InputError(path, "no frame could be decoded" + where)
    if progress is not None:
        progress(total, total)

    # Keep faces seen often enough; renumber 1.. in order of first appearance.
    t = time.perf_counter()
    min_track = settings.min_track_for(info.is_image)
    kept = sorted((tr for tr in tracks.values() if tr.n >= min_track),
                  key=lambda tr: (tr.first_time, tr.first_order))
    predictions: list[FacePrediction] = []
    thumbnails: dict[int, bytes] = {}
    for new_id, tr in enumerate(kept, start=1):
        for frame_index, time_s, box, score, probs in tr.records:
            predictions.append(FacePrediction(face_id=new_id, frame_index=frame_index, time_s=time_s,
                                              box=box, det_score=score, probs=probs))
        if tr.best_crop is not None:
            thumbnails[new_id] = _jpeg(tr.best_crop)
    predictions.sort(key=lambda p: (p.time_s, p.frame_index, p.face_id))
    t = timer.add("track", t)

    from .aggregate import summarize_faces

    step = sample_step(info, settings)
    duration = 0.0 if info.is_image else (w_end if w_end > 0 else last_time + step)
    faces = summarize_faces(predictions, classifier.classes, sample_step_s=step,
                            duration_s=duration, smoothing_window_s=settings.smoothing_window_s,
                            min_segment_s=settings.min_segment_s)
    timer.add("aggregate", t)

    result = VideoResult(path=path, info=info, settings=settings, model=classifier.info(),
                         classes=list(classifier.classes), predictions=predictions, faces=faces,
                         thumbnails=thumbnails, timings=timer.t,
                         wall_s=time.perf_counter() - t_start, n_samples=n_samples,
                         sample_step_s=step, identity=identity)
    if out_dir is not None:
        result.outputs = write_outputs(result, out_dir, stem or report_stem(Path(path).stem),
                                       timer=timer)
    result.wall_s = time.perf_counter() - t_start
    return result


# -- report files ------------------------------------------------------------------------

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


def write_outputs(result: VideoResult, out_dir: str | os.PathLike, stem: str,
                  timer: _Timer | None = None) -> dict[str, str]:
    """Write CSV, HTML, then JSON (each atomically, by report.py); the JSON marks completion."""
    from . import report

    t0 = time.perf_counter()
    paths = output_paths(out_dir, stem)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    # An older JSON would mark a half-rewritten report as complete: drop it first.
    paths["json"].unlink(missing_ok=True)
    settings_json = {**result.settings.to_json(), "sample_step_s": result.sample_step_s}
    df = result.frames()
    report.write_frames_csv(df, paths["csv"])
    report.write_html(paths["html"], info=result.info, faces=result.faces, frames=df,
                      classes=result.classes, thumbnails=result.thumbnails,
                      settings=settings_json, model=result.model,
                      wall_s=result.wall_s + (time.perf_counter() - t0))
    timings = dict(result.timings)
    timings["report"] = timings.get("report", 0.0) + (time.perf_counter() - t0)
    if timer is not None:
        timer.t["report"] = timings["report"]
    obj = report.build_report_json(info=result.info, settings=settings_json, model=result.model,
                                   faces=result.faces, timings=timings,
                                   wall_s=result.wall_s + (time.perf_counter() - t0),
                                   versions=versions())
    obj["reuse_key"] = report._jsonable(reuse_key(result.identity))
    report.write_json(obj, paths["json"])     # last: its presence marks the report complete
    return {k: str(v) for k, v in paths.items()}


# -- the per-input job -------------------------------------------------------------------

_DETECTORS: dict[tuple, Any] = {}
_CLASSIFIERS: dict[tuple, Any] = {}


def load_models(settings: Settings):
    """(detector, classifier) for these settings, built once per process and cached."""
    from .classify import EmotionClassifier, resolve_device

    device = resolve_device(settings.device)
    ckey = (str(settings.model_path().resolve()), device, settings.classify_batch_size, settings.tta)
    classifier = _CLASSIFIERS.get(ckey)
    if classifier is None:
        # lazy: the weights load in analyze_video's worker thread, overlapping the first frames
        classifier = _CLASSIFIERS[ckey] = EmotionClassifier(settings.model_path(), device=device,
                                                            batch_size=settings.classify_batch_size,
                                                            lazy=True, tta=settings.tta)
    dkey = (device, settings.min_face, settings.det_threshold, settings.max_side, settings.batch_size)
    detector = _DETECTORS.get(dkey)
    if detector is None:
        try:
            from .detect import FaceDetector
        except ImportError as exc:
            raise SetupError(f"face detector unavailable: {exc} "
                             "(install it with: pip install --no-deps facenet-pytorch==2.6.0)") from None
        detector = _DETECTORS[dkey] = FaceDetector(device=device, min_face=settings.min_face,
                                                   threshold=settings.det_threshold,
                                                   max_side=settings.max_side,
                                                   batch_size=settings.batch_size)
    return detector, classifier


def one_line(exc: BaseException | str) -> str:
    """An exception (or text) as one short line for a user."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def dominant_text(faces) -> str:
    """'1:happy;2:neutral' — each face's dominant emotion, by face_id (summary.csv column)."""
    pairs = []
    for f in faces:
        if isinstance(f, dict):
            pairs.append((int(f.get("face_id", 0)), str(f.get("dominant_emotion", ""))))
        else:
            pairs.append((int(f.face_id), f.dominant_emotion))
    return ";".join(f"{i}:{e}" for i, e in sorted(pairs))


# -- reusing a complete report -----------------------------------------------------------

# The version of the code that makes a report's numbers. Bump it with every change that can
# alter a result for the same input, settings and model (decoding, sampling, detection,
# tracking, classification, aggregation, what makes an input fail): a report made by
# another version is redone, never reused. Reports made before reuse keys existed have none
# and are redone too.
RESULTS_VERSION = 3

# Bytes hashed at each end of an input for its identity (the whole file for a small one).
IDENTITY_SPAN = 64 * 1024

# Settings that only change speed, not the report's numbers; the model is compared by hash.
_NOT_IN_RESULT = {"device", "batch_size", "classify_batch_size", "model"}
# Settings added after reports existed: a report without one was made with its value here.
_ADDED_LATER = {"tta": "none"}


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


def reusable(obj: dict, identity: dict | None, settings: Settings) -> bool:
    """The reuse rule: whether a complete report (its JSON ``obj``) stands for the input
    whose identity is ``identity`` analysed now with ``settings``.

    All of these must hold, else the input is analysed again:

    * the report was made by this ``RESULTS_VERSION`` (a report without a ``reuse_key``,
      made before reuse keys existed, is redone);
    * the input is the same file: same path relative to the batch root, same size, same
      modification time (ns) and same SHA-256 of its first and last 64 KiB
      (:func:`input_identity`); so two files of one size swapped or renamed are redone;
    * the same settings, all but the ones that change speed only (``--device`` and the
      batch sizes), and a model whose weights have the same SHA-256.
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
    return obj["model"].get("sha256") == _model_sha256(str(weights.resolve()), st.st_size, st.st_mtime_ns)


def _row_from_json(input_path: str, json_path: Path, report_rel: str, settings: Settings,
                   identity: dict | None):
    """The summary row of a complete report, or ValueError if :func:`reusable` says it does
    not stand for this input file, these settings and this model."""
    from .report import SummaryRow

    obj = json.loads(json_path.read_text(encoding="utf-8"))
    if not reusable(obj, identity, settings):
        raise ValueError("the report is not for this file, these settings and this model")
    faces = obj["faces"]
    return SummaryRow(input=input_path, status="ok", reason="",
                      duration_s=float(obj["input"]["duration_s"]), n_faces=len(faces),
                      dominant=dominant_text(faces), report=report_rel,
                      wall_s=float(obj.get("wall_s") or 0.0))


def _failed(input_path: str, reason: str, t0: float):
    from .report import SummaryRow

    return SummaryRow(input=input_path, status="failed", reason=reason,
                      wall_s=time.perf_counter() - t0)


def job(input_path: str | os.PathLike, out_root: str | os.PathLike, settings: Settings, *,
        out_subdir: str | None = None, overwrite: bool = False,
        progress: ProgressFn | None = None, rel_path: str | None = None):
    """Like :func:`run_video_job` but returns ``(SummaryRow, skipped: bool)``."""
    from .report import SummaryRow

    input_path = str(input_path)
    sub = out_subdir or report_stem(Path(input_path).stem)
    out_dir = Path(out_root) / sub
    stem = Path(sub).name
    paths = output_paths(out_dir, stem)
    report_rel = Path(sub, paths["html"].name).as_posix()
    identity = input_identity(input_path, rel_path)    # before analysis: a later change redoes it
    if not overwrite and is_complete(out_dir, stem):
        try:
            return _row_from_json(input_path, paths["json"], report_rel, settings, identity), True
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            pass   # unreadable, or the input, settings or model changed: analyse again
    t0 = time.perf_counter()
    try:
        if os.environ.get("FER_VIDEO_TEST_INTERNAL_ERROR") == "job":   # tests/test_cli.py only
            raise IndexError("test hook: an unexpected internal error in one input's job")
        detector, classifier = load_models(settings)
        result = analyze_video(input_path, settings, detector=detector, classifier=classifier,
                               out_dir=out_dir, stem=stem, progress=progress, identity=identity)
    except (SetupError, UsageError):
        raise
    except InputError as exc:
        return _failed(input_path, one_line(exc.reason), t0), False
    except FerVideoError as exc:
        return _failed(input_path, one_line(exc), t0), False
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as exc:   # a bug met on one input must not stop a batch: crash log
        from .crash import internal_error_line

        return _failed(input_path, internal_error_line(exc, f"analysing {input_path!r}"), t0), False
    return SummaryRow(input=input_path, status="ok", reason="", duration_s=result.info.duration_s,
                      n_faces=len(result.faces), dominant=dominant_text(result.faces),
                      report=report_rel, wall_s=result.wall_s), False


def run_video_job(input_path: str | os.PathLike, out_root: str | os.PathLike,
                  settings: Settings, *, out_subdir: str | None = None,
                  overwrite: bool = False, progress: ProgressFn | None = None,
                  rel_path: str | None = None):
    """Analyse one input into ``out_root/<out_subdir or stem>/`` and return its ``SummaryRow``.

    Skips an input whose report is already complete and :func:`reusable` (same file at
    ``rel_path``, its path relative to the batch root, same settings and model) unless
    ``overwrite``. A bad input gives
    ``status="failed"`` with the reason; set-up and usage errors (which would fail every
    input) and KeyboardInterrupt propagate. Models are loaded once per process.
    """
    row, _ = job(input_path, out_root, settings, out_subdir=out_subdir, overwrite=overwrite,
                 progress=progress, rel_path=rel_path)
    return row
