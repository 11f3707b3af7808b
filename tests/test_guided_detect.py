"""Track-guided detection (``keyframe_every``): region detection between keyframes, on real
clips with the real MTCNN weights."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fer_video.decode import sample_frames
from fer_video.detect import ROI_REACH_MISSED, Keyframes, frame_signature, is_shot_cut
from fer_video.errors import UsageError
from fer_video.job import load_models
from fer_video.pipeline import analyze_video
from fer_video.settings import Settings
from fer_video.threads import ThreadPlan

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "sample_videos"


def _iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.fixture(scope="module")
def no_face_frames():
    return [f.image for f in sample_frames(SAMPLES / "pyfeat_no_face.mp4", fps=5.0)]


@pytest.mark.parametrize("search", ["detect_near", "refine_near"])
def test_region_search_finds_the_full_frame_face(detector, single_face_frames, search):
    """Both region searches, from the frame before's full-frame box, find the face full-frame
    detection finds (IoU >= 0.8), with an O-net score and 5 landmarks: the P-net windows
    (``detect_near``) and R-net and O-net alone on candidates made from the box
    (``refine_near``). Nothing to look near, or a region without a face: nothing found."""
    near = getattr(detector, search)
    full = detector.detect(single_face_frames)
    for i in range(1, len(single_face_frames)):
        found = near(single_face_frames[i], [d.box for d in full[i - 1]])
        assert len(found) == len(full[i]) == 1
        assert _iou(found[0].box, full[i][0].box) >= 0.8
        assert found[0].score >= detector.threshold and len(found[0].landmarks) == 5
    assert near(single_face_frames[0], []) == []
    assert near(single_face_frames[0], [(0.0, 0.0, 40.0, 40.0)]) == []


def _face_moved(detector, no_face_frames, single_face_frames, widths: float):
    """Two real frames: the sample's face pasted on a faceless background, then moved right by
    ``widths`` of its box; returns (its box in the first, the second frame)."""
    x1, y1, x2, y2 = (int(v) for v in detector.detect([single_face_frames[0]])[0][0].box)
    m = (x2 - x1) // 3
    face = single_face_frames[0][max(0, y1 - m):y2 + m, max(0, x1 - m):x2 + m]
    img = no_face_frames[0].copy()
    img[60:60 + face.shape[0], 20:20 + face.shape[1]] = face
    box = detector.detect_one(img)[0].box
    moved = no_face_frames[1].copy()
    dx = int(widths * (box[2] - box[0]))
    moved[60:60 + face.shape[0], 20 + dx:20 + dx + face.shape[1]] = face
    return img, box, moved


def test_a_face_refine_near_misses_is_found_in_the_windows(detector, no_face_frames,
                                                            single_face_frames):
    """A face 0.7 widths from its track's box: beyond refine_near's shifts, inside
    detect_near's 3x window. Track-guided detection finds it in the same region frame with
    the P-net windows (counted in ``window_searches``), no full-frame search."""
    from fer_video.detect_stage import GuidedDetect
    from fer_video.records import SampledFrame
    from fer_video.track import FaceTracker

    first, box, moved = _face_moved(detector, no_face_frames, single_face_frames, 0.7)
    full = detector.detect_one(moved)
    assert len(full) == 1
    assert detector.refine_near(moved, [box]) == []
    near = detector.detect_near(moved, [box])
    assert len(near) == 1 and _iou(near[0].box, full[0].box) >= 0.8

    tracker, handed = FaceTracker(), []

    def on_frame(frame, detections):
        tracker.update(frame.frame_index, frame.time_s, detections)
        handed.append(detections)

    guided = GuidedDetect(detector, every=5, tracks=tracker, on_frame=on_frame)
    guided.submit([SampledFrame(frame_index=0, time_s=0.0, image=first),
                   SampledFrame(frame_index=1, time_s=0.2, image=moved)])
    assert [len(d) for d in handed] == [1, 1]
    assert _iou(handed[1][0].box, full[0].box) >= 0.8
    s = guided.stats
    assert (s.keyframes, s.roi_frames, s.lost_tracks, s.window_searches) == (1, 1, 0, 1)


def test_a_wider_reach_finds_a_face_further_from_its_box(detector, no_face_frames,
                                                         single_face_frames):
    """``reach`` widens a box's region (track-guided detection gives 2 to a track missed in
    the frame before): a real face 2.2 widths from the box is outside the 3x square and
    inside the 6x one, where it gets the full-frame box."""
    _, box, shifted = _face_moved(detector, no_face_frames, single_face_frames, 2.2)
    full = detector.detect_one(shifted)
    assert len(full) == 1
    assert detector.detect_near(shifted, [box]) == []
    assert detector.detect_near(shifted, [box], [1.0]) == []
    wide = detector.detect_near(shifted, [box], [ROI_REACH_MISSED])
    assert len(wide) == 1 and _iou(wide[0].box, full[0].box) >= 0.8
    with pytest.raises(ValueError):
        detector.detect_near(shifted, [box], [1.0, 2.0])


def test_detect_one_is_detect_of_one_frame(detector, single_face_frames):
    a, b = detector.detect_one(single_face_frames[0]), detector.detect([single_face_frames[0]])[0]
    assert len(a) == len(b) == 1
    assert np.allclose(a[0].box, b[0].box, atol=1e-3)


def test_a_shot_cut_forces_a_keyframe(no_face_frames, single_face_frames):
    assert not any(is_shot_cut(frame_signature(a), frame_signature(b))
                   for a, b in zip(single_face_frames, single_face_frames[1:]))
    keys = Keyframes(every=100)
    flags = [keys.is_keyframe(f) for f in no_face_frames[:4] + single_face_frames[:4]]
    assert flags == [True, False, False, False, True, False, False, False]
    assert keys.stats.shot_cuts == 1 and keys.stats.keyframes == 2 and keys.stats.roi_frames == 6


def test_every_n_th_frame_and_after_a_lost_track(single_face_frames):
    keys = Keyframes(every=3)
    flags = []
    for i, f in enumerate(single_face_frames[:9]):
        flags.append(keys.is_keyframe(f))
        if i == 4:
            keys.lost()        # frame 4's region search lost a track: searched in full, counted
    assert flags == [True, False, False, True, False, False, False, True, False]
    assert keys.stats.lost_tracks == 1
    assert (keys.stats.keyframes, keys.stats.roi_frames) == (4, 5)   # 0, 3, 4 (again), 7
    fresh = Keyframes(every=3)
    assert fresh.is_keyframe(single_face_frames[0])
    with pytest.raises(RuntimeError):
        fresh.lost()           # only after a region frame
    with pytest.raises(ValueError):
        Keyframes(every=0)


def _write_clip(path: Path, frames: list[np.ndarray], fps: int = 5) -> None:
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "yuv420p"
        stream.options = {"qscale": "2"}
        for img in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        out.mux(stream.encode(None))


@pytest.fixture(scope="module")
def entering_clip(tmp_path_factory, detector, no_face_frames, single_face_frames):
    """A real no-face clip into which, from sampled frame 7 on, a real face is pasted (a
    crop around it: a small change of the frame, not a shot cut)."""
    x1, y1, x2, y2 = (int(v) for v in detector.detect([single_face_frames[0]])[0][0].box)
    m = (x2 - x1) // 3
    frames = []
    for i, bg in enumerate(no_face_frames[:16]):
        img = bg.copy()
        if i >= 7:
            src = single_face_frames[(i - 7) % len(single_face_frames)]
            crop = src[max(0, y1 - m):y2 + m, max(0, x1 - m):x2 + m]
            img[100:100 + crop.shape[0], 300:300 + crop.shape[1]] = crop
        frames.append(img)
    assert not is_shot_cut(frame_signature(frames[6]), frame_signature(frames[7]))
    path = tmp_path_factory.mktemp("entering") / "entering.mp4"
    _write_clip(path, frames)
    return path


def _analyze(path, model_path, **kw):
    settings = Settings(device="cpu", model=str(model_path), fps=5.0, min_track=1, **kw)
    detector, classifier = load_models(settings)
    return analyze_video(path, settings, detector=detector, classifier=classifier,
                         threads=ThreadPlan())


def test_a_face_that_enters_is_found_within_n_frames(entering_clip, model_path):
    full = _analyze(entering_clip, model_path, keyframe_every=1)
    assert len(full.faces) == 1 and full.faces[0].first_seen_s == pytest.approx(7 / 5, abs=0.01)
    guided = _analyze(entering_clip, model_path, keyframe_every=5)
    assert len(guided.faces) == 1
    # entered at sampled frame 7 (not a keyframe: 0, 5, 10, ...); found at the next, 10
    assert guided.faces[0].first_seen_s == pytest.approx(10 / 5, abs=0.01)
    assert guided.faces[0].last_seen_s == full.faces[0].last_seen_s
    assert guided.detection.keyframes < guided.n_samples and guided.detection.roi_frames > 0
    by_frame = {p.frame_index: p.box for p in full.predictions}
    assert all(_iou(p.box, by_frame[p.frame_index]) >= 0.8 for p in guided.predictions)


def test_a_face_missed_by_the_region_search_is_searched_for_in_the_same_frame(
        detector, no_face_frames, single_face_frames):
    """A real face 2.5 widths from where its track was (too far for the region around the
    track): that frame is searched again as a whole at once, so its face is not lost; it
    counts as a keyframe forced by a lost track. (The earlier rule searched only the next
    frame as a whole: this frame's face row was lost, and in the 1080p crowd clip a fast
    face lost its id that way, renumbering four others.)"""
    from fer_video.detect_stage import GuidedDetect
    from fer_video.records import SampledFrame
    from fer_video.track import FaceTracker

    x1, y1, x2, y2 = (int(v) for v in detector.detect([single_face_frames[0]])[0][0].box)
    m = (x2 - x1) // 3
    face = single_face_frames[0][max(0, y1 - m):y2 + m, max(0, x1 - m):x2 + m]
    shift = int(2.5 * (x2 - x1))
    frames = []
    for i, x in enumerate((20, 20 + shift)):
        img = no_face_frames[i].copy()
        img[60:60 + face.shape[0], x:x + face.shape[1]] = face
        frames.append(SampledFrame(frame_index=i, time_s=i / 5, image=img))
    tracker, handed = FaceTracker(), []

    def on_frame(frame, detections):
        tracker.update(frame.frame_index, frame.time_s, detections)
        handed.append(detections)

    guided = GuidedDetect(detector, every=5, tracks=tracker, on_frame=on_frame)
    guided.submit(frames)
    assert [len(d) for d in handed] == [1, 1]
    assert handed[1] == detector.detect_one(frames[1].image)
    assert (guided.stats.keyframes, guided.stats.roi_frames, guided.stats.lost_tracks) == (2, 0, 1)
    assert guided.stats.window_searches == 1   # R/O-net, then the windows, then the whole frame


def test_keyframe_every_1_is_full_frame_detection(detector, model_path):
    clip = SAMPLES / "pyfeat_single_face.mp4"
    result = _analyze(clip, model_path, keyframe_every=1)
    frames = list(sample_frames(clip, fps=5.0))
    expected = [(f.frame_index, d.box, d.score) for f, dets in zip(frames, detector.detect([f.image for f in frames]))
                for d in dets]
    assert [(p.frame_index, p.box, p.det_score) for p in result.predictions] == expected
    assert result.detection.keyframes == result.n_samples == len(frames)
    assert result.detection.roi_frames == 0


def test_guided_clip_matches_full_frame(model_path):
    clip = SAMPLES / "pyfeat_single_face.mp4"
    full, guided = (_analyze(clip, model_path, keyframe_every=n) for n in (1, 5))
    assert [f.face_id for f in guided.faces] == [f.face_id for f in full.faces] == [1]
    assert len(guided.predictions) == len(full.predictions)
    for a, b in zip(full.predictions, guided.predictions):
        assert a.frame_index == b.frame_index and _iou(a.box, b.box) >= 0.8
    assert guided.detection.keyframes + guided.detection.roi_frames == guided.n_samples
    # R-net and O-net alone kept the one face in every region frame: no P-net window searched
    assert guided.detection.roi_frames > 0 and guided.detection.window_searches == 0


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_keyframe_every_is_validated(bad):
    with pytest.raises(UsageError):
        Settings(keyframe_every=bad)
