"""Face detection (fer_video.detect) on real frames with the real MTCNN weights."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_clip as shared

from fer_video.decode import sample_frames
from fer_video.detect import INSTALL_HINT, FaceDetector
from fer_video.errors import SetupError
from fer_video.records import Detection

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "sample_videos"


@pytest.fixture(scope="module")
def single_face_results(detector, single_face_frames):
    return detector.detect(single_face_frames)


def _inside(box, w, h):
    x1, y1, x2, y2 = box
    return 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h


def _iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_single_face_clip_has_one_face_per_frame(single_face_frames, single_face_results):
    assert len(single_face_results) == len(single_face_frames) == 12
    counts = [len(r) for r in single_face_results]
    assert sum(c == 1 for c in counts) >= 0.9 * len(counts), counts
    for dets in single_face_results:
        for d in dets:
            assert isinstance(d, Detection)
            assert _inside(d.box, 640, 360)
            assert 0.9 <= d.score <= 1.0
            x1, y1, x2, y2 = d.box
            assert 80 < x2 - x1 < 300          # a close-up webcam face, not a speck
            assert len(d.landmarks) == 5
            (lx, ly), (rx, ry), (nx, ny), (mlx, mly), (mrx, mry) = d.landmarks
            assert x1 <= lx < rx <= x2           # eyes left/right, inside the box
            assert max(ly, ry) < ny < min(mly, mry) <= y2   # eyes above nose above mouth


def test_no_face_clip_has_no_faces(detector):
    frames = [f.image for f in sample_frames(SAMPLES / "pyfeat_no_face.mp4", fps=2.0)]
    assert len(frames) == 8
    assert detector.detect(frames) == [[] for _ in frames]


@pytest.fixture(scope="module")
def crowd_frames():
    return [f.image for f in sample_frames(shared("facenet_crowd_1080p.mp4"), fps=1.0, end=2.5)]


@pytest.fixture(scope="module")
def crowd_results(detector, crowd_frames):
    return detector.detect(crowd_frames)


def test_crowd_has_several_faces_per_frame(crowd_results):
    assert len(crowd_results) == 3
    for dets in crowd_results:
        assert len(dets) >= 4, [len(r) for r in crowd_results]
        for d in dets:
            assert _inside(d.box, 1920, 1080)
            assert d.score >= 0.9
        assert [d.score for d in dets] == sorted((d.score for d in dets), reverse=True)
        # at 1080p the boxes come back in full-frame pixels, not detection (960 px) pixels
        assert max(d.box[2] for d in dets) > 960 or max(d.box[3] for d in dets) > 540


def test_threshold_is_the_final_score(crowd_frames, crowd_results):
    lax = FaceDetector(threshold=0.7).detect(crowd_frames)
    strict = FaceDetector(threshold=0.99).detect(crowd_frames)
    weak = [d for r in crowd_results for d in r if d.score < 0.99]
    assert weak, "the crowd should have faces scoring between 0.9 and 0.99"
    assert sum(map(len, strict)) == sum(map(len, crowd_results)) - len(weak)
    assert sum(map(len, lax)) > sum(map(len, crowd_results))
    assert all(d.score >= 0.99 for r in strict for d in r)
    assert all(d.score >= 0.7 for r in lax for d in r)


def test_downscaled_detection_maps_boxes_back(single_face_frames, single_face_results):
    small = FaceDetector(max_side=320)          # detect at half size
    assert small.detection_scale(360, 640) == 0.5
    frames = single_face_frames[:4]
    for full, half in zip(single_face_results[:4], small.detect(frames)):
        assert len(full) == len(half) == 1
        a, b = full[0].box, half[0].box
        assert _iou(a, b) > 0.8, (a, b)
        width = a[2] - a[0]
        for (ax, ay), (bx, by) in zip(full[0].landmarks, half[0].landmarks):
            assert abs(ax - bx) < 0.1 * width and abs(ay - by) < 0.1 * width


def test_batching_does_not_change_results(detector, single_face_frames, single_face_results):
    one_by_one = [detector.detect([f])[0] for f in single_face_frames[:3]]
    for alone, batched in zip(one_by_one, single_face_results[:3]):
        assert len(alone) == len(batched)
        for a, b in zip(alone, batched):
            assert np.allclose(a.box, b.box, atol=1e-3) and abs(a.score - b.score) < 1e-5


def test_frames_of_different_sizes_in_one_call(detector, single_face_frames, single_face_results):
    frame = single_face_frames[0]
    crop = np.ascontiguousarray(frame[:, 160:480])     # 320 wide, face still inside
    results = detector.detect([frame, crop, frame])
    assert [len(r) for r in results] == [1, 1, 1]
    # the same face, shifted by the crop offset
    a, b = results[0][0].box, results[1][0].box
    assert _iou(a, (b[0] + 160, b[1], b[2] + 160, b[3])) > 0.8


def test_min_face_is_in_original_pixels(single_face_frames, single_face_results):
    width = single_face_results[0][0].box[2] - single_face_results[0][0].box[0]
    big_only = FaceDetector(min_face=width * 1.5)
    assert big_only.detect(single_face_frames[:1]) == [[]]
    # the same bound holds when the frame is downscaled for detection
    assert FaceDetector(min_face=width * 1.5, max_side=320).detect(single_face_frames[:1]) == [[]]
    assert len(FaceDetector(min_face=width * 0.6, max_side=320).detect(single_face_frames[:1])[0]) == 1


def test_empty_input_and_blank_frames(detector):
    assert detector.detect([]) == []
    assert detector.detect([np.zeros((100, 100, 3), np.uint8)]) == [[]]
    assert detector.detect([np.zeros((5, 5, 3), np.uint8)]) == [[]]   # smaller than any face


def test_rejects_non_rgb_input(detector):
    with pytest.raises(ValueError):
        detector.detect([np.zeros((10, 10), np.uint8)])
    with pytest.raises(ValueError):
        detector.detect([np.zeros((10, 10, 3), np.float32)])


@pytest.mark.parametrize("kwargs", [dict(min_face=0), dict(threshold=1.5), dict(batch_size=0),
                                    dict(factor=1.0), dict(max_side=4)])
def test_bad_settings(kwargs):
    with pytest.raises(ValueError):
        FaceDetector(**kwargs)


def test_missing_facenet_is_a_setup_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "facenet_pytorch", None)   # import now fails
    with pytest.raises(SetupError) as e:
        FaceDetector()
    assert INSTALL_HINT in str(e.value)
    assert "pip install --no-deps facenet-pytorch==2.6.0" in str(e.value)
    assert e.value.exit_code == 3


def test_missing_weight_files_are_a_setup_error(monkeypatch, tmp_path):
    import importlib.machinery
    import importlib.util
    (tmp_path / "facenet_pytorch" / "data").mkdir(parents=True)
    (tmp_path / "facenet_pytorch" / "data" / "pnet.pt").write_bytes(b"")
    spec = importlib.machinery.ModuleSpec("facenet_pytorch", None, is_package=True)
    spec.submodule_search_locations = [str(tmp_path / "facenet_pytorch")]
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: spec if name == "facenet_pytorch" else real(name, *a))
    with pytest.raises(SetupError) as e:
        FaceDetector()
    assert "rnet.pt" in str(e.value) and INSTALL_HINT in str(e.value)


# ----------------------------------------------------------------------------- equivalence
# The cascade re-implements facenet-pytorch's detect_face without torchvision; these pin
# the pieces to the originals.

def test_networks_match_facenet_pytorch(detector):
    import torch
    from facenet_pytorch.models.mtcnn import ONet, PNet, RNet
    torch.manual_seed(0)
    for ours, theirs, shape in [(detector._pnet, PNet(), (2, 3, 37, 53)),
                                (detector._rnet, RNet(), (5, 3, 24, 24)),
                                (detector._onet, ONet(), (5, 3, 48, 48))]:
        x = torch.randn(*shape)
        with torch.inference_mode():
            a = ours(x.contiguous(memory_format=torch.channels_last))
            b = theirs.eval()(x)
        assert len(a) == len(b)
        for u, v in zip(a, b):
            assert torch.allclose(u, v, atol=1e-5), (type(theirs).__name__, (u - v).abs().max())


def test_max_pool_matches_torch():
    import torch
    from fer_video.mtcnn import max_pool_2x2_ceil as _max_pool_2x2_ceil
    torch.manual_seed(0)
    for shape in [(2, 10, 8, 12), (1, 10, 7, 9), (1, 10, 6, 5), (1, 10, 1, 1)]:
        x = torch.randn(*shape).contiguous(memory_format=torch.channels_last)
        assert torch.equal(_max_pool_2x2_ceil(x), torch.nn.functional.max_pool2d(x, 2, 2, ceil_mode=True))


def _random_boxes(n, seed, span, max_size, groups):
    """n overlapping boxes in a span x span area, with scores and group indices, reproducibly."""
    import torch
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * span
    wh = torch.rand(n, 2, generator=g) * max_size + 5
    boxes = torch.cat([xy, xy + wh], dim=1)
    return boxes, torch.rand(n, generator=g), torch.randint(0, groups, (n,), generator=g)


def test_nms_matches_torchvision():
    import torch
    from torchvision.ops import batched_nms
    from fer_video.mtcnn import batched_nms as _batched_nms
    boxes, scores, inds = _random_boxes(400, seed=0, span=200, max_size=40, groups=3)
    for thr in (0.3, 0.5, 0.7):
        assert torch.equal(_batched_nms(boxes, scores, inds, thr), batched_nms(boxes, scores, inds, thr))


def test_min_nms_matches_facenet_pytorch():
    from facenet_pytorch.models.utils.detect_face import batched_nms_numpy
    from fer_video.mtcnn import batched_nms as _batched_nms
    boxes, scores, inds = _random_boxes(200, seed=1, span=150, max_size=50, groups=2)
    ours = _batched_nms(boxes, scores, inds, 0.7, mode="min")
    theirs = batched_nms_numpy(boxes, scores, inds, 0.7, "Min")
    assert sorted(ours.tolist()) == sorted(theirs.tolist())


def test_crops_match_roi_align():
    import torch
    from torchvision.ops import roi_align
    from fer_video.mtcnn import crop_resize as _crop_resize
    g = torch.Generator().manual_seed(2)
    level = torch.rand(2, 3, 60, 80, generator=g)
    edges = torch.tensor([[10.0, 5.0, 34.0, 29.0], [20.3, 11.7, 70.9, 58.2], [0.5, 0.5, 30.0, 30.0]])
    inds = torch.tensor([0, 1, 1])
    for size in (24, 48):
        ours = _crop_resize(level, edges, inds, size)
        rois = torch.cat([inds[:, None].float(), edges], dim=1)
        ref = roi_align(level, rois, (size, size), spatial_scale=1.0, sampling_ratio=2, aligned=True)
        assert torch.allclose(ours, ref, atol=1e-5), (ours - ref).abs().max()


def test_boxes_agree_with_facenet_pytorch_mtcnn(single_face_frames, single_face_results):
    from facenet_pytorch import MTCNN
    mtcnn = MTCNN(keep_all=True, min_face_size=20, thresholds=[0.6, 0.7, 0.9])
    frames = single_face_frames[:4]
    boxes, probs = mtcnn.detect(np.stack(frames))
    for ours, theirs, p in zip(single_face_results[:4], boxes, probs):
        assert theirs is not None and len(ours) == len(theirs) == 1
        assert _iou(ours[0].box, tuple(theirs[0])) > 0.8
        assert abs(ours[0].score - p[0]) < 0.01


def test_detection_does_not_import_torchvision():
    # torchvision's import costs as much start-up time as torch's (it imports torch._dynamo).
    import subprocess
    code = ("import sys, numpy as np; from fer_video.detect import FaceDetector; "
            "FaceDetector().detect([np.zeros((64, 64, 3), np.uint8)]); "
            "sys.exit(3 if 'torchvision' in sys.modules or 'facenet_pytorch' in sys.modules else 0)")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]


def test_concurrent_calls_give_the_same_results(detector, single_face_frames, single_face_results):
    from concurrent.futures import ThreadPoolExecutor
    chunks = [single_face_frames[i:i + 4] for i in range(0, 12, 4)]
    with ThreadPoolExecutor(3) as pool:
        got = [d for r in pool.map(detector.detect, chunks) for d in r]
    batched = [d for c in chunks for d in detector.detect(c)]
    assert got == batched
    assert [len(r) for r in got] == [len(r) for r in single_face_results]
