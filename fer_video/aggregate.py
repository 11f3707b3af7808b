"""Aggregate per-frame predictions into per-face summaries and emotion segments.

Definitions (also in docs/outputs.md):

* A face's **track** is all its predictions, sorted by ``time_s``. Two consecutive samples
  more than ``2 * sample_step_s`` apart are separated by a **gap**: the face was absent, so
  the track is cut there into **runs**. Smoothing and segments never cross a gap.
* **Smoothing** (per run): every sample's probabilities are replaced by the unweighted mean
  of the probabilities of all samples of the same run whose time lies within
  ``[t - window_s/2, t + window_s/2]`` (both ends inclusive), then renormalised to sum to 1.
* **Segments**: the argmax of the smoothed probabilities, grouped into maximal runs of
  consecutive samples with the same label. ``start_s`` = time of the segment's first sample;
  ``end_s`` = time of its last sample + ``sample_step_s``, but never later than the start of
  the next segment of the same run, nor than ``duration_s``. Both are clamped to
  ``[0, duration_s]``; for a still image (``duration_s == 0``) ``end_s == start_s == 0``.
* Optional **merging**: while a run has more than one segment and its shortest segment is
  shorter than ``min_segment_s``, that segment's samples take the label of the neighbour
  (in the same run) whose emotion has the higher mean smoothed probability over them; equal
  neighbours then fuse. A run that is one short segment is kept.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from .records import FacePrediction, FaceSummary, Segment

_EPS = 1e-9  # float tolerance for time comparisons (seconds)


def smooth_probs(probs: np.ndarray, times: np.ndarray, window_s: float) -> np.ndarray:
    """Centred, time-based moving average of per-sample class probabilities.

    ``probs`` is T x C, ``times`` the T sample times in seconds. Output row ``i`` is the
    unweighted mean of the rows ``j`` with ``|times[j] - times[i]| <= window_s / 2`` (inclusive,
    with a 1e-9 s tolerance), renormalised so it sums to 1. The window is defined in time, not
    in samples: samples far away across a gap are not averaged in, and near the ends of the
    track the window simply holds fewer samples (no padding). ``window_s <= 0`` returns the
    input renormalised. ``times`` need not be sorted; output rows keep the input order.
    """
    p = np.asarray(probs, dtype=np.float64)
    t = np.asarray(times, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"probs must be T x C, got shape {p.shape}")
    if t.shape != (p.shape[0],):
        raise ValueError(f"times must have shape ({p.shape[0]},), got {t.shape}")
    if p.shape[0] == 0:
        return p.copy()
    if window_s > 0:
        order = np.argsort(t, kind="stable")
        ts, ps = t[order], p[order]
        half = window_s / 2.0
        lo = np.searchsorted(ts, ts - half - _EPS, side="left")
        hi = np.searchsorted(ts, ts + half + _EPS, side="right")
        csum = np.vstack([np.zeros((1, p.shape[1])), np.cumsum(ps, axis=0)])
        means = (csum[hi] - csum[lo]) / (hi - lo)[:, None]
        out = np.empty_like(p)
        out[order] = means
    else:
        out = p.copy()
    totals = out.sum(axis=1, keepdims=True)
    totals[totals <= 0] = 1.0
    return out / totals


# A face absent for more than GAP_FACTOR sample steps is cut into runs (module docstring).
GAP_FACTOR = 2.0


def track_runs(times: np.ndarray, step: float) -> list[slice]:
    """A face's runs: slices of its (sorted) sample times, cut wherever two consecutive
    samples are more than ``GAP_FACTOR * step`` apart; ``step <= 0``: one run. The one
    statement of the gap rule: the segments here and the report's chart both use it."""
    if step <= 0:
        return [slice(0, len(times))] if len(times) else []
    return _split_runs(times, GAP_FACTOR * step)


def _split_runs(times: np.ndarray, max_gap_s: float) -> list[slice]:
    """Slices of consecutive (sorted) samples with no gap longer than ``max_gap_s``."""
    if len(times) == 0:
        return []
    cuts = np.nonzero(np.diff(times) > max_gap_s + _EPS)[0] + 1
    bounds = [0, *cuts.tolist(), len(times)]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def _label_runs(labels: np.ndarray) -> list[list[int]]:
    """[[first_index, last_index, label], ...] for maximal runs of equal labels."""
    out: list[list[int]] = []
    for i, lab in enumerate(labels.tolist()):
        if out and out[-1][2] == lab:
            out[-1][1] = i
        else:
            out.append([i, i, lab])
    return out


def _seg_bounds(runs: list[list[int]], times: np.ndarray, step: float,
                duration_s: float) -> list[tuple[float, float]]:
    """(start_s, end_s) of each label run of one track run, per the module rules."""
    dur = max(0.0, float(duration_s))
    starts = [min(max(float(times[a]), 0.0), dur) for a, _, _ in runs]
    bounds = []
    for k, (_, b, _) in enumerate(runs):
        end = float(times[b]) + step
        if k + 1 < len(runs):
            end = min(end, starts[k + 1])
        end = min(max(end, starts[k]), dur)
        bounds.append((starts[k], end))
    return bounds


def _merge_short(runs: list[list[int]], smoothed: np.ndarray, times: np.ndarray, step: float,
                 duration_s: float, min_segment_s: float) -> list[list[int]]:
    runs = [list(r) for r in runs]
    while len(runs) > 1:
        bounds = _seg_bounds(runs, times, step, duration_s)
        lengths = [e - s for s, e in bounds]
        k = int(np.argmin(lengths))
        if lengths[k] >= min_segment_s - _EPS:
            break
        a, b, _ = runs[k]
        candidates = [j for j in (k - 1, k + 1) if 0 <= j < len(runs)]
        score = {j: float(smoothed[a:b + 1, runs[j][2]].mean()) for j in candidates}
        target = max(candidates, key=lambda j: (score[j], -j))  # tie -> earlier neighbour
        if target < k:
            runs[target][1] = b
        else:
            runs[target][0] = a
        del runs[k]
        fused: list[list[int]] = []
        for r in runs:
            if fused and fused[-1][2] == r[2]:
                fused[-1][1] = r[1]
            else:
                fused.append(r)
        runs = fused
    return runs


def _estimate_step(predictions: list[FacePrediction]) -> float:
    by_face: dict[int, list[float]] = defaultdict(list)
    for p in predictions:
        by_face[p.face_id].append(p.time_s)
    diffs = [d for ts in by_face.values() for d in np.diff(np.sort(ts)).tolist() if d > _EPS]
    return float(np.median(diffs)) if diffs else 0.0


def summarize_faces(predictions: list[FacePrediction], classes: list[str], sample_step_s: float,
                    duration_s: float, smoothing_window_s: float = 1.0,
                    min_segment_s: float = 0.0) -> list[FaceSummary]:
    """One :class:`FaceSummary` per ``face_id`` (sorted by id).

    ``first_seen_s``/``last_seen_s``: times of the face's first/last sample. ``n_frames``: number
    of sampled frames with this face. ``mean_probs``: per-class mean of the raw (unsmoothed)
    probabilities, in class order. ``dominant_emotion``: argmax of ``mean_probs`` (ties: the
    earlier class). ``segments``: see the module docstring (gap > ``2 * sample_step_s`` cuts the
    track; smoothing window ``smoothing_window_s`` centred, time-based; ``end_s`` = last sample
    + ``sample_step_s``, capped; short segments merged if ``min_segment_s > 0``).

    If ``sample_step_s <= 0`` (unknown), the median positive interval between consecutive
    samples of the same face is used instead (0 if no face has two samples).
    """
    n_cls = len(classes)
    if n_cls == 0:
        raise ValueError("classes must not be empty")
    if sample_step_s < 0 or duration_s < 0 or smoothing_window_s < 0 or min_segment_s < 0:
        raise ValueError("sample_step_s, duration_s, smoothing_window_s and min_segment_s "
                         "must be >= 0")
    step = float(sample_step_s) if sample_step_s > 0 else _estimate_step(predictions)

    by_face: dict[int, list[FacePrediction]] = defaultdict(list)
    for p in predictions:
        if len(p.probs) != n_cls:
            raise ValueError(f"face {p.face_id} frame {p.frame_index}: {len(p.probs)} "
                             f"probabilities for {n_cls} classes")
        by_face[int(p.face_id)].append(p)

    summaries: list[FaceSummary] = []
    for face_id in sorted(by_face):
        preds = sorted(by_face[face_id], key=lambda q: (q.time_s, q.frame_index))
        times = np.array([q.time_s for q in preds], dtype=np.float64)
        probs = np.array([q.probs for q in preds], dtype=np.float64)
        mean = probs.mean(axis=0)
        segments: list[Segment] = []
        for run in track_runs(times, step):
            t_run = times[run]
            sm = smooth_probs(probs[run], t_run, smoothing_window_s)
            label_runs = _label_runs(np.argmax(sm, axis=1))
            if min_segment_s > 0:
                label_runs = _merge_short(label_runs, sm, t_run, step, duration_s, min_segment_s)
            for (start, end), (_, _, lab) in zip(
                    _seg_bounds(label_runs, t_run, step, duration_s), label_runs):
                segments.append(Segment(start_s=start, end_s=end, emotion=classes[lab]))
        summaries.append(FaceSummary(
            face_id=face_id,
            first_seen_s=float(times[0]),
            last_seen_s=float(times[-1]),
            n_frames=len(preds),
            dominant_emotion=classes[int(np.argmax(mean))],
            mean_probs={c: float(v) for c, v in zip(classes, mean)},
            segments=segments,
        ))
    return summaries
