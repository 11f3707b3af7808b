"""EmotionClassifier on a real checkpoint: loading, preprocessing, batching, probabilities."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fer_video.checkpoint import file_sha256
from fer_video.classify import EmotionClassifier, resolve_device, softmax64
from fer_video.errors import EXIT_SETUP, SetupError, UsageError
from fer_video.preprocess import crop_face
from fer_video.settings import Settings

from conftest import CLASSES


@pytest.fixture(scope="module")
def clf(model_path):
    return EmotionClassifier(model_path, device="cpu", batch_size=4, precision="fp32")   # compared with plain fp32 forwards


@pytest.fixture(scope="module")
def frame():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(120, 160, 3), dtype=np.uint8)


BOXES = [(10, 10, 50, 60), (80, 20, 130, 80), (-5, 90, 30, 125), (140, 100, 175, 130)]


def test_loads_classes_and_hash(clf, model_path):
    assert clf.classes == CLASSES
    assert clf.sha256 == file_sha256(model_path)
    assert clf.device == "cpu"
    info = clf.info()
    assert info["classes"] == CLASSES and info["sha256"] == clf.sha256
    assert info["architecture"] == "resnet50" and info["input_size"] == 48
    assert not clf.model.training


def test_accepts_config_or_stem_path(model_path):
    for p in (model_path.with_suffix(".json"), model_path.with_suffix("")):
        assert EmotionClassifier(p, device="cpu").sha256 == file_sha256(model_path)


def test_predict_rows_are_probabilities(clf, frame):
    probs = clf.predict(frame, BOXES)
    assert probs.shape == (len(BOXES), len(CLASSES))
    assert probs.dtype == np.float64
    assert (probs >= 0).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-12)


def test_no_boxes_gives_empty(clf, frame):
    assert clf.predict(frame, []).shape == (0, len(CLASSES))


def test_crop_is_preprocess_crop_face(clf, frame):
    np.testing.assert_array_equal(clf.crop(frame, BOXES[0]), crop_face(frame, BOXES[0], clf.config))


def test_batched_across_frames_matches_single(clf, frame):
    """analyze batches crops of several frames in one predict_crops call: the same rows."""
    other = frame[::-1].copy()
    crops = [clf.crop(frame, b) for b in BOXES[:3]] + [clf.crop(other, b) for b in BOXES[1:]]
    together = clf.predict_crops(crops)
    assert together.shape[0] == 6
    np.testing.assert_allclose(together[:3], clf.predict(frame, BOXES[:3]), atol=1e-5)
    np.testing.assert_allclose(together[3:], clf.predict(other, BOXES[1:]), atol=1e-5)


def test_batches_of_batch_size_under_inference_mode(clf, frame):
    calls = []

    def hook(module, inputs, output):
        calls.append((inputs[0].shape[0], torch.is_inference_mode_enabled(), torch.is_grad_enabled()))

    handle = clf.model.register_forward_hook(hook)
    try:
        clf.predict(frame, BOXES + BOXES[:2])   # 6 faces, batch_size 4
    finally:
        handle.remove()
    assert [c[0] for c in calls] == [4, 2]
    assert all(inf and not grad for _, inf, grad in calls)


def test_softmax64_renormalised():
    p = softmax64(np.array([[1000.0, 0.0, -1000.0], [0.1, 0.2, 0.3]], dtype=np.float32))
    assert p.dtype == np.float64
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-15)
    assert np.isfinite(p).all()


def test_missing_model_is_setup_error(tmp_path):
    with pytest.raises(SetupError) as e:
        EmotionClassifier(tmp_path / "nope.safetensors", device="cpu")
    assert e.value.exit_code == EXIT_SETUP
    assert "nope.safetensors" in str(e.value) and "\n" not in str(e.value)


def test_invalid_weights_is_setup_error(tmp_path, model_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"this is not a safetensors file")
    (tmp_path / "bad.json").write_text(model_path.with_suffix(".json").read_text())
    with pytest.raises(SetupError) as e:
        EmotionClassifier(bad, device="cpu")
    assert "\n" not in str(e.value)


def test_missing_config_is_setup_error(tmp_path, model_path):
    lone = tmp_path / "lone.safetensors"
    lone.write_bytes(model_path.read_bytes())
    with pytest.raises(SetupError, match="config"):
        EmotionClassifier(lone, device="cpu")


def test_devices():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="cuda"):
            resolve_device("cuda")
    with pytest.raises(UsageError):
        resolve_device("tpu")


def test_lazy_loads_on_first_use(model_path):
    c = EmotionClassifier(model_path, device="cpu", lazy=True)
    assert c.classes == CLASSES and c._model is None          # config read, weights not yet
    assert c.predict(np.zeros((64, 64, 3), np.uint8), [(8, 8, 56, 56)]).shape == (1, 7)
    assert c._model is not None and c.sha256 == file_sha256(model_path)


def test_meta_device_load_equals_a_plain_build(clf, model_path, frame):
    """The meta-device build fills every parameter and buffer from the file: same as
    building the network normally (random init) and loading the state into it."""
    from dataclasses import asdict

    from safetensors.torch import load_file

    from fer_video.checkpoint import load_config
    from fer_video.model import build_model
    from fer_video.preprocess import to_tensor

    config = load_config(model_path)
    ref = build_model(asdict(config))
    ref.load_state_dict({k: v.float() for k, v in load_file(str(model_path)).items()}, strict=True)
    ref.eval()
    from fer_video.checkpoint import load_checkpoint

    ours, _ = load_checkpoint(model_path)           # clf keeps only its BatchNorm-folded form
    ref_state, our_state = ref.state_dict(), ours.state_dict()
    assert ref_state.keys() == our_state.keys()
    assert {n for n, _ in ours.named_buffers()} <= set(our_state)      # no non-persistent buffer left empty
    for k in ref_state:
        assert torch.equal(ref_state[k], our_state[k]), k
    x = to_tensor(np.stack([clf.crop(frame, b) for b in BOXES]), config)
    with torch.inference_mode():
        np.testing.assert_allclose(softmax64(ref(x).numpy()), clf.predict(frame, BOXES), atol=1e-6)


def test_flip_tta_is_the_mean_over_each_face_and_its_mirror(model_path, frame):
    plain = EmotionClassifier(model_path, device="cpu", batch_size=3)
    flip = EmotionClassifier(model_path, device="cpu", batch_size=3, tta="flip")
    crops = [plain.crop(frame, b) for b in BOXES]
    mirrored = [np.ascontiguousarray(c[:, ::-1]) for c in crops]
    expected = (plain.predict_crops(crops) + plain.predict_crops(mirrored)) / 2
    got = flip.predict(frame, BOXES)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-12)
    assert not np.allclose(got, plain.predict(frame, BOXES), atol=1e-6)
    assert flip.info()["tta"] == "flip"
    ten = EmotionClassifier(model_path, device="cpu", tta="tencrop").predict(frame, BOXES)
    assert ten.shape == got.shape and np.allclose(ten.sum(axis=1), 1.0)


def test_invalid_tta_is_a_usage_error(model_path):
    with pytest.raises(UsageError, match="invalid tta 'sixcrop'"):
        EmotionClassifier(model_path, device="cpu", tta="sixcrop")
    with pytest.raises(UsageError, match="invalid tta"):
        Settings(tta="sixcrop")


@pytest.mark.parametrize("stem", ["imagenet", "small"])
def test_backbone_is_torchvisions_resnet50(stem):
    """The backbone written out in model.py is torchvision's resnet50 up to layer4: the same
    parameter names and shapes (torchvision's state loads strictly) and the same outputs."""
    from torch import nn
    from torchvision.models import resnet50

    from fer_video.model import EmotionNet, backbone_state_from_torchvision

    torch.manual_seed(0)
    tv = resnet50(weights=None).eval()
    if stem == "small":
        tv.maxpool = nn.Identity()
    net = EmotionNet(7, img_size=48, stem=stem).eval()
    net.backbone.load_state_dict(backbone_state_from_torchvision(tv.state_dict()), strict=True)
    trunk = nn.Sequential(tv.conv1, tv.bn1, tv.relu, tv.maxpool, tv.layer1, tv.layer2, tv.layer3, tv.layer4)
    x = torch.randn(2, 3, 48, 48)
    with torch.inference_mode():
        ref, ours = trunk(x), net.backbone(x)
    assert ref.shape == ours.shape and torch.allclose(ref, ours, atol=1e-5)
    # the same initialisation rule: Kaiming-normal fan-out convolutions, BatchNorm 1 / 0
    w = net.backbone[4][0].conv2.weight
    assert abs(float(w.detach().std()) - (2.0 / (64 * 9)) ** 0.5) < 0.01
    assert torch.equal(net.backbone[1].weight, torch.ones(64))


@pytest.mark.parametrize("size", [32, 40, 47, 48, 64, 97, 112])
def test_trunk_grid_is_what_the_backbone_gives(size):
    from fer_video.model import EmotionNet, trunk_grid

    for stem in ("imagenet", "small"):
        net = EmotionNet(7, img_size=size, stem=stem).eval()
        with torch.inference_mode():
            out = net.backbone(torch.zeros(1, 3, size, size))
        assert out.shape[-1] == trunk_grid(size, small_stem=stem == "small"), (size, stem)


def test_classification_does_not_import_torchvision(model_path):
    # `import torchvision` costs ~1.5 s of start-up (it imports torch._dynamo)
    import subprocess
    import sys

    code = ("import sys, numpy as np; from fer_video.classify import EmotionClassifier; "
            f"c = EmotionClassifier({str(model_path)!r}, device='cpu'); "
            "c.predict(np.zeros((64, 64, 3), np.uint8), [(8, 8, 56, 56)]); "
            "sys.exit(3 if 'torchvision' in sys.modules else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
