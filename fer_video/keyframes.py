"""Keyframes of track-guided detection: which sampled frames get the full-frame cascade
(every N-th, the first, a shot cut, or a region frame that lost a track); between them
:meth:`fer_video.detect.FaceDetector.detect_near` searches only around the live tracks.
The shot-cut test compares two frames' gray-level histograms (:func:`is_shot_cut`).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from .records import DetectionStats

# A shot cut: the total-variation distance between the 16-bin gray histograms of two
# consecutive sampled frames (64x36 thumbnails) exceeds this. Measured at 5 fps on the 22
# shared clips: within a clip at most 0.10 (camera motion, a crowd walking, talking heads);
# between the last frame of one clip and the first of another (462 pairs) 1% below 0.17,
# the median ~0.5; the two real cuts in pyfeat_*face*.mov 0.52 and 1.0. A histogram,
# not a pixel difference: the mean absolute pixel difference reached 29 (of 255) within a
# clip (liveportrait_d12, a moving head) while 5% of cuts stayed below 38. A missed cut
# costs little: a track that is not found where it was forces a keyframe next frame.
SHOT_CUT_DISTANCE = 0.15
_SIGNATURE_SIZE = (64, 36)


def frame_signature(image: np.ndarray) -> np.ndarray:
    """A frame's 16-bin gray-level histogram (sums to 1), from a 64x36 thumbnail: what
    :func:`is_shot_cut` compares (~3 ms for a 1080p frame)."""
    from PIL import Image

    gray = np.asarray(Image.fromarray(image).resize(_SIGNATURE_SIZE, Image.BILINEAR,
                                                     reducing_gap=2.0).convert("L"))
    return np.bincount(gray.ravel() // 16, minlength=16) / gray.size


def is_shot_cut(before: np.ndarray, after: np.ndarray,
                threshold: float = SHOT_CUT_DISTANCE) -> bool:
    """True when two frames' signatures (:func:`frame_signature`) differ by more than
    ``threshold`` (total-variation distance, 0..1)."""
    return 0.5 * float(np.abs(before - after).sum()) > threshold


class Keyframes:
    """Which sampled frames get full-frame detection in track-guided detection.

    A frame is a keyframe when it is the first one, when ``every`` sampled frames have
    passed since the last keyframe (so a face that enters is found within ``every``
    sampled frames), when it looks unlike the frame before (:func:`is_shot_cut`), or when
    its region search lost a track and it is searched again as a whole (:meth:`lost`).
    ``every=1``: every frame. The other frames search only around the live tracks
    (:meth:`FaceDetector.detect_near`).
    ``stats`` counts what happened.
    """

    def __init__(self, every: int):
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be an integer >= 1, not {every!r}")
        self.every = every
        self.stats = DetectionStats()
        self._since = 0                       # sampled frames since the last keyframe
        self._previous: Optional[np.ndarray] = None

    def is_keyframe(self, image: np.ndarray) -> bool:
        """Whether this frame (the next sampled one, in order) is a keyframe; counts it."""
        if self.every == 1:
            self.stats.keyframes += 1
            return True
        signature = frame_signature(image)
        cut = self._previous is not None and is_shot_cut(self._previous, signature)
        self._previous = signature
        key = self._since == 0 or self._since >= self.every     # the first, or every N-th
        if not key and cut:
            self.stats.shot_cuts += 1
        key = key or cut
        if key:
            self.stats.keyframes += 1
            self._since = 1
        else:
            self.stats.roi_frames += 1
            self._since += 1
        return key

    def lost(self) -> None:
        """The region frame just counted lost a track seen in the frame before, and is searched
        again as a whole: it counts as a keyframe (one forced by a lost track), and the count
        of ``every`` restarts from it."""
        if self.stats.roi_frames < 1 or self._since <= 1:
            raise RuntimeError("lost() follows a region frame's is_keyframe()")
        self.stats.roi_frames -= 1
        self.stats.keyframes += 1
        self.stats.lost_tracks += 1
        self._since = 1


__all__ = ["Keyframes", "SHOT_CUT_DISTANCE", "frame_signature", "is_shot_cut"]
