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


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """Where ../shared lives (FER_VIDEO_SHARED overrides); tests needing it skip without it."""
    path = Path(os.environ.get("FER_VIDEO_SHARED", REPO.parent / "shared"))
    if not path.is_dir():
        pytest.skip(f"shared data folder not found: {path} (set FER_VIDEO_SHARED)")
    return path


@pytest.fixture(scope="session")
def shared_video(shared_dir):
    """``shared_video("videos/x.mp4")`` -> its path, or skip when that file is absent."""
    def get(rel: str) -> Path:
        p = shared_dir / rel
        if not p.is_file():
            pytest.skip(f"shared file missing: {p}")
        return p
    return get


@pytest.fixture(scope="session")
def samples() -> Path:
    return SAMPLES
