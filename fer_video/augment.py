"""Training augmentation and the training loss (used by ``train``; no state).

``augment`` is the geometry and occlusion every recipe uses; ``augment_video`` and
``degrade_u8`` add what video does to faces (``--augment video``); ``soft_cross_entropy``
trains on hard labels and on vote distributions (FER+) alike.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .checkpoint import ModelConfig


def augment(x: torch.Tensor, gen: torch.Generator, roll_deg: float = 10.0, yaw: float = 0.0) -> torch.Tensor:
    """Batched augmentation of normalised images (N,C,H,W), done as one affine warp.

    Random scale 0.9-1.1 (crop), rotation within +-``roll_deg`` degrees, shift within +-8%,
    horizontal flip with p=0.5, with ``yaw`` > 0 a horizontal squeeze of the face to
    1-``yaw``..1 of its width (a head turned a little: the near half stays, the face narrows),
    then random erasing (p=0.5, 2-20% of the area: occlusion by hands, glasses, microphones)
    — the same recipe for every image set, applied on the training device. The "basic"
    recipe is the defaults (roll 10, no yaw); "video" uses roll 15 and yaw 0.25.
    """
    n = x.shape[0]
    dev = x.device
    u = lambda *s: torch.rand(*s, generator=gen).to(dev)  # noqa: E731
    angle = (u(n) * 2 - 1) * math.radians(roll_deg)
    scale = 0.9 + u(n) * 0.2
    flip = torch.where(u(n) < 0.5, -1.0, 1.0).to(dev)
    tx, ty = (u(n) * 2 - 1) * 0.08 * 2, (u(n) * 2 - 1) * 0.08 * 2
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    # grid_sample's theta maps output to input: dividing x by the squeeze narrows the face
    squeeze = (1 - yaw * u(n)) if yaw else torch.ones(n, device=dev)
    theta = torch.stack([torch.stack([cos * flip / squeeze, -sin / squeeze, tx], 1),
                         torch.stack([sin * flip, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    # Random erasing: one rectangle per selected image, filled with noise.
    h, w = x.shape[-2:]
    area = (0.02 + u(n) * 0.18) * h * w
    ratio = torch.exp((u(n) * 2 - 1) * math.log(3))
    eh = torch.sqrt(area * ratio).clamp(1, h).long()
    ew = torch.sqrt(area / ratio).clamp(1, w).long()
    y0 = (u(n) * (h - eh + 1).float()).long()
    x0 = (u(n) * (w - ew + 1).float()).long()
    ys = torch.arange(h, device=dev).view(1, h, 1)
    xs = torch.arange(w, device=dev).view(1, 1, w)
    mask = ((ys >= y0.view(-1, 1, 1)) & (ys < (y0 + eh).view(-1, 1, 1))
            & (xs >= x0.view(-1, 1, 1)) & (xs < (x0 + ew).view(-1, 1, 1)))
    mask &= (u(n) < 0.5).view(-1, 1, 1)
    noise = torch.randn(x.shape, generator=gen).to(dev)
    return torch.where(mask.unsqueeze(1), noise, x)


def degrade_u8(images: np.ndarray, rng: np.random.Generator, p_jpeg: float = 0.25) -> np.ndarray:
    """JPEG re-compression of uint8 gray images (N,H,W), each with probability ``p_jpeg``
    at a quality drawn from 15-60: the block artefacts of streamed and re-encoded video."""
    import io

    from PIL import Image

    out = images.copy()
    for i in np.flatnonzero(rng.random(len(images)) < p_jpeg):
        buf = io.BytesIO()
        Image.fromarray(images[i]).save(buf, format="JPEG", quality=int(rng.integers(15, 61)))
        buf.seek(0)
        with Image.open(buf) as im:
            out[i] = np.asarray(im.convert("L"))
    return out


def augment_video(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """What video does to faces, on images in [0, 1] (N,C,H,W), before normalisation:
    illumination (contrast 0.6-1.4, brightness +-0.15, p=0.5) and gamma (0.67-1.5, p=0.5);
    down-and-up scaling to 0.35, 0.5 or 0.7 of the side (bilinear, antialiased down, p=0.25
    in all: small, far faces); Gaussian blur (sigma 0.4-1.2 px, p=0.2: defocus, motion). Geometry (roll,
    yaw as a horizontal squeeze, zoom, shift, flip) and occlusion follow in ``augment``."""
    n, _, h, w = x.shape
    dev = x.device
    u = lambda *s: torch.rand(*s, generator=gen).to(dev)  # noqa: E731
    on = (u(n) < 0.5).view(-1, 1, 1, 1)
    contrast = (0.6 + 0.8 * u(n)).view(-1, 1, 1, 1)
    bright = ((u(n) * 2 - 1) * 0.15).view(-1, 1, 1, 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = torch.where(on, ((x - mean) * contrast + mean + bright).clamp(0, 1), x)
    on = (u(n) < 0.5).view(-1, 1, 1, 1)
    gamma = torch.exp((u(n) * 2 - 1) * math.log(1.5)).view(-1, 1, 1, 1)
    x = torch.where(on, x.clamp_min(1e-4) ** gamma, x)
    # down-and-up: three sizes, so each is one batched interpolate
    sel = u(n)
    for lo, hi, frac in ((0.0, 0.05, 0.35), (0.05, 0.15, 0.5), (0.15, 0.25, 0.7)):
        idx = torch.nonzero((sel >= lo) & (sel < hi)).flatten()
        if len(idx):
            small = F.interpolate(x[idx], size=(max(2, round(h * frac)), max(2, round(w * frac))),
                                  mode="bilinear", antialias=True, align_corners=False)
            x[idx] = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    # Gaussian blur with one sigma per image: a grouped 7x7 convolution
    on = torch.nonzero(u(n) < 0.2).flatten()
    if len(on):
        sigma = 0.4 + u(len(on)) * 0.8
        r = torch.arange(-3, 4, device=dev, dtype=x.dtype)
        k1 = torch.exp(-(r.view(1, -1) ** 2) / (2 * sigma.view(-1, 1) ** 2))
        k1 = k1 / k1.sum(1, keepdim=True)
        k2 = (k1.unsqueeze(2) * k1.unsqueeze(1)).unsqueeze(1)           # m,1,7,7
        sub = x[on]
        c = sub.shape[1]
        flat = F.pad(sub.reshape(1, -1, h, w), (3, 3, 3, 3), mode="replicate")
        x[on] = F.conv2d(flat, k2.repeat_interleave(c, 0), groups=len(on) * c).reshape(-1, c, h, w)
    return x


def normalise(x: torch.Tensor, config: ModelConfig) -> torch.Tensor:
    """[0, 1] images (N,1|3,H,W) -> the network's input (channels and mean/std of the config)."""
    if x.shape[1] == 1 and config.channels == 3:
        x = x.expand(-1, 3, -1, -1)
    mean = torch.tensor(config.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(config.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return ((x - mean) / std).contiguous()


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor | None = None,
                       label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy against target distributions (N x C rows summing to 1):
    ``sum_i sum_c w_c t'_ic (-log p_ic) / sum_i sum_c w_c t_ic`` with ``t' = (1 - e) t + e / C``.
    For one-hot targets this is exactly ``F.cross_entropy(logits, labels, weight,
    label_smoothing=e)`` (its weighted mean); for FER+ vote distributions each vote counts."""
    logp = F.log_softmax(logits.float(), dim=1)
    c = logits.shape[1]
    w = torch.ones(c, device=logits.device) if weight is None else weight.to(logits.device).float()
    t = targets.float()
    smoothed = t * (1 - label_smoothing) + label_smoothing / c
    num = -(smoothed * logp * w).sum()
    den = (t * w).sum().clamp_min(1e-12)
    return num / den
