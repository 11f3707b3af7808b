"""The int8 classifier (fer_video/int8.py): real crops from real clips through real MTCNN,
the shipped checkpoint with its stored ranges, the CLI's errors."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from fer_video.checkpoint import default_model_path, load_checkpoint
from fer_video.classify import EmotionClassifier
from fer_video.int8 import QConv, int8_engine, int8_network, run_points, _FloatOps
from fer_video.predict import fold_batchnorm, resolve_precision
from fer_video.preprocess import to_tensor

from conftest import REPO, assert_no_traceback

needs_engine = pytest.mark.skipif(int8_engine() is None, reason="this torch has no x86 quantized engine")


@pytest.fixture(scope="module")
def crops(samples):
    from fer_video.decode import sample_frames
    from fer_video.detect import FaceDetector

    clf = EmotionClassifier(device="cpu", precision="fp32")
    frames = [f.image for clip in ("pyfeat_single_face.mp4", "liveportrait_d19.mp4")
              for f in sample_frames(str(samples / clip), fps=5)]
    out = []
    for image, dets in zip(frames, FaceDetector().detect(frames)):
        out += [clf.crop(image, d.box, d.landmarks) for d in dets]
    assert len(out) >= 20
    return np.stack(out)


def test_the_named_points_forward_is_the_networks_forward(crops):
    model, config = load_checkpoint(default_model_path())
    x = to_tensor(crops, config).contiguous(memory_format=torch.channels_last)
    seen: dict = {}
    with torch.no_grad():
        ref = model.eval()(x)
        ours = run_points(fold_batchnorm(model), x, _FloatOps(seen))
    np.testing.assert_allclose(ours.numpy(), ref.numpy(), atol=2e-4)
    # every point int8 rounds at was observed: input, stem, 16 blocks x 4, 4 downsamples, head
    assert len(seen) == 71 and {"input", "stem", "layer1.0.down", "layer4.2.out", "head.conv"} <= set(seen)


@needs_engine
def test_int8_runs_in_int8_and_keeps_fp32s_top_class_on_real_clips(crops):
    fp32 = EmotionClassifier(device="cpu", precision="fp32")
    int8 = EmotionClassifier(device="cpu", precision="int8")
    assert int8.info()["precision"] == "int8"
    # int8's own calibrated temperature, recorded with the report's model
    assert int8.info()["temperature"] == int8.config.int8["temperature"] != fp32.info()["temperature"]
    convs = [m for m in int8.model.modules() if isinstance(m, QConv)]
    assert len(convs) == 54                                  # 53 of the trunk + the seed head's
    assert not any(isinstance(m, torch.nn.Conv2d) for m in int8.model.modules())
    p32, p8 = fp32.predict_crops(list(crops)), int8.predict_crops(list(crops))
    diff = np.abs(p32 - p8)
    # really int8 (not fp32 again), and close: docs/benchmarks.md has the figures on every
    # test split; print(diff.max()) shows what it is on these clips
    assert 1e-4 < diff.max() < 0.15
    assert (p32.argmax(1) == p8.argmax(1)).mean() >= 0.95
    np.testing.assert_allclose(p8.sum(1), 1.0, atol=1e-12)


@needs_engine
def test_the_shipped_checkpoint_carries_its_int8_ranges_and_how_they_compare():
    model, config = load_checkpoint(default_model_path())
    assert config.int8["images"] == 1024 and len(config.int8["points"]) == 71
    assert all(s > 0 and 0 <= z <= 127 for s, z in config.int8["points"].values())   # 7-bit quint8
    q = config.metrics["calibration"]["int8"]
    assert q["temperature"] == config.int8["temperature"] and 0.5 < q["temperature"] < 2
    assert q["ece_after"] < q["ece_before"]                  # on the validation carve it was fitted on
    assert q["compared_images"] == config.data["val_images"] - 1024
    assert q["top_class_agreement"] > 0.95
    assert abs(q["accuracy_int8"] - q["accuracy_fp32"]) < 0.01
    # a point missing from the ranges is an error that says what to do
    config.int8 = {**config.int8, "points": {k: v for k, v in config.int8["points"].items() if k != "stem"}}
    with pytest.raises(ValueError, match="lack 1 points .*stem.*fer-video calibrate"):
        int8_network(fold_batchnorm(model), config)


def test_int8_is_cpu_only_and_needs_ranges(model_path, samples, tmp_path):
    with pytest.raises(ValueError, match="CPU only"):
        resolve_precision("int8", "cuda")
    if int8_engine() is None:
        with pytest.raises(ValueError, match="quantized engine"):
            resolve_precision("int8", "cpu")
        return
    assert resolve_precision("int8", "cpu") == "int8"
    # the test checkpoint (random weights, never calibrated) has no ranges: one line, exit 2
    faces = tmp_path / "faces" / "happy"
    faces.mkdir(parents=True)
    from PIL import Image

    Image.fromarray(np.full((48, 48), 128, np.uint8)).save(faces / "0.png")
    for cmd in (["analyze", str(samples / "pyfeat_single_face.mp4"), "--out", str(tmp_path / "r")],
                ["evaluate", "--data", str(faces.parent)]):
        r = subprocess.run([sys.executable, str(REPO / "cli.py"), *cmd, "--model", str(model_path),
                            "--precision", "int8"], capture_output=True, text=True, cwd=REPO, timeout=300)
        assert r.returncode == 2, (cmd, r.stderr)
        assert_no_traceback(r.stderr)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and "has no int8 activation ranges" in lines[0] and "fer-video calibrate" in lines[0]
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").rglob("*.json"))


@needs_engine
def test_a_torch_without_quantized_tensors_is_a_one_line_setup_error(monkeypatch):
    """torch 2.14 deprecates quantized tensors (pytorch/pytorch#184982): where a later torch
    has removed them, int8 says so in one line instead of a traceback."""
    from fer_video.errors import SetupError

    def gone(*a, **k):
        raise RuntimeError("quantized tensors were removed\nsecond line")

    monkeypatch.setattr(torch, "quantize_per_channel", gone)
    clf = EmotionClassifier(device="cpu", precision="int8", lazy=True)
    with pytest.raises(SetupError) as e:
        clf.load()
    assert str(e.value) == ("precision int8: this torch cannot build the int8 network "
                            "(quantized tensors were removed); use fp32 or auto")
    assert e.value.exit_code == 3
