"""The detection step of the analysis's stream, two ways behind one interface (``submit``
a batch of sampled frames, ``drain``, ``close``, ``busy_s``, ``stats``): every frame
detected in full, batches in threads, handed on in frame order (:class:`DetectInOrder`),
or track-guided detection, one frame at a time (:class:`GuidedDetect`: keyframes in full,
the frames between only around the live tracks). Used by :mod:`fer_video.pipeline`.
"""
from __future__ import annotations

import time
from typing import Callable

from .pipeline_parts import Inline
from .records import DetectionStats
from .threads import ThreadPlan


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
    full-frame detection on keyframes (:class:`detect.Keyframes`), and between them the
    cascade (P-net, R-net, O-net) only on windows of 3x each live track's side around its
    predicted box (``FaceDetector.detect_near``).

    Each frame needs the tracks of the frame before, so frames are detected one at a time,
    in the calling thread, each handed to ``on_frame`` (tracking) before the next one is
    detected; the plan's detection threads are not used (classification and decoding
    still run where the plan says). ``tracks``: ``seen_ids()`` and
    ``predicted_boxes(time_s)`` of the tracks so far (the pipeline's tracker).
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
            before = self._tracks.seen_ids()
            key = self._keyframes.is_keyframe(frame.image)
            if key:
                detections = self._detector.detect_one(frame.image)
            else:
                boxes = list(self._tracks.predicted_boxes(frame.time_s).values())
                detections = self._detector.detect_near(frame.image, boxes)
            self.busy_s += time.perf_counter() - t0
            self._on_frame(frame, detections)
            if not key and before - self._tracks.seen_ids():
                self._keyframes.lost()

    def drain(self) -> None:
        pass

    def close(self, wait: bool) -> None:
        pass


__all__ = ["DetectInOrder", "GuidedDetect"]
