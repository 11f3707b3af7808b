"""The torch-free classifier (fer_video/classify_onnx.py) and `analyze --backend onnx`: the
shipped checkpoint's graph with the weights folded in numpy computes what torch's fp32
network computes, and the whole analysis runs without importing torch (real clip, real
MTCNN, the shipped checkpoint)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fer_video.classify import EmotionClassifier
from fer_video.classify_onnx import OnnxEmotionClassifier, folded_weights, graph_path
from fer_video.decode import sample_frames
from fer_video.detect import FaceDetector
from fer_video.errors import SetupError, UsageError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def crops(samples):
    clf = EmotionClassifier(device="cpu", precision="fp32", lazy=True)
    frames = [f.image for _, f in zip(range(10), sample_frames(str(samples / "pyfeat_single_face.mp4"), fps=5))]
    out = []
    for image, dets in zip(frames, FaceDetector().detect(frames)):
        out += [clf.crop(image, d.box, d.landmarks) for d in dets]
    assert len(out) >= 6
    return out


def test_folding_in_numpy_folds_every_batchnorm_after_a_convolution():
    from safetensors.numpy import load_file

    from fer_video.checkpoint import default_model_path

    state = load_file(str(default_model_path()))
    folded = folded_weights(state)
    bns = {k.rpartition(".")[0] for k in state if k.endswith("running_var")}
    kept = {k.rpartition(".")[0] for k in folded if k.endswith("running_var")}
    assert len(bns) == 54 and kept == {"head.bn"}               # the seed head's follows a pool
    assert all(v.dtype == np.float32 for v in folded.values())
    assert folded["backbone.0.bias"].shape == (64,)            # the stem's conv gained its BN's bias


@pytest.mark.parametrize("tta", ["none", "flip"])
def test_it_gives_torchs_fp32_probabilities(crops, tta):
    torch_clf = EmotionClassifier(device="cpu", precision="fp32", tta=tta)
    onnx_clf = OnnxEmotionClassifier(tta=tta)
    ref, got = torch_clf.predict_crops(crops), onnx_clf.predict_crops(crops)
    np.testing.assert_allclose(got, ref, atol=1e-5)
    np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-12)
    assert onnx_clf.classes == torch_clf.classes
    info = onnx_clf.info()
    assert (info["backend"], info["precision"], info["tta"]) == ("onnx", "fp32", tta)
    assert info["sha256"] == torch_clf.info()["sha256"] and info["temperature"] == torch_clf.info()["temperature"]
    assert onnx_clf.predict_crops([]).shape == (0, len(onnx_clf.classes))


def test_int8_gives_torchs_int8_top_class_and_its_own_temperature(crops):
    """The QDQ graph (fer_video/int8_steps.py) with the numbers computed at load time runs the
    network torch's int8 runs: the same top class on these real faces, probabilities within a
    few hundredths (the two round differently: int32 biases, requantisation)."""
    torch_clf = EmotionClassifier(device="cpu", precision="int8")
    onnx_clf = OnnxEmotionClassifier(precision="int8")
    ref, got = torch_clf.predict_crops(crops), onnx_clf.predict_crops(crops)
    assert (got.argmax(1) == ref.argmax(1)).all()
    assert np.abs(got - ref).max() < 0.08
    fp32 = OnnxEmotionClassifier().predict_crops(crops)
    assert np.abs(got - fp32).max() > 1e-4                 # it is not the fp32 graph
    info = onnx_clf.info()
    assert (info["backend"], info["precision"]) == ("onnx", "int8")
    assert info["temperature"] == torch_clf.info()["temperature"] != OnnxEmotionClassifier().info()["temperature"]


def test_int8_steps_name_every_point_torchs_int8_rounds_at():
    from safetensors.numpy import load_file

    from fer_video.checkpoint import default_model_path, load_config
    from fer_video.int8_steps import AddRelu, Conv, int8_steps

    state = load_file(str(default_model_path()))
    plan = int8_steps(state.keys(), "small")
    points = load_config(default_model_path()).int8["points"]
    named = {"input"} | {s.point for s in plan.steps}
    assert named == set(points)
    convs = [s for s in plan.steps if isinstance(s, Conv)]
    assert len(convs) == 1 + 16 * 3 + 4 + 1                # stem, 16 blocks x 3, 4 downsamples, head
    assert sum(isinstance(s, AddRelu) for s in plan.steps) == 16
    assert [s.key for s in convs if s.stride == 2] == ["backbone.0", "backbone.5.0.downsample.0",
                                                        "backbone.5.0.conv2", "backbone.6.0.downsample.0",
                                                        "backbone.6.0.conv2", "backbone.7.0.downsample.0",
                                                        "backbone.7.0.conv2"]
    assert plan.head.kind == "seed" and not plan.stem_max_pool


def test_what_it_cannot_run_is_a_one_line_error(tmp_path):
    from fer_video.checkpoint import default_model_path

    with pytest.raises(UsageError, match="tencrop.*torch backend"):
        OnnxEmotionClassifier(tta="tencrop")
    with pytest.raises(UsageError, match="bf16.*torch backend"):
        OnnxEmotionClassifier(precision="bf16")
    # a checkpoint without its graph
    for suffix in (".safetensors", ".json"):
        (tmp_path / f"m{suffix}").write_bytes(default_model_path().with_suffix(suffix).read_bytes())
    with pytest.raises(SetupError, match=r"no ONNX graph for m\.safetensors: m\.graph\.onnx is missing"):
        OnnxEmotionClassifier(tmp_path / "m.safetensors")
    # a graph that does not fit the weights
    with pytest.raises(SetupError, match=r"m\.int8\.graph\.onnx is missing \(write it with "
                                         r"bench/export_classifier_onnx\.py --int8"):
        OnnxEmotionClassifier(tmp_path / "m.safetensors", precision="int8")
    graph_path(tmp_path / "m.safetensors").write_bytes(b"not an ONNX graph")
    with pytest.raises(SetupError) as e:
        OnnxEmotionClassifier(tmp_path / "m.safetensors")
    assert "\n" not in str(e.value)
    # an int8 graph, but a checkpoint without int8 ranges
    from fer_video.classify_onnx import int8_graph_path

    int8_graph_path(tmp_path / "m.safetensors").write_bytes(default_model_path().with_name(
        "fer2013_resnet50.int8.graph.onnx").read_bytes())
    cfg = json.loads((tmp_path / "m.json").read_text())
    del cfg["int8"]
    (tmp_path / "m.json").write_text(json.dumps(cfg))
    with pytest.raises(SetupError, match="has no int8 activation ranges"):
        OnnxEmotionClassifier(tmp_path / "m.safetensors", precision="int8")


def _analyze(args: list[str], tmp: Path) -> tuple[subprocess.CompletedProcess, dict | None]:
    """`fer-video analyze` in a fresh process; its stderr's last line says whether torch was imported."""
    probe = ("import sys, atexit; atexit.register(lambda: print('torch imported:', 'torch' in sys.modules, "
             "file=sys.stderr)); sys.argv = ['fer-video'] + sys.argv[1:]; from fer_video.cli import run; run()")
    p = subprocess.run([sys.executable, "-c", probe, "analyze", *args, "--out", str(tmp), "--quiet"],
                       capture_output=True, text=True, timeout=300, cwd=REPO)
    reports = list(tmp.glob("*/*.json"))
    return p, (json.loads(reports[0].read_text()) if reports else None)


def test_analyze_with_the_onnx_backend_never_imports_torch_and_agrees_with_torch(samples, tmp_path):
    clip = str(samples / "pyfeat_single_face.mp4")
    p, onnx_report = _analyze([clip, "--backend", "onnx"], tmp_path / "onnx")
    assert p.returncode == 0, p.stderr
    assert p.stderr.strip().splitlines()[-1] == "torch imported: False"
    assert (onnx_report["model"]["backend"], onnx_report["settings"]["backend"]) == ("onnx", "onnx")
    p, torch_report = _analyze([clip, "--precision", "fp32"], tmp_path / "torch")
    assert p.returncode == 0, p.stderr
    assert p.stderr.strip().splitlines()[-1] == "torch imported: True"
    assert torch_report["model"]["backend"] == "torch"
    import csv

    def rows(report_dir: Path):
        return list(csv.DictReader(open(next(report_dir.glob("*/*.frames.csv")))))

    a, b = rows(tmp_path / "onnx"), rows(tmp_path / "torch")
    assert [(r["face_id"], r["frame_index"]) for r in a] == [(r["face_id"], r["frame_index"]) for r in b]
    classes = onnx_report["model"]["classes"]
    pa = np.array([[float(r[c]) for c in classes] for r in a])
    pb = np.array([[float(r[c]) for c in classes] for r in b])
    assert np.abs(pa - pb).max() < 0.02          # boxes differ in their last digits, so the crops


def test_analyze_with_the_onnx_backend_in_int8_never_imports_torch(samples, tmp_path):
    p, report = _analyze([str(samples / "pyfeat_single_face.mp4"), "--backend", "onnx", "--precision", "int8"], tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stderr.strip().splitlines()[-1] == "torch imported: False"
    assert (report["model"]["backend"], report["model"]["precision"], report["settings"]["precision"]) == \
        ("onnx", "int8", "int8")
    assert report["faces"] and report["faces"][0]["dominant_emotion"] in report["model"]["classes"]


@pytest.mark.parametrize("args, message", [(["--device", "cuda"], "runs on the CPU"),
                                           (["--precision", "bf16"], "computes in fp32 or int8")])
def test_onnx_backend_options_it_cannot_run_exit_2(samples, tmp_path, args, message):
    p, _ = _analyze([str(samples / "pyfeat_single_face.mp4"), "--backend", "onnx", *args], tmp_path)
    assert p.returncode == 2, p.stderr
    assert message in p.stderr and "Traceback" not in p.stderr


def test_the_python_api_with_the_onnx_backend_never_imports_torch(samples):
    code = ("import sys, fer_video; "
            f"frames, faces = fer_video.analyze({str(samples / 'pyfeat_single_face.mp4')!r}, backend='onnx'); "
            "print(len(frames), len(faces), faces[0].dominant_emotion in faces[0].mean_probs, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr
    n_rows, n_faces, known, torch_loaded = out.stdout.split()
    assert int(n_rows) >= 10 and n_faces == "1" and known == "True" and torch_loaded == "False"
