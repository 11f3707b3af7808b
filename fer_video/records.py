"""Typed records passed between pipeline stages.

decode -> ``SampledFrame`` -> detect -> ``Detection`` (per frame) -> track -> ``TrackedFace``
-> classify -> ``FacePrediction`` -> aggregate -> ``FaceSummary`` / ``Segment`` -> report.

Units everywhere: times in seconds from the start of the video stream (the first
frame's presentation time is 0.0); boxes in pixels of the frame *after* rotation
metadata has been applied, as (x1, y1, x2, y2) floats; ``frame_index`` is the 0-based
position of the frame among all decoded frames of the stream, in presentation order.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np


@dataclass(frozen=True)
class VideoInfo:
    """Facts about one input, read from its container before decoding."""
    path: str
    size_bytes: int
    container: str          # PyAV format name, e.g. "mov,mp4,m4a,3gp,3g2,mj2", or "image"
    codec: str              # video codec name, e.g. "h264"; "image" codecs for stills ("png", "mjpeg")
    width: int              # display width, after rotation
    height: int             # display height, after rotation
    rotation: int           # degrees clockwise the stored frames are turned for display: 0/90/180/270
    fps: float              # average frame rate reported by the container (0.0 if unknown)
    duration_s: float       # stream duration in seconds (0.0 for a still image)
    is_image: bool = False


@dataclass
class SampledFrame:
    """One frame chosen by the sampler."""
    frame_index: int        # 0-based index among all decoded frames (presentation order)
    time_s: float           # presentation time in seconds from the stream start
    image: np.ndarray       # HxWx3 uint8 RGB, rotation applied


@dataclass(frozen=True)
class Detection:
    """One face found in one frame."""
    box: tuple[float, float, float, float]   # x1, y1, x2, y2 in frame pixels
    score: float                               # detector confidence in [0, 1]
    landmarks: Optional[tuple[tuple[float, float], ...]] = None  # 5 points (eyes, nose, mouth corners)


@dataclass(frozen=True)
class TrackedFace:
    """A detection with the identity the tracker gave it."""
    face_id: int            # 1-based, stable for one person across the video
    frame_index: int
    time_s: float
    box: tuple[float, float, float, float]
    score: float
    landmarks: Optional[tuple[tuple[float, float], ...]] = None  # the detection's 5 points (for alignment)


@dataclass(frozen=True)
class FacePrediction:
    """Emotion probabilities for one face in one sampled frame."""
    face_id: int
    frame_index: int
    time_s: float
    box: tuple[float, float, float, float]
    det_score: float
    probs: tuple[float, ...]   # softmax over the model's classes, in the model's class order; sums to 1


@dataclass(frozen=True)
class Segment:
    """A run of one emotion in a face's smoothed timeline."""
    start_s: float          # time of the first sample in the run
    end_s: float            # time of the last sample in the run plus one sampling step, capped at the video end
    emotion: str


@dataclass
class FaceSummary:
    """Everything aggregated for one face_id."""
    face_id: int
    first_seen_s: float
    last_seen_s: float
    n_frames: int                       # sampled frames in which this face was detected
    dominant_emotion: str               # argmax of mean_probs
    mean_probs: dict[str, float]        # mean of per-frame probabilities, per class
    segments: list[Segment] = field(default_factory=list)


@dataclass
class DetectionStats:
    """How the sampled frames of one input were detected (track-guided detection,
    ``Settings.keyframe_every``). ``keyframes + roi_frames`` = frames sampled."""
    keyframes: int = 0      # frames run through full-frame detection (P-net on the whole frame)
    roi_frames: int = 0     # frames searched only near the live tracks (R/O-net first, then P-net windows if needed)
    shot_cuts: int = 0      # keyframes forced by a shot cut (the frame looks unlike the previous one)
    lost_tracks: int = 0    # region frames searched again as a whole: a face seen in the frame before was not found
    window_searches: int = 0  # region frames where R/O-net alone missed a track (or one was missed before): P-net windows searched
