"""The detection step of the analysis's stream, two ways behind one interface (``submit``
a batch of sampled frames, ``drain``, ``close``, ``busy_s``, ``stats``): every frame
detected in full, batches in threads, handed on in frame order (:class:`DetectInOrder`),
or track-guided detection, one frame at a time (:class:`GuidedDetect`: keyframes in full,
the frames between only around the live tracks). Used by :mod:`fer_video.pipeline`.
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np

from .detect import ROI_REACH_MISSED
from .pipeline_parts import Inline
from .records import DetectionStats
from .threads import ThreadPlan
from .track import iou_matrix


class DetectInOrder:
    """Detection of consecutive batches of frames in up to ``plan.detect_threads`` threads
    (inline when 0), each torch op single-threaded on CPU; the results are handed to
    ``on_frame(frame, detections)`` strictly in frame order, so tracking is unchanged."""

    def __init__(self, detector, plan: ThreadPlan, on_frame: Callable):
        from concurrent.futures import ThreadPoolExecutor

        n = plan.detect_threads
        self._detector = detector
        self._on_frame = on_frame
        self._pool = Inline() if n == 0 else ThreadPoolExecutor(
            max_workers=n, thread_name_prefix="fer-video-detect")
        self._depth = max(1, n)             # batches in flight before the oldest is consumed
        self._inflight: list = []           # [(frames, future)], oldest first
        self.busy_s = 0.0                   # seconds spent detecting
        self.stats = DetectionStats()       # every frame a keyframe

    def submit(self, batch: list) -> None:
        self._inflight.append((batch, self._pool.submit(self._detect, [f.image for f in batch])))
        while len(self._inflight) > self._depth:
            self._hand_on(*self._inflight.pop(0))

    def drain(self) -> None:
        while self._inflight:
            self._hand_on(*self._inflight.pop(0))

    def close(self, wait: bool) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=True)

    def _detect(self, images: list) -> list:
        t0 = time.perf_counter()
        try:
            return self._detector.detect(images)
        finally:
            self.busy_s += time.perf_counter() - t0

    def _hand_on(self, batch: list, fut) -> None:
        for frame, detections in zip(batch, fut.result(), strict=True):
            self.stats.keyframes += 1
            self._on_frame(frame, detections)


class GuidedDetect:
    """Track-guided detection (``keyframe_every`` > 1), ``DetectInOrder``'s interface:
    full-frame detection on keyframes (:class:`detect.Keyframes`), and between them only
    near each live track's predicted box: first R-net and O-net alone on seven candidates
    per track seen in the frame before (``FaceDetector.refine_near``: the box, shifted by
    0.15 of its side four ways, scaled 0.85 and 1.18); then, for the tracks that found
    nothing there and those missed in the frame before, the whole cascade (P-net, R-net,
    O-net) on windows of 3x the track's side (``FaceDetector.detect_near``; 6x for a track
    missed in the frame before), counted in ``stats.window_searches``. Measured (session 14,
    bench/roi_detection.py, N = 5, idle): talking heads 18-21 ms a frame against 31 with
    windows only, boxes unchanged (IoU >= 0.8 with full-frame detection on every row).

    A region frame whose detections would leave a face seen in the frame before without a
    match (a fast or turning face that left its window, or one the region search missed) is
    searched again as a whole, at once, and counts as a keyframe (``Keyframes.lost``):
    so the face's row in that frame is not lost and the track goes on with it, as with
    full-frame detection. Measured on the 1080p crowd clip at N = 5: a face moving ~160 px
    per sample left its window at 0.2 s; searching the next frame instead (the earlier
    rule) lost that row and the link, gave the face a new id at 0.4 s, and renumbered four
    faces (ids equal to full-frame detection on 0.50 of rows, 1.00 after this change).

    Each frame needs the tracks of the frame before, so frames are detected one at a time,
    in the calling thread, each handed to ``on_frame`` (tracking) before the next one is
    detected; the plan's detection threads are not used (classification and decoding
    still run where the plan says). ``tracks``: ``predicted_boxes(time_s)``, ``seen_ids()``
    and ``missed_ids(time_s, detections)`` of the tracks so far (the pipeline's tracker).
    """

    def __init__(self, detector, every: int, tracks, on_frame: Callable):
        from .keyframes import Keyframes

        self._detector = detector
        self._tracks = tracks
        self._on_frame = on_frame
        self._keyframes = Keyframes(every)
        self.stats = self._keyframes.stats
        self.busy_s = 0.0                   # seconds spent detecting

    def submit(self, batch: list) -> None:
        for frame in batch:
            t0 = time.perf_counter()
            if self._keyframes.is_keyframe(frame.image):
                detections = self._detector.detect_one(frame.image)
            else:
                detections, missed = self._region(frame)
                if missed:
                    self._keyframes.lost()
                    detections = self._detector.detect_one(frame.image)
            self.busy_s += time.perf_counter() - t0
            self._on_frame(frame, detections)

    def _region(self, frame) -> tuple[list, set]:
        """A region frame's detections: R-net and O-net at each track seen in the frame
        before (``refine_near``), then P-net windows (``detect_near``) around the tracks
        that found nothing, and around those missed in the frame before (twice as wide);
        with the tracks seen in the frame before that they leave without a match."""
        predicted = self._tracks.predicted_boxes(frame.time_s)
        seen = self._tracks.seen_ids()
        near = [i for i in predicted if i in seen]
        detections = self._detector.refine_near(frame.image, [predicted[i] for i in near]) if near else []
        missed = self._tracks.missed_ids(frame.time_s, detections)
        rest = [i for i in predicted if i not in seen or i in missed]
        if not rest:
            return detections, missed
        self.stats.window_searches += 1
        more = self._detector.detect_near(frame.image, [predicted[i] for i in rest],
                                          [1.0 if i in seen else ROI_REACH_MISSED for i in rest])
        # a face both steps found (a track's candidates can reach a neighbour) is kept once,
        # from R/O-net's first pass
        if more and detections:
            overlap = iou_matrix(np.asarray([d.box for d in more], dtype=np.float64),
                                 np.asarray([k.box for k in detections], dtype=np.float64))
            more = [d for d, o in zip(more, overlap.max(axis=1)) if o < 0.5]
        detections = sorted([*detections, *more], key=lambda d: -d.score)
        return detections, self._tracks.missed_ids(frame.time_s, detections)

    def drain(self) -> None:
        pass

    def close(self, wait: bool) -> None:
        pass


__all__ = ["DetectInOrder", "GuidedDetect"]
