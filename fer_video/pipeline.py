"""One video in, one ``VideoResult`` out: the analysis, and nothing else (it writes no file).

``analyze_video`` streams sampled frames through detection (batched across frames),
tracking and classification, holding at most one detection batch of frames in memory
plus small per-face records (boxes, probabilities, one thumbnail per face). Memory stays
flat however long the video is. Where each stage runs (threads) is the caller's
``threads.ThreadPlan``; writing the report folder is :mod:`fer_video.report_folder`'s job,
and the per-input job of every executor is :mod:`fer_video.job`'s.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Optional

import numpy as np

from .errors import InputError
from .detect_stage import DetectInOrder, GuidedDetect
from .pipeline_parts import DecodeStalled, Inline, NoPrefetch, Prefetch, jpeg, thumbnail
from .records import DetectionStats, FacePrediction, FaceSummary, TrackedFace, VideoInfo
from .settings import Settings
from .threads import Permits, ThreadPlan, plan_threads

STAGES = ("decode", "detect", "track", "classify", "aggregate", "report")

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
    detection: DetectionStats = field(default_factory=DetectionStats)   # keyframes, ROI frames

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
    from .decode import probe

    path = str(path)
    plan = threads if threads is not None else plan_threads()
    t_start = time.perf_counter()
    timer = _Timer()
    t = time.perf_counter()
    info = probe(path)
    timer.add("decode", t)
    window = _checked_window(path, info, settings)

    faces = _TrackAndCrop(settings, classifier, timer)
    permits = Permits(plan.permits)
    classify = _ClassifyInBatches(classifier, plan, on_prediction=faces.record, permits=permits)
    def on_frame(frame, detections) -> None:
        classify.add(faces.frame(frame, detections))

    if settings.keyframe_every == 1:
        detect = DetectInOrder(detector, plan.for_device(str(getattr(classifier, "device", "cpu"))),
                               on_frame=on_frame)
    else:
        detect = GuidedDetect(detector, settings.keyframe_every, faces, on_frame=on_frame)
    n_samples, last_time = _stream(path, info, settings, plan, window, detect, classify,
                                   timer, progress, permits)

    t = time.perf_counter()
    predictions, thumbnails = faces.renumbered(settings.min_track_for(info.is_image))
    t = timer.add("track", t)
    step = sample_step(info, settings)
    summaries = _summarise(predictions, classifier.classes, info, settings, step, window, last_time)
    timer.add("aggregate", t)

    return VideoResult(path=path, info=info, settings=settings, model=classifier.info(),
                       classes=list(classifier.classes), predictions=predictions, faces=summaries,
                       thumbnails=thumbnails, timings=timer.t,
                       wall_s=time.perf_counter() - t_start, n_samples=n_samples,
                       sample_step_s=step, detection=detect.stats)


# -- the steps of analyze_video ------------------------------------------------------------

def _checked_window(path: str, info: VideoInfo, settings: Settings) -> tuple[float, float]:
    """The part analysed (:func:`_window`); ``InputError`` when ``--start`` is past the end."""
    if not info.is_image and info.duration_s > 0 and settings.start >= info.duration_s:
        raise InputError(path, f"--start {settings.start:g} s is at or past the end of the video "
                               f"({info.duration_s:.2f} s)")
    return _window(info, settings)


def _stream(path: str, info: VideoInfo, settings: Settings, plan: ThreadPlan,
            window: tuple[float, float], detect: "DetectInOrder",
            classify: "_ClassifyInBatches", timer: _Timer,
            progress: ProgressFn | None, permits: Permits) -> tuple[int, float]:
    """Decode the sampled frames and push them, ``batch_size`` at a time, through detection
    (then, in frame order, tracking and cropping) and classification, until every face is
    classified. Returns (frames sampled, time of the last one); ``InputError`` when not one
    frame could be decoded. The calling thread holds one of ``permits`` while it works."""
    from .decode import sample_frames

    w_start, w_end = window
    total = max(w_end - w_start, 0.0)
    classify.load()                 # the weights load while the first frames decode
    sampled = sample_frames(path, fps=settings.fps, start=settings.start, end=settings.end,
                            info=info, threads=plan.decode_threads)
    if os.environ.get("FER_VIDEO_TEST_DECODE_STALL") == os.path.basename(path):   # tests only
        sampled = _stalls_after(sampled, 2)
    stall = settings.stall_timeout
    permits.acquire()               # the caller's own, given back while it only waits
    frames = (Prefetch(sampled, depth=settings.batch_size, stall_s=stall, permits=permits)
              if plan.prefetch else NoPrefetch(sampled, stall_s=stall, permits=permits))
    n_samples, last_time = 0, 0.0
    batch: list = []
    finished = False
    try:
        for frame in frames:
            batch.append(frame)
            n_samples += 1
            last_time = float(frame.time_s)
            if len(batch) >= settings.batch_size:
                detect.submit(batch)
                batch = []
                if progress is not None:
                    progress(min(max(0.0, last_time - w_start), total), total)
        if batch:
            detect.submit(batch)
        detect.drain()
        classify.drain()
        finished = True
    except DecodeStalled as exc:
        at = "" if info.is_image else f" after {last_time:.2f} s of video"
        raise InputError(path, f"decoding stalled: no frame for {exc.stall_s:g} s{at} (a blocked "
                               "read or a decoder that does not return; --stall-timeout)") from None
    finally:
        permits.release()           # done working: closing only waits for the other threads
        frames.close()
        detect.close(wait=finished)
        classify.close(wait=finished)
        timer.t["detect"] += detect.busy_s
        timer.t["classify"] += classify.busy_s
        # decode runs alongside detection: its stage time is the decode thread's own time
        timer.t["decode"] += frames.busy_s
    if n_samples == 0:
        where = "" if info.is_image else (
            f" between {w_start:g} s and "
            + ("the end" if settings.end is None else f"{settings.end:g} s"))
        raise InputError(path, "no frame could be decoded" + where)
    if progress is not None:
        progress(total, total)
    return n_samples, last_time


def _stalls_after(frames, n: int):
    """Test hook (tests/test_pipeline.py): the real frames, then a decoder that blocks
    for an hour after ``n`` of them, as a read on a stalled mount does."""
    for k, frame in enumerate(frames):
        if k == n:
            threading.Event().wait(3600)
        yield frame


def _summarise(predictions: list[FacePrediction], classes, info: VideoInfo, settings: Settings,
               step: float, window: tuple[float, float], last_time: float) -> list[FaceSummary]:
    """Per-face summaries and smoothed segments (:mod:`fer_video.aggregate`)."""
    from .aggregate import summarize_faces

    w_end = window[1]
    duration = 0.0 if info.is_image else (w_end if w_end > 0 else last_time + step)
    return summarize_faces(predictions, classes, sample_step_s=step, duration_s=duration,
                           smoothing_window_s=settings.smoothing_window_s,
                           min_segment_s=settings.min_segment_s)


@dataclass
class _Track:
    """What is kept of one tracker identity while the video streams."""
    first_time: float
    first_order: int
    n: int = 0
    best_score: float = -1.0
    best_crop: Optional[np.ndarray] = None
    predictions: list[FacePrediction] = field(default_factory=list)   # face_id: the raw id


@dataclass(frozen=True)
class _Crop:
    """A tracked face waiting to be classified: its tracker identity, where it is, and the
    model's crop of it."""
    raw_id: int
    face: TrackedFace
    crop: np.ndarray


class _TrackAndCrop:
    """Tracking and cropping, one frame at a time in frame order: gives every detection a
    tracker identity, keeps each identity's best-scored thumbnail, and makes the model
    crops to classify. Collects the predictions per identity (:meth:`record`) and, at the
    end, keeps the faces seen often enough, numbered 1.. by first appearance."""

    def __init__(self, settings: Settings, classifier, timer: _Timer):
        from .track import FaceTracker

        self._tracker = FaceTracker(iou_threshold=settings.iou_threshold,
                                    max_gap_s=settings.max_gap_s)
        self._classifier = classifier
        self._timer = timer
        self._tracks: dict[int, _Track] = {}

    def frame(self, frame, detections) -> list[_Crop]:
        t0 = time.perf_counter()
        tracked = self._tracker.update(frame.frame_index, frame.time_s, detections)
        t0 = self._timer.add("track", t0)
        crops = []
        for tf in tracked:
            raw = int(tf.face_id)
            tr = self._tracks.get(raw)
            if tr is None:
                tr = self._tracks[raw] = _Track(first_time=float(tf.time_s),
                                                first_order=len(self._tracks))
            tr.n += 1
            if tf.score > tr.best_score:
                tr.best_score = float(tf.score)
                tr.best_crop = thumbnail(frame.image, tf.box)
            crops.append(_Crop(raw, tf, self._classifier.crop(frame.image, tf.box, tf.landmarks)))
        self._timer.add("classify", t0)
        return crops

    def predicted_boxes(self, time_s: float) -> dict[int, tuple[float, float, float, float]]:
        """The live tracks' boxes predicted at ``time_s`` (``FaceTracker.predicted_boxes``)."""
        return self._tracker.predicted_boxes(time_s)

    def seen_ids(self) -> set[int]:
        """Tracker identities found in the latest frame (``FaceTracker.seen_ids``)."""
        return self._tracker.seen_ids()

    def missed_ids(self, time_s: float, detections) -> set[int]:
        """Tracker identities of the latest frame these detections would not continue
        (``FaceTracker.missed_ids``)."""
        return self._tracker.missed_ids(time_s, detections)

    def record(self, prediction: FacePrediction) -> None:
        """A classified face (``face_id``: its tracker identity)."""
        self._tracks[prediction.face_id].predictions.append(prediction)

    def renumbered(self, min_track: int) -> tuple[list[FacePrediction], dict[int, bytes]]:
        """Predictions of the faces seen in at least ``min_track`` sampled frames, numbered
        1.. in order of first appearance and sorted by time, and their JPEG thumbnails."""
        kept = sorted((tr for tr in self._tracks.values() if tr.n >= min_track),
                      key=lambda tr: (tr.first_time, tr.first_order))
        predictions: list[FacePrediction] = []
        thumbnails: dict[int, bytes] = {}
        for new_id, tr in enumerate(kept, start=1):
            predictions.extend(replace(p, face_id=new_id) for p in tr.predictions)
            if tr.best_crop is not None:
                thumbnails[new_id] = jpeg(tr.best_crop)
        predictions.sort(key=lambda p: (p.time_s, p.frame_index, p.face_id))
        return predictions, thumbnails


# A batch also goes once this many frames have added crops to it, full or not: with one face
# a frame, 32-crop batches left a talking head's classification until after its 32nd
# frame and its end, hardly overlapping detection. The bf16 network gives the same bits at
# any batch size (bench/plan_ab.py: same predictions at 8, 16 and 32 crops), so when a batch
# goes changes no result. 0: only full batches go. (session 12)
_FLUSH_FRAMES = 16


class _ClassifyInBatches:
    """Classification in batches of ``classifier.batch_size`` crops (or fewer, once
    ``_FLUSH_FRAMES`` frames have added to a batch), in a thread of its own alongside
    detection (or inline, as the plan says): first it loads the classifier's weights, then
    it takes the batches in order. Each result goes to ``on_prediction`` as a
    ``FacePrediction`` whose ``face_id`` is the tracker identity."""

    def __init__(self, classifier, plan: ThreadPlan, on_prediction: Callable[[FacePrediction], None],
                 permits: Permits | None = None):
        from concurrent.futures import ThreadPoolExecutor

        self._classifier = classifier
        self._on_prediction = on_prediction
        self._pool = Inline() if plan.classify_threads == 0 else ThreadPoolExecutor(
            max_workers=plan.classify_threads, thread_name_prefix="fer-video-classify")
        # inline, classification works on the caller's own permit
        self._permits = permits if permits is not None and plan.classify_threads else Permits()
        self._pending: list[_Crop] = []
        self._frames = 0                   # frames that added crops to the pending batch
        self._inflight: list = []          # [([(raw id, TrackedFace)], future)], oldest first; a few
        self.busy_s = 0.0                  # seconds spent classifying

    def load(self) -> None:
        if callable(getattr(self._classifier, "load", None)):
            self._pool.submit(self._load)

    def _load(self) -> None:
        with self._permits.work():
            self._classifier.load()

    def add(self, crops: list[_Crop]) -> None:
        """One frame's faces; a batch goes once ``batch_size`` crops are waiting, or
        ``_FLUSH_FRAMES`` frames have added to it."""
        if not crops:
            return
        self._pending.extend(crops)
        self._frames += 1
        if len(self._pending) >= self._classifier.batch_size or (
                _FLUSH_FRAMES and self._frames >= _FLUSH_FRAMES):
            self._flush()

    def drain(self) -> None:
        """Classify what is still waiting, and wait for every result."""
        self._flush()
        self._collect(wait_all=True)

    def close(self, wait: bool) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=True)

    def _predict(self, crops: list) -> np.ndarray:
        with self._permits.work():
            t0 = time.perf_counter()
            try:
                return self._classifier.predict_crops(crops)
            finally:
                self.busy_s += time.perf_counter() - t0

    def _flush(self) -> None:
        if self._pending:
            batch, self._pending, self._frames = self._pending, [], 0
            faces = [(c.raw_id, c.face) for c in batch]        # the crops go with the call only
            self._inflight.append((faces, self._pool.submit(self._predict, [c.crop for c in batch])))
        self._collect()

    def _collect(self, wait_all: bool = False) -> None:
        while self._inflight and (wait_all or len(self._inflight) > 2 or self._inflight[0][1].done()):
            faces, fut = self._inflight.pop(0)
            if not fut.done():
                with self._permits.waiting():      # the caller only waits
                    fut.exception()
            for (raw_id, tf), probs in zip(faces, fut.result(), strict=True):
                self._on_prediction(FacePrediction(
                    face_id=raw_id, frame_index=int(tf.frame_index), time_s=float(tf.time_s),
                    box=tuple(float(v) for v in tf.box), det_score=float(tf.score),
                    probs=tuple(float(v) for v in probs)))
