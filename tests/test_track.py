"""Face tracking (fer_video.track): synthetic boxes for the rules, real clips end to end."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from conftest import shared_clip

from fer_video.records import Detection, TrackedFace
from fer_video.track import FaceTracker

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "sample_videos"


def det(cx, cy, side=40.0, score=0.99):
    h = side / 2
    return Detection(box=(cx - h, cy - h, cx + h, cy + h), score=score)


def run(tracker, frames, step=0.2):
    """frames: list of detection lists, one per sampled frame ``step`` seconds apart."""
    return [tracker.update(i, round(i * step, 6), dets) for i, dets in enumerate(frames)]


# ----------------------------------------------------------------------------- rules

def test_output_matches_detections_one_to_one():
    tr = FaceTracker()
    dets = [det(100, 100, score=0.95), det(300, 100, score=0.91)]
    out = tr.update(7, 1.4, dets)
    assert all(isinstance(t, TrackedFace) for t in out)
    assert [t.face_id for t in out] == [1, 2]
    assert [(t.frame_index, t.time_s) for t in out] == [(7, 1.4), (7, 1.4)]
    assert [t.box for t in out] == [d.box for d in dets]
    assert [t.score for t in out] == [0.95, 0.91]
    assert tr.update(8, 1.6, []) == []


def test_a_slowly_moving_face_keeps_its_id():
    tr = FaceTracker()
    out = run(tr, [[det(100 + 5 * i, 100)] for i in range(20)])
    assert {t.face_id for frame in out for t in frame} == {1}


def test_ids_follow_faces_whatever_the_detection_order():
    tr = FaceTracker()
    frames = []
    for i in range(6):
        a, b = det(100 + 3 * i, 100), det(400 - 3 * i, 120)
        frames.append([a, b] if i % 2 == 0 else [b, a])
    out = run(tr, frames)
    for i, frame in enumerate(out):
        by_x = sorted(frame, key=lambda t: t.box[0])
        assert [t.face_id for t in by_x] == [1, 2], i


def test_new_faces_get_the_next_ids():
    tr = FaceTracker()
    out = run(tr, [[det(100, 100)], [det(100, 100), det(500, 100)], [det(100, 100), det(500, 100), det(300, 400)]])
    assert [sorted(t.face_id for t in f) for f in out] == [[1], [1, 2], [1, 2, 3]]


def test_crossing_faces_keep_their_ids():
    # Two faces walk towards each other on nearly the same line and pass; at the
    # crossing their boxes overlap each other as much as their own previous boxes.
    tr = FaceTracker()
    frames = [[det(460 - 30 * i, 210, side=60), det(100 + 30 * i, 200, side=60)]
              for i in range(13)]                       # [walking left, walking right]
    out = run(tr, frames)
    assert [(f[0].face_id, f[1].face_id) for f in out] == [(1, 2)] * 13


def test_hungarian_assignment_beats_greedy():
    # Track A overlaps both new detections, track B only d0. Greedy best-IoU first would
    # give d0 to A (IoU 0.54) and leave B stranded and d1 a new id; the minimum-cost
    # assignment gives d1 to A (0.43) and d0 to B (0.43).
    tr = FaceTracker(iou_threshold=0.3)
    first = tr.update(0, 0.0, [Detection((0, 0, 100, 100), 0.99), Detection((70, 0, 170, 100), 0.99)])
    assert [t.face_id for t in first] == [1, 2]
    d0, d1 = Detection((30, 0, 130, 100), 0.99), Detection((-40, 0, 60, 100), 0.99)
    out = tr.update(1, 0.04, [d0, d1])
    assert [t.face_id for t in out] == [2, 1]


def test_a_track_survives_a_short_gap_and_ends_after_a_long_one():
    tr = FaceTracker(max_gap_s=1.0)
    seq = [[det(100, 100)], [], [], [], [det(102, 101)],          # 0.8 s without detection
           [], [], [], [], [], [], [det(104, 100)]]               # 1.4 s without
    out = run(tr, seq)
    ids = [t.face_id for f in out for t in f]
    assert ids == [1, 1, 2]


def test_gap_limit_is_in_seconds_not_frames():
    # Every frame at 25 fps: 20 empty frames = 0.84 s < 1 s.
    tr = FaceTracker(max_gap_s=1.0)
    frames = [[det(100, 100)]] + [[] for _ in range(20)] + [[det(101, 100)]]
    out = run(tr, frames, step=0.04)
    assert [t.face_id for f in out for t in f] == [1, 1]


def test_fast_small_face_keeps_its_id():
    # A 40 px face moving 75 px per sample at 5 fps: no IoU with its last box.
    tr = FaceTracker()
    out = run(tr, [[det(100 + 75 * i, 300), det(900, 100, side=80)] for i in range(8)])
    assert [f[0].face_id for f in out] == [1] * 8
    assert [f[1].face_id for f in out] == [2] * 8


def test_velocity_prediction_follows_a_face_faster_than_the_fallback_gate():
    # 120 px per 0.2 s = 3 face widths per sample: beyond the fallback's reach, only the
    # constant-velocity prediction can follow it. It starts slower (first steps are within
    # the gate), then keeps its speed.
    tr = FaceTracker()
    xs = [100, 170, 250, 370, 490, 610, 730]
    out = run(tr, [[det(x, 300)] for x in xs])
    assert [f[0].face_id for f in out] == [1] * len(xs)


def test_no_fallback_after_a_long_gap():
    # After 0.8 s without a detection, a face 1.3 widths away is someone else.
    tr = FaceTracker()
    out = run(tr, [[det(100, 100)], [], [], [], [det(152, 100)]])
    assert [t.face_id for f in out for t in f] == [1, 2]


def test_different_sizes_are_not_matched_by_distance():
    tr = FaceTracker()
    out = run(tr, [[det(100, 100, side=40)], [det(130, 100, side=90)]])
    assert [t.face_id for f in out for t in f] == [1, 2]


def test_missed_ids_tells_which_faces_of_the_last_frame_an_update_would_leave_unmatched():
    """What track-guided detection asks of a region frame's detections; the tracker's state
    does not change (the update after it gives what it would have given anyway)."""
    a, b = FaceTracker(), FaceTracker()
    for tr in (a, b):
        run(tr, [[det(100, 100), det(300, 100)], [det(104, 100), det(304, 100)]])
    assert a.missed_ids(0.4, [det(108, 100), det(308, 100)]) == set()
    assert a.missed_ids(0.4, [det(108, 100)]) == {2}
    assert a.missed_ids(0.4, [det(600, 300)]) == {1, 2}     # too far: a new face
    assert a.missed_ids(0.4, []) == {1, 2}
    new = [det(108, 100), det(600, 300)]
    assert [t.face_id for t in a.update(2, 0.4, new)] == [t.face_id for t in b.update(2, 0.4, new)] == [1, 3]
    assert a.seen_ids() == {1, 3}
    assert a.missed_ids(0.6, [det(112, 100)]) == {3}        # face 2, unseen at 0.4, is not asked about
    assert FaceTracker().missed_ids(0.0, [det(1, 1)]) == set()


def test_time_must_not_go_backwards():
    tr = FaceTracker()
    tr.update(5, 1.0, [det(100, 100)])
    with pytest.raises(ValueError):
        tr.update(4, 0.8, [det(100, 100)])


@pytest.mark.parametrize("kwargs", [dict(iou_threshold=0), dict(iou_threshold=1.5), dict(max_gap_s=-1)])
def test_bad_settings(kwargs):
    with pytest.raises(ValueError):
        FaceTracker(**kwargs)


# ----------------------------------------------------------------------------- real clips

@pytest.fixture(scope="module")
def detector():
    from fer_video.detect import FaceDetector
    return FaceDetector()


def track_clip(detector, path, **sample_kw):
    from fer_video.decode import sample_frames
    frames = list(sample_frames(path, **sample_kw))
    detections = detector.detect([f.image for f in frames])
    tracker = FaceTracker()
    return [tracker.update(f.frame_index, f.time_s, d) for f, d in zip(frames, detections)]


def test_single_face_clip_is_one_id(detector):
    out = track_clip(detector, SAMPLES / "pyfeat_single_face.mp4", fps=5.0)
    ids = [t.face_id for f in out for t in f]
    assert len(ids) >= 11 and set(ids) == {1}


def test_crowd_gets_several_stable_ids(detector):
    path = shared_clip("facenet_crowd_1080p.mp4")
    out = track_clip(detector, path, fps=5.0, end=2.0)        # 10 samples
    assert len(out) == 10
    for frame in out:
        ids = [t.face_id for t in frame]
        assert len(ids) == len(set(ids))                      # never two faces, one id
    seen = Counter(t.face_id for f in out for t in f)
    assert len(seen) >= 4
    steady = [i for i, n in seen.items() if n >= 7]           # followed through most samples
    assert len(steady) >= 3, seen


def test_one_row_or_column_shortcut_agrees_with_hungarian():
    import numpy as np
    from scipy.optimize import linear_sum_assignment
    from fer_video.track import _min_cost_assignment
    rng = np.random.default_rng(0)
    for shape in [(1, 1), (1, 5), (4, 1)]:
        for _ in range(20):
            cost = rng.random(shape)
            rows, cols = _min_cost_assignment(cost)
            ref_rows, ref_cols = linear_sum_assignment(cost)
            assert cost[rows, cols].sum() == cost[ref_rows, ref_cols].sum()
            assert list(rows) == list(ref_rows) and list(cols) == list(ref_cols)
