"""Test-time augmentation (`evaluate --tta`): the views, and what averaging over them means."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import missing_shared

from fer_video.checkpoint import default_model_path, load_checkpoint
from fer_video.data import load_dataset
from fer_video.recipe import TTA_MODES
from fer_video.preprocess import tta_views
from fer_video.train import predict_probs

CPU = torch.device("cpu")


def ramp(n=2, h=48, w=48) -> torch.Tensor:
    """Every pixel distinct: value = 1000 * image + 48 * row + column."""
    rows = torch.arange(h, dtype=torch.float32).view(h, 1) * w
    cols = torch.arange(w, dtype=torch.float32).view(1, w)
    return torch.stack([(rows + cols + 1000 * i).unsqueeze(0) for i in range(n)])


def test_view_counts_and_plain_views():
    x = ramp()
    assert [len(tta_views(x, m)) for m in TTA_MODES] == [1, 2, 10]
    assert torch.equal(tta_views(x, "none")[0], x)
    none, mirror = tta_views(x, "flip")
    assert torch.equal(none, x)
    assert torch.equal(mirror[..., :, 0], x[..., :, 47]) and torch.equal(mirror[..., 5, 7], x[..., 5, 40])
    with pytest.raises(ValueError, match="unknown test-time augmentation"):
        tta_views(x, "sixcrop")


def test_tencrop_views_are_the_corner_and_centre_crops_and_their_mirrors():
    x = ramp()
    views = tta_views(x, "tencrop")
    assert all(v.shape == x.shape for v in views)
    px = lambda r, c: x[..., r, c]   # noqa: E731
    # A 44x44 crop resized to 48x48 (bilinear, half-pixel centres): the output's corner pixels
    # are the crop's corner pixels, so each view's corners say which crop it is.
    expected = {0: ((0, 0), (43, 43)),      # top left
                1: ((0, 4), (43, 47)),      # top right
                2: ((4, 0), (47, 43)),      # bottom left
                3: ((4, 4), (47, 47)),      # bottom right
                4: ((2, 2), (45, 45))}      # centre
    for i, (first, last) in expected.items():
        assert torch.allclose(views[i][..., 0, 0], px(*first)), i
        assert torch.allclose(views[i][..., 47, 47], px(*last)), i
        # inside the crop: every value lies within the crop's range
        lo, hi = px(*first), px(*last)
        assert bool((views[i].amin(dim=(-2, -1)) >= lo - 1e-3).all() and (views[i].amax(dim=(-2, -1)) <= hi + 1e-3).all())
        assert torch.equal(views[i + 5], torch.flip(views[i], dims=[3])), i


@pytest.fixture(scope="module")
def shipped_and_faces(shared_dir):
    data = shared_dir / "datasets" / "ckplus48"
    if not data.is_dir():
        missing_shared(f"CK+48 not found at {data}")
    faces = load_dataset(data, "all")
    idx = np.linspace(0, len(faces) - 1, 12).astype(int)
    model, cfg = load_checkpoint(default_model_path(), CPU)
    return model, cfg, faces.images[idx]


def test_flip_tta_is_the_mean_over_the_image_and_its_mirror(shipped_and_faces):
    model, cfg, images = shipped_and_faces
    plain = predict_probs(model, images, cfg, CPU)
    mirrored = predict_probs(model, np.ascontiguousarray(images[:, :, ::-1]), cfg, CPU)
    flip = predict_probs(model, images, cfg, CPU, tta="flip")
    assert np.allclose(flip, (plain + mirrored) / 2, atol=1e-5)
    assert not np.allclose(flip, plain, atol=1e-4)   # the mirror image does change the output


def test_tencrop_tta_gives_probabilities_of_its_own(shipped_and_faces):
    model, cfg, images = shipped_and_faces
    ten = predict_probs(model, images, cfg, CPU, tta="tencrop")
    assert ten.shape == (len(images), len(cfg.classes))
    assert np.allclose(ten.sum(1), 1.0, atol=1e-6) and (ten >= 0).all()
    assert not np.allclose(ten, predict_probs(model, images, cfg, CPU, tta="flip"), atol=1e-4)
