"""Shared fixtures: a real (random-weight) ResNet50 checkpoint, the shared data folder.

The packaged default model is trained separately; tests pass this checkpoint with
``--model`` / ``model=`` so they exercise the real loading and inference code.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "sample_videos"
CLASSES = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]


@pytest.fixture(scope="session")
def model_path(tmp_path_factory) -> Path:
    """A real fer-video checkpoint (ResNet50 + seed head, 7 classes, random weights)."""
    import torch

    from fer_video.checkpoint import ModelConfig, save_checkpoint
    from fer_video.model import build_model

    torch.manual_seed(0)
    config = ModelConfig(classes=list(CLASSES), version="test")
    model = build_model(config.to_json()).eval()
    weights, _ = save_checkpoint(model, config, tmp_path_factory.mktemp("model") / "random_resnet50")
    return weights


def missing_shared(reason: str):
    """Skip a test whose shared data is absent — but fail under CI (CI=true), where the
    shared folder is always laid beside the clone: a silent skip there would hide tests."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason} (CI=true: shared data must be present)")
    pytest.skip(reason)


def cpu_flags_show_bf16() -> bool | None:
    """Whether Linux's CPU flags show bfloat16 in hardware (AVX512_BF16 or AMX_BF16): the
    tests' own reading, independent of torch's checks that ``predict.bf16_native`` uses.
    None without /proc/cpuinfo."""
    info = Path("/proc/cpuinfo")
    if not info.is_file():
        return None
    line = next((ln for ln in info.read_text().splitlines() if ln.startswith("flags")), "")
    return bool(set(line.split()) & {"avx512_bf16", "amx_bf16"})


SHARED = Path(os.environ.get("FER_VIDEO_SHARED", REPO.parent / "shared"))


def shared_clip(name: str) -> Path:
    """Path of ``videos/<name>`` in the shared folder (skips locally / fails in CI when absent)."""
    path = SHARED / "videos" / name
    if not path.is_file():
        missing_shared(f"shared clip {path} not available (set FER_VIDEO_SHARED to the shared folder)")
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """Where ../shared lives (FER_VIDEO_SHARED overrides); tests needing it skip without it."""
    path = Path(os.environ.get("FER_VIDEO_SHARED", REPO.parent / "shared"))
    if not path.is_dir():
        missing_shared(f"shared data folder not found: {path} (set FER_VIDEO_SHARED)")
    return path


@pytest.fixture(scope="session")
def shared_video(shared_dir):
    """``shared_video("videos/x.mp4")`` -> its path, or skip when that file is absent."""
    def get(rel: str) -> Path:
        p = shared_dir / rel
        if not p.is_file():
            missing_shared(f"shared file missing: {p}")
        return p
    return get


@pytest.fixture(scope="session")
def samples() -> Path:
    return SAMPLES


@pytest.fixture(scope="session")
def settings_for(model_path):
    """``settings_for(fps=2, ...)`` -> Settings using the test checkpoint on the CPU."""
    from fer_video.settings import Settings

    def make(**kw):
        kw.setdefault("model", str(model_path))
        kw.setdefault("device", "cpu")
        return Settings(**kw)
    return make


@pytest.fixture(scope="session")
def still_jpeg(tmp_path_factory, samples) -> Path:
    """A JPEG photo made from a frame (t = 1 s) of the single-face sample clip."""
    import av
    from PIL import Image

    out = tmp_path_factory.mktemp("still") / "portrait.jpg"
    with av.open(str(samples / "pyfeat_single_face.mp4")) as c:
        for frame in c.decode(video=0):
            if frame.time is not None and frame.time >= 1.0:
                Image.fromarray(frame.to_ndarray(format="rgb24")).save(out, quality=92)
                break
    assert out.is_file()
    return out


@pytest.fixture(scope="session")
def bad_inputs(tmp_path_factory, samples) -> dict[str, Path]:
    """Broken inputs, each in its own right: zero-byte, truncated, text named .mp4, audio-only."""
    import av
    import numpy as np

    d = tmp_path_factory.mktemp("bad")
    paths = {}
    paths["zero"] = d / "zero_bytes.mp4"
    paths["zero"].write_bytes(b"")
    src = (samples / "pyfeat_single_face.mp4").read_bytes()
    paths["truncated"] = d / "truncated.mp4"
    paths["truncated"].write_bytes(src[: len(src) // 3])
    paths["text"] = d / "notes.mp4"
    paths["text"].write_text("This is a text file, not a video.\n" * 20)
    paths["audio"] = d / "audio_only.mp4"
    with av.open(str(paths["audio"]), "w", format="mp4") as c:
        s = c.add_stream("aac", rate=16000, layout="mono")
        for i in range(20):
            frame = av.AudioFrame.from_ndarray(
                (0.1 * np.sin(np.arange(1024) / 10.0)).astype(np.float32)[None, :],
                format="fltp", layout="mono")
            frame.rate = 16000
            frame.pts = i * 1024
            for packet in s.encode(frame):
                c.mux(packet)
        for packet in s.encode(None):
            c.mux(packet)
    return paths


def output_files(root: Path) -> list[Path]:
    return sorted(p for p in Path(root).rglob("*") if p.is_file())


def assert_no_traceback(text: str) -> None:
    assert "Traceback" not in text, text


PARALLEL_CLIPS = ("pyfeat_single_face.mp4", "pyfeat_no_face.mp4", "liveportrait_d19.mp4")


@pytest.fixture(scope="session")
def folder(tmp_path_factory, samples):
    """The three sample clips in one folder (the executors' tests)."""
    d = tmp_path_factory.mktemp("parallel_in")
    for name in PARALLEL_CLIPS:
        (d / name).write_bytes((samples / name).read_bytes())
    return d


@pytest.fixture(scope="session")
def serial_reports(folder, settings_for, tmp_path_factory):
    """The reference for every executor: ``folder`` analysed in this process (--jobs 1)."""
    from fer_video.batch import run_batch

    one = tmp_path_factory.mktemp("serial") / "one"
    assert run_batch([folder], settings_for(fps=2.0), out_root=one, quiet=True) == 0
    return one


@pytest.fixture(scope="session", autouse=True)
def _thread_plan():
    """Torch threads as every fer-video entry point sets them (ThreadPlan.apply), also for
    tests that build a detector or call analyze_video directly."""
    from fer_video.threads import plan_threads

    plan_threads().apply()


@pytest.fixture(scope="session")
def detector():
    """The project's MTCNN at its defaults (shared by the detection tests)."""
    from fer_video.detect import FaceDetector

    return FaceDetector()


@pytest.fixture(scope="session")
def single_face_frames(samples):
    """Every frame of pyfeat_single_face.mp4 sampled at 5 fps (RGB arrays)."""
    from fer_video.decode import sample_frames

    return [f.image for f in sample_frames(samples / "pyfeat_single_face.mp4", fps=5.0)]


def run_unless_fifo_blocks(fn, fifo, timeout: float):
    """Run ``fn()`` in a thread; if it is still blocked after ``timeout`` s (in open() of the
    FIFO ``fifo``), release it by opening the FIFO for writing, and fail the test."""
    import threading

    out = []
    t = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():          # blocked in open(): a writer coming and going releases it
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        t.join(60)
        pytest.fail(f"blocked opening the FIFO {fifo}")
    return out[0] if out else None
