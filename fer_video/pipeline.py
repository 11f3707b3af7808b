"""One video in, one ``VideoResult`` out: the analysis, and nothing else (it writes no file).

``analyze_video`` streams sampled frames through detection (batched across frames),
tracking and classification, holding at most one detection batch of frames in memory
plus small per-face records (boxes, probabilities, one thumbnail per face). Memory stays
flat however long the video is. Where each stage runs (threads) is the caller's
``threads.ThreadPlan``; writing the report folder is :mod:`fer_video.report_folder`'s job,
and the per-input job of every executor is :mod:`fer_video.job`'s.
"""
from __future__ import annotations

import io
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

from .errors import InputError
from .records import FacePrediction, FaceSummary, VideoInfo
from .settings import Settings
from .threads import ThreadPlan, plan_threads

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
    outputs: Optional[dict[str, str]] = None   # "csv", "html", "json" -> path, once written

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
                  progress: ProgressFn | None = None,
                  threads: ThreadPlan | None = None) -> VideoResult:
    """Analyse one input (video or still image).

    ``detector``: a ``detect.FaceDetector``; ``classifier``: a ``classify.EmotionClassifier``.
    ``threads``: where the stages run (default: :func:`threads.plan_threads` for all of this
    process's cores; the caller applies it, :meth:`ThreadPlan.apply`). Writes nothing
    (:func:`fer_video.report_folder.write` does). Raises ``InputError`` for an unreadable
    input. A video without faces is a valid, empty result.
    """
    from .decode import probe, sample_frames
    from .track import FaceTracker

    path = str(path)
    plan = threads if threads is not None else plan_threads()
    t_start = time.perf_counter()
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

    pool = _Inline() if plan.classify_threads == 0 else ThreadPoolExecutor(
        max_workers=plan.classify_threads, thread_name_prefix="fer-video-classify")
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
    n_det = plan.for_device(str(getattr(classifier, "device", "cpu"))).detect_threads
    det_pool = _Inline() if n_det == 0 else ThreadPoolExecutor(max_workers=n_det,
                                                               thread_name_prefix="fer-video-detect")
    n_det = max(1, n_det)          # batches kept in flight before the oldest is consumed
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
    sampled = sample_frames(path, fps=settings.fps, start=settings.start, end=settings.end, info=info,
                            threads=plan.decode_threads)
    frames = (_Prefetch(sampled, depth=settings.batch_size) if plan.prefetch
              else _NoPrefetch(sampled))
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
                         sample_step_s=step)
    return result
