"""Face tracking: give each detection a ``face_id`` that stays with one person.

Tracking-by-detection over the sampled frames: each track keeps its last box and a
smoothed velocity; at every update the tracks' boxes are predicted to the new time
(constant velocity), and detections are assigned to tracks by minimum-cost matching
(Hungarian, ``scipy.optimize.linear_sum_assignment``):

* a pair whose IoU (predicted box vs detection) is >= ``iou_threshold`` costs ``1 - IoU``;
* otherwise, a pair whose sizes agree within 1.5x and whose centres are close costs
  ``1 + distance / face width``: a fallback for small or fast faces (a walking crowd at
  5 fps moves further than its own width between samples, so IoU is 0 until the track
  has a velocity), always ranked after any IoU match. "Close" is one face width plus 5
  widths per second since the track was last seen, at most 2.5 widths; after a gap of
  more than 0.5 s only IoU matches count (a wrong guess would merge two people);
* anything else cannot be paired.

Unmatched detections start new tracks with the next 1-based ``face_id``. A track that has
no detection for more than ``max_gap_s`` seconds ends; a person who comes back later gets
a new id (no appearance re-identification).

Times are seconds (``time_s`` of the sampled frames), so gaps mean the same thing at any
sampling rate or with variable frame rate video.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from .records import Detection, TrackedFace

_INFEASIBLE = 1e6
# Centre distance allowed for the fallback, in face widths: a base plus what a face can
# travel in the time since the track was last seen (about 5 widths/s: someone walking
# past close to the camera), capped so that it cannot reach across a crowd. After a
# longer gap the fallback is off (only IoU matches): where a face went is then a guess,
# and a wrong guess merges two people, which is worse than giving one person two ids.
_GATE_BASE = 1.0
_GATE_SPEED = 5.0
_GATE_MAX = 2.5
_FALLBACK_MAX_GAP_S = 0.5
_SIZE_RATIO = 1.5       # the fallback also needs sizes within this factor
_VELOCITY_SMOOTHING = 0.5   # weight of the newest velocity measurement
_EPS = 1e-9


@dataclass
class _Track:
    face_id: int
    box: tuple[float, float, float, float]
    time_s: float
    vx: float = 0.0            # centre velocity, pixels per second
    vy: float = 0.0
    has_velocity: bool = False

    def predicted(self, time_s: float) -> tuple[float, float, float, float]:
        dt = time_s - self.time_s
        dx, dy = self.vx * dt, self.vy * dt
        x1, y1, x2, y2 = self.box
        return (x1 + dx, y1 + dy, x2 + dx, y2 + dy)


class FaceTracker:
    """Assigns stable 1-based ``face_id`` s to per-frame detections (see module doc).

    iou_threshold: minimum IoU between a track's predicted box and a detection for an
                   IoU match.
    max_gap_s:     a track survives this many seconds without detections.
    """

    def __init__(self, iou_threshold: float = 0.3, max_gap_s: float = 1.0):
        if not 0.0 < iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1], not {iou_threshold!r}")
        if not max_gap_s >= 0:
            raise ValueError(f"max_gap_s must be >= 0 seconds, not {max_gap_s!r}")
        self.iou_threshold = float(iou_threshold)
        self.max_gap_s = float(max_gap_s)
        self._tracks: list[_Track] = []
        self._next_id = 1
        self._last_time: Optional[float] = None

    def update(self, frame_index: int, time_s: float,
               detections: Sequence[Detection]) -> list[TrackedFace]:
        """Track one sampled frame; returns one ``TrackedFace`` per detection, same order.

        Call with the sampled frames in time order (an empty ``detections`` list is fine:
        it lets tracks age). Raises ValueError if ``time_s`` goes backwards.
        """
        if self._last_time is not None and time_s < self._last_time - 1e-6:
            raise ValueError(f"frames must come in time order: {time_s} s after {self._last_time} s")
        self._last_time = time_s
        # Tracks silent for longer than max_gap_s end before matching.
        self._tracks = self._live(time_s)

        boxes = [tuple(float(v) for v in d.box) for d in detections]
        assigned = self._assign(self._tracks, time_s, boxes)

        out = []
        for det, box, track in zip(detections, boxes, assigned):
            if track is None:
                track = _Track(face_id=self._next_id, box=box, time_s=time_s)
                self._next_id += 1
                self._tracks.append(track)
            else:
                self._advance(track, box, time_s)
            out.append(TrackedFace(face_id=track.face_id, frame_index=frame_index,
                                   time_s=time_s, box=box, score=float(det.score),
                                   landmarks=det.landmarks))
        return out

    def predicted_boxes(self, time_s: float) -> dict[int, tuple[float, float, float, float]]:
        """``face_id`` -> box predicted at ``time_s`` (constant velocity) of every track that
        is still alive then (silent for at most ``max_gap_s``): where track-guided detection
        looks for the faces between keyframes."""
        return {t.face_id: t.predicted(time_s) for t in self._live(time_s)}

    def missed_ids(self, time_s: float, detections: Sequence[Detection]) -> set[int]:
        """``face_id`` s of the tracks seen at the latest :meth:`update` that
        ``update(time_s, detections)`` would leave without a detection; changes nothing.
        Track-guided detection asks this of a region frame's detections to decide whether
        to search that frame as a whole."""
        boxes = [tuple(float(v) for v in d.box) for d in detections]
        matched = {t.face_id for t in self._assign(self._live(time_s), time_s, boxes) if t is not None}
        return self.seen_ids() - matched

    def seen_ids(self) -> set[int]:
        """``face_id`` s of the tracks that got a detection at the latest :meth:`update`."""
        if self._last_time is None:
            return set()
        return {t.face_id for t in self._tracks if t.time_s == self._last_time}

    def _live(self, time_s: float) -> list[_Track]:
        """The tracks still alive at ``time_s``: silent for at most ``max_gap_s``."""
        return [t for t in self._tracks if time_s - t.time_s <= self.max_gap_s + 1e-6]

    def _assign(self, tracks: list[_Track], time_s: float, boxes) -> list[Optional[_Track]]:
        """The track each box is matched to (None: a new face), by minimum total cost."""
        assigned: list[Optional[_Track]] = [None] * len(boxes)
        if tracks and boxes:
            cost = self._cost_matrix(tracks, time_s, boxes)
            rows, cols = _min_cost_assignment(cost)
            for r, c in zip(rows, cols):
                if cost[r, c] < _INFEASIBLE:
                    assigned[c] = tracks[r]
        return assigned

    def _cost_matrix(self, tracks: list[_Track], time_s: float, boxes) -> np.ndarray:
        pred = np.array([t.predicted(time_s) for t in tracks], dtype=np.float64)
        det = np.array(boxes, dtype=np.float64)
        iou = iou_matrix(pred, det)
        cost = np.full(iou.shape, _INFEASIBLE)
        ok = iou >= self.iou_threshold
        cost[ok] = 1.0 - iou[ok]
        # Fallback on centre distance for pairs that do not overlap enough.
        pw, ph = pred[:, 2] - pred[:, 0], pred[:, 3] - pred[:, 1]
        dw, dh = det[:, 2] - det[:, 0], det[:, 3] - det[:, 1]
        psize = np.sqrt(np.maximum(pw * ph, _EPS))[:, None]
        dsize = np.sqrt(np.maximum(dw * dh, _EPS))[None, :]
        width = (psize + dsize) / 2
        pcx, pcy = (pred[:, 0] + pred[:, 2]) / 2, (pred[:, 1] + pred[:, 3]) / 2
        dcx, dcy = (det[:, 0] + det[:, 2]) / 2, (det[:, 1] + det[:, 3]) / 2
        dist = np.hypot(pcx[:, None] - dcx[None, :], pcy[:, None] - dcy[None, :]) / width
        ratio = np.maximum(psize / dsize, dsize / psize)
        dt = np.array([time_s - t.time_s for t in tracks])[:, None]
        gate = np.where(dt <= _FALLBACK_MAX_GAP_S + 1e-6,
                        np.minimum(_GATE_BASE + _GATE_SPEED * dt, _GATE_MAX), -1.0)
        near = ~ok & (dist <= gate) & (ratio <= _SIZE_RATIO)
        cost[near] = 1.0 + dist[near]
        return cost

    @staticmethod
    def _advance(track: _Track, box, time_s: float) -> None:
        dt = time_s - track.time_s
        if dt > 1e-6:
            ocx, ocy = (track.box[0] + track.box[2]) / 2, (track.box[1] + track.box[3]) / 2
            ncx, ncy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            vx, vy = (ncx - ocx) / dt, (ncy - ocy) / dt
            if track.has_velocity:
                a = _VELOCITY_SMOOTHING
                vx, vy = a * vx + (1 - a) * track.vx, a * vy + (1 - a) * track.vy
            if math.isfinite(vx) and math.isfinite(vy):
                track.vx, track.vy, track.has_velocity = vx, vy, True
        track.box = box
        track.time_s = time_s


def _min_cost_assignment(cost: np.ndarray):
    """Hungarian assignment; a single row or column is just its cheapest entry.

    The shortcut gives the same answer and spares a one-face video the ~0.7 s that
    importing scipy.optimize costs at start-up.
    """
    if cost.shape[0] == 1 or cost.shape[1] == 1:
        r, c = np.unravel_index(int(np.argmin(cost)), cost.shape)
        return [int(r)], [int(c)]
    from scipy.optimize import linear_sum_assignment
    return linear_sum_assignment(cost)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (Nx4) with every box in ``b`` (Mx4), x1 y1 x2 y2."""
    ix1 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy1 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix2 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, _EPS), 0.0)


__all__ = ["FaceTracker", "iou_matrix"]
