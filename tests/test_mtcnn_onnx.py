"""The torch-free detector (fer_video/mtcnn_onnx.py): the shipped ONNX networks compute what
the torch ones do, and the cascade on ONNX Runtime finds the faces the torch detector finds
on real clips (full frame, refine_near, detect_near), without importing torch."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from fer_video.decode import sample_frames
from fer_video.detect import FaceDetector
from fer_video.errors import SetupError
from fer_video.mtcnn_onnx import MODELS, OnnxFaceDetector, crop_resize


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
    return ix * iy / union if union > 0 else 0.0


def _matched(ref, got, iou_min: float) -> None:
    """Each of ``ref``'s detections has one in ``got`` at IoU >= iou_min, same count,
    scores and landmarks close."""
    assert len(got) == len(ref)
    for d in ref:
        best = max(got, key=lambda e: _iou(d.box, e.box))
        assert _iou(d.box, best.box) >= iou_min, (d.box, best.box)
        assert abs(d.score - best.score) < 0.01
        assert np.abs(np.array(d.landmarks) - np.array(best.landmarks)).max() < 2.0   # pixels


@pytest.fixture(scope="module")
def frames(samples):
    return [f.image for _, f in zip(range(12), sample_frames(str(samples / "pyfeat_single_face.mp4"), fps=4))]


def test_the_shipped_onnx_networks_compute_what_the_torch_networks_do():
    import onnxruntime as ort
    import torch

    from fer_video.mtcnn import load_networks, weights_dir

    rng = np.random.default_rng(0)
    shapes = {"pnet": (2, 3, 75, 101), "rnet": (5, 3, 24, 24), "onet": (3, 3, 48, 48)}
    for name, net in zip(shapes, load_networks(weights_dir(), torch.device("cpu"))):
        x = rng.uniform(-1, 1, shapes[name]).astype(np.float32)
        sess = ort.InferenceSession(str(MODELS / f"{name}.onnx"), providers=["CPUExecutionProvider"])
        with torch.inference_mode():
            ref = [t.numpy() for t in net(torch.from_numpy(x).contiguous(memory_format=torch.channels_last))]
        got = sess.run(None, {"x": x})
        assert [g.shape for g in got] == [r.shape for r in ref], name
        for g, r in zip(got, ref):
            np.testing.assert_allclose(g, r, atol=1e-4, err_msg=name)


def test_crops_are_the_torch_detectors_crops():
    import torch

    from fer_video import mtcnn

    rng = np.random.default_rng(1)
    level = rng.uniform(-1, 1, (2, 3, 40, 57)).astype(np.float32)
    # inside, across the edges, and partly outside the level
    edges = np.array([[3.2, 4.7, 30.1, 31.6], [-5.0, 20.0, 20.0, 45.0], [40.5, -3.3, 70.2, 26.4]], np.float32)
    inds = np.array([0, 1, 1])
    for size in (24, 48):
        ref = mtcnn.crop_resize(torch.from_numpy(level), torch.from_numpy(edges), torch.from_numpy(inds), size)
        np.testing.assert_allclose(crop_resize(level, edges, inds, size), ref.numpy(), atol=1e-5)
    # from a block of the level (what a region frame resizes): the same crops, zeros only
    # outside the level itself
    inside = np.array([[10.2, 12.7, 30.1, 31.6], [20.0, 5.0, 50.0, 35.0]], np.float32)
    for e, (x0, y0, x1, y1) in ((inside, (8, 3, 53, 38)), (edges[2:], (38, 0, 57, 29))):
        got = crop_resize(level[1:2, :, y0:y1, x0:x1], e, np.zeros(len(e), np.int64), 24,
                          origin=(x0, y0), limits=(57, 40))
        np.testing.assert_allclose(got, crop_resize(level, e, np.ones(len(e), np.int64), 24), atol=1e-6)


def test_it_finds_the_faces_the_torch_detector_finds_on_a_real_clip(frames):
    torch_det, onnx_det = FaceDetector(), OnnxFaceDetector()
    ref, got = torch_det.detect(frames), onnx_det.detect(frames)
    assert sum(map(len, ref)) >= len(frames) - 1          # the clip's one face, in (nearly) every frame
    for r, g in zip(ref, got):
        _matched(r, g, 0.95)
    # between keyframes: R/O-net at the frame before's boxes, and the windowed cascade
    for before, frame in zip(ref, frames[1:]):
        boxes = [d.box for d in before]
        _matched(torch_det.refine_near(frame, boxes), onnx_det.refine_near(frame, boxes), 0.95)
        _matched(torch_det.detect_near(frame, boxes), onnx_det.detect_near(frame, boxes), 0.95)
    assert onnx_det.detect_near(frames[0], []) == [] and onnx_det.refine_near(frames[0], []) == []


def test_a_frame_without_faces_and_bad_input(samples):
    det = OnnxFaceDetector()
    empty = [f.image for _, f in zip(range(2), sample_frames(str(samples / "pyfeat_no_face.mp4"), fps=1))]
    assert det.detect(empty) == [[], []]
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        det.detect([np.zeros((10, 10), np.uint8)])
    with pytest.raises(ValueError, match="reach"):
        det.detect_near(empty[0], [(0, 0, 10, 10)], reach=[0])


def test_missing_networks_are_a_one_line_setup_error(tmp_path):
    with pytest.raises(SetupError, match=r"MTCNN networks missing in .*pnet\.onnx, rnet\.onnx, onet\.onnx"):
        OnnxFaceDetector(models=tmp_path)
    (tmp_path / "pnet.onnx").write_bytes(b"not a model")
    (tmp_path / "rnet.onnx").write_bytes(b"")
    (tmp_path / "onet.onnx").write_bytes(b"")
    with pytest.raises(SetupError, match="cannot load the MTCNN network") as e:
        OnnxFaceDetector(models=tmp_path)
    assert "\n" not in str(e.value)


def test_it_detects_without_importing_torch(samples):
    code = ("import sys; from fer_video.decode import sample_frames; from fer_video.mtcnn_onnx import OnnxFaceDetector; "
            f"f = next(iter(sample_frames({str(samples / 'pyfeat_single_face.mp4')!r}, fps=1))).image; "
            "n = len(OnnxFaceDetector().detect([f])[0]); "
            "print(n, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "False"]
