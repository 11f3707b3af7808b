import numpy as np
import pytest

from fer_video.aggregate import smooth_probs, summarize_faces
from fer_video.records import FacePrediction

CLASSES = ["neutral", "happy", "sad"]
ONE_HOT = {c: tuple(1.0 if k == i else 0.0 for k in range(3)) for i, c in enumerate(CLASSES)}


def pred(face_id, t, probs, frame=None):
    if isinstance(probs, str):
        probs = ONE_HOT[probs]
    return FacePrediction(face_id=face_id, frame_index=round(t * 10) if frame is None else frame,
                          time_s=t, box=(0.0, 0.0, 10.0, 10.0), det_score=0.99, probs=tuple(probs))


def segs(summary):
    return [(round(s.start_s, 6), round(s.end_s, 6), s.emotion) for s in summary.segments]


# ---------------------------------------------------------------- smoothing

def test_smooth_hand_computed():
    probs = np.array([[1, 0], [0, 1], [1, 0], [1, 0]], dtype=float)
    times = np.array([0.0, 0.5, 1.0, 3.0])
    out = smooth_probs(probs, times, window_s=1.0)  # +-0.5 s, inclusive
    expected = np.array([[1 / 2, 1 / 2],    # t=0: samples at 0, 0.5
                         [2 / 3, 1 / 3],    # t=0.5: 0, 0.5, 1.0
                         [1 / 2, 1 / 2],    # t=1.0: 0.5, 1.0 (3.0 is across the gap)
                         [1.0, 0.0]])       # t=3.0: alone
    np.testing.assert_allclose(out, expected, atol=1e-12)


def test_smooth_unsorted_times_keep_input_order():
    probs = np.array([[1, 0], [0, 1], [1, 0]], dtype=float)
    times = np.array([1.0, 0.0, 0.4])
    out = smooth_probs(probs, times, window_s=1.0)
    np.testing.assert_allclose(out[0], [1.0, 0.0])        # 1.0: only itself (0.4 is 0.6 away)
    np.testing.assert_allclose(out[1], [0.5, 0.5])        # 0.0: 0.0, 0.4
    np.testing.assert_allclose(out[2], [0.5, 0.5])        # 0.4: 0.0, 0.4


def test_smooth_zero_window_renormalises_only():
    probs = np.array([[2.0, 2.0], [1.0, 3.0]])
    out = smooth_probs(probs, np.array([0.0, 0.1]), window_s=0.0)
    np.testing.assert_allclose(out, [[0.5, 0.5], [0.25, 0.75]])


def test_smooth_rows_sum_to_one_and_empty():
    rng = np.random.default_rng(0)
    p = rng.random((50, 7))
    out = smooth_probs(p, np.sort(rng.random(50) * 10), 2.0)
    np.testing.assert_allclose(out.sum(axis=1), 1.0)
    assert smooth_probs(np.zeros((0, 7)), np.zeros(0), 1.0).shape == (0, 7)


# ---------------------------------------------------------------- segments

def test_segments_switch_gap_and_end_cap():
    timeline = [(0.0, "happy"), (0.5, "happy"), (1.0, "happy"), (1.5, "happy"),
                (2.0, "sad"), (2.5, "sad"), (3.0, "sad"),
                # gap: 3.0 -> 4.5 is 1.5 s > 2 * 0.5 s, the face is absent
                (4.5, "sad")]
    preds = [pred(1, t, e) for t, e in timeline]
    [s] = summarize_faces(preds, CLASSES, sample_step_s=0.5, duration_s=4.8, smoothing_window_s=0.0)
    assert segs(s) == [(0.0, 2.0, "happy"),      # ends where the next segment starts
                       (2.0, 3.5, "sad"),        # last sample 3.0 + one step; gap ends it
                       (4.5, 4.8, "sad")]        # 4.5 + 0.5 capped at the video end
    assert (s.face_id, s.first_seen_s, s.last_seen_s, s.n_frames) == (1, 0.0, 4.5, 8)
    assert s.mean_probs == pytest.approx({"neutral": 0.0, "happy": 0.5, "sad": 0.5})
    assert s.dominant_emotion == "happy"  # tie -> earlier class


def test_interval_of_exactly_two_steps_is_not_a_gap():
    preds = [pred(1, t, "sad") for t in (0.0, 0.5, 1.5, 2.0)]
    [s] = summarize_faces(preds, CLASSES, 0.5, 10.0, smoothing_window_s=0.0)
    assert segs(s) == [(0.0, 2.5, "sad")]


def test_smoothing_removes_single_outlier():
    h, d = (0.05, 0.9, 0.05), (0.1, 0.2, 0.7)
    preds = [pred(1, t, p) for t, p in [(0.0, h), (0.5, h), (1.0, d), (1.5, h), (2.0, h)]]
    [raw] = summarize_faces(preds, CLASSES, 0.5, 10.0, smoothing_window_s=0.0)
    [smooth] = summarize_faces(preds, CLASSES, 0.5, 10.0, smoothing_window_s=1.0)
    assert [e for *_, e in segs(raw)] == ["happy", "sad", "happy"]
    assert segs(smooth) == [(0.0, 2.5, "happy")]


def test_smoothing_does_not_cross_gap():
    # A lone "sad" sample 1.5 s after a happy run: window 4 s would reach it, the gap must not.
    h = (0.0, 0.6, 0.4)
    preds = [pred(1, t, h) for t in (0.0, 0.5, 1.0)] + [pred(1, 2.5, "sad")]
    [s] = summarize_faces(preds, CLASSES, 0.5, 10.0, smoothing_window_s=4.0)
    assert segs(s) == [(0.0, 1.5, "happy"), (2.5, 3.0, "sad")]


def test_min_segment_merges_short_segment_into_neighbour():
    timeline = [(t / 2, "happy") for t in range(6)] + [(3.0, "sad")] + \
               [(3.5 + t / 2, "happy") for t in range(4)]
    preds = [pred(1, t, e) for t, e in timeline]
    [a] = summarize_faces(preds, CLASSES, 0.5, 10.0, smoothing_window_s=0.0)
    [b] = summarize_faces(preds, CLASSES, 0.5, 10.0, smoothing_window_s=0.0, min_segment_s=1.0)
    assert len(a.segments) == 3
    assert segs(b) == [(0.0, 5.5, "happy")]


def test_min_segment_keeps_a_lone_short_run():
    preds = [pred(1, 0.0, "sad")]
    [s] = summarize_faces(preds, CLASSES, 0.5, 10.0, min_segment_s=2.0)
    assert segs(s) == [(0.0, 0.5, "sad")]


def test_jittered_times_do_not_overlap():
    preds = [pred(1, 0.0, "happy"), pred(1, 0.48, "happy"), pred(1, 0.9, "sad")]
    [s] = summarize_faces(preds, CLASSES, 0.5, 10.0, smoothing_window_s=0.0)
    assert segs(s) == [(0.0, 0.9, "happy"), (0.9, 1.4, "sad")]


def test_still_image():
    [s] = summarize_faces([pred(3, 0.0, (0.2, 0.1, 0.7))], CLASSES, sample_step_s=0.0,
                          duration_s=0.0)
    assert segs(s) == [(0.0, 0.0, "sad")]
    assert (s.face_id, s.first_seen_s, s.last_seen_s, s.n_frames) == (3, 0.0, 0.0, 1)
    assert s.dominant_emotion == "sad"


def test_faces_sorted_by_id_and_empty_input():
    preds = [pred(7, 0.0, "happy"), pred(2, 0.0, "sad"), pred(2, 0.5, "sad")]
    out = summarize_faces(preds, CLASSES, 0.5, 2.0)
    assert [s.face_id for s in out] == [2, 7]
    assert summarize_faces([], CLASSES, 0.5, 2.0) == []


def test_wrong_number_of_probabilities_rejected():
    with pytest.raises(ValueError):
        summarize_faces([pred(1, 0.0, (0.5, 0.5))], CLASSES, 0.5, 2.0)


@pytest.mark.parametrize("seed", range(25))
def test_property_boundaries_inside_video_and_no_overlap(seed):
    rng = np.random.default_rng(seed)
    step = float(rng.choice([0.1, 0.25, 0.5, 1.0]))
    duration = float(rng.uniform(0.5, 30.0))
    preds = []
    for face in range(1, int(rng.integers(1, 4)) + 1):
        t = float(rng.uniform(0, duration))
        while t < duration + step:   # may overshoot the container duration slightly
            p = rng.dirichlet(np.ones(3) * 0.3)
            preds.append(pred(face, t, p, frame=int(t * 100)))
            t += step * (rng.uniform(0.8, 1.2) if rng.random() > 0.1 else rng.uniform(2.5, 6))
    out = summarize_faces(preds, CLASSES, step, duration,
                          smoothing_window_s=float(rng.choice([0.0, 0.5, 1.0, 3.0])),
                          min_segment_s=float(rng.choice([0.0, 0.3, 1.0])))
    for s in out:
        assert s.segments
        for seg in s.segments:
            assert 0.0 <= seg.start_s <= seg.end_s <= duration
            assert seg.emotion in CLASSES
        for a, b in zip(s.segments, s.segments[1:]):
            assert a.end_s <= b.start_s + 1e-12
        assert sum(s.mean_probs.values()) == pytest.approx(1.0)
