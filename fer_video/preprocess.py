"""Face-crop preprocessing shared by training, evaluation and inference.

Everything here is driven by the checkpoint's ``ModelConfig`` (input size, grayscale,
channels, mean/std, crop margin), so inference cannot disagree with training.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .checkpoint import ModelConfig
from .recipe import TTA_MODES

_RESAMPLE = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}


def crop_face(image: np.ndarray, box: Sequence[float], config: ModelConfig) -> np.ndarray:
    """Cut one face out of an RGB frame as the model expects it.

    The box is made square around its centre (side = the longer box side), grown by
    ``crop_margin`` of that side on every side, clipped to the frame (pixels outside are
    filled by edge replication), converted to gray if the model is grayscale, and resized
    to ``input_size``. Returns uint8 HxW (gray) or HxWx3 (colour).
    """
    h, w = image.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    side = max(x2 - x1, y2 - y1) * (1 + 2 * config.crop_margin)
    side = max(side, 2.0)
    left, top = int(round(cx - side / 2)), int(round(cy - side / 2))
    size = int(round(side))
    # Pad by edge replication where the square leaves the frame, so faces at the border keep their scale.
    pad = max(0, -left, -top, left + size - w, top + size - h)
    src = image
    if pad:
        src = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
        left += pad
        top += pad
    crop = Image.fromarray(src[top:top + size, left:left + size])
    if config.grayscale:
        crop = crop.convert("L")
    crop = crop.resize((config.input_size, config.input_size), _RESAMPLE.get(config.interpolation, Image.BILINEAR))
    return np.asarray(crop)


def to_tensor(batch: np.ndarray | torch.Tensor, config: ModelConfig) -> torch.Tensor:
    """uint8 N x H x W (gray) or N x H x W x 3 -> normalised float N x C x H x W."""
    x = torch.as_tensor(batch)
    if x.ndim == 3:                      # gray: N,H,W -> N,1,H,W
        x = x.unsqueeze(1)
    else:                                # colour: N,H,W,3 -> N,3,H,W
        x = x.permute(0, 3, 1, 2)
    x = x.float().div_(255.0)
    if x.shape[1] == 1 and config.channels == 3:
        x = x.expand(-1, 3, -1, -1)
    mean = torch.tensor(config.mean, dtype=x.dtype).view(1, -1, 1, 1)
    std = torch.tensor(config.std, dtype=x.dtype).view(1, -1, 1, 1)
    return ((x - mean) / std).contiguous()


# Test-time augmentation: crop side / input side of the ten crops (44 of 48 px), within the
# 0.9-1.1 zoom that training's augmentation uses.
TENCROP_FRACTION = 11 / 12


def tta_views(x: torch.Tensor, mode: str) -> list[torch.Tensor]:
    """The views of a normalised batch (N,C,H,W) whose softmax outputs test-time
    augmentation averages. "none": the batch; "flip": it and its mirror image; "tencrop":
    the four corner crops and the centre crop of side ``TENCROP_FRACTION`` x H, each resized
    back to H x W (bilinear), and the mirror images of those five."""
    if mode == "none":
        return [x]
    if mode == "flip":
        return [x, torch.flip(x, dims=[3])]
    if mode != "tencrop":
        raise ValueError(f"unknown test-time augmentation {mode!r}; one of {', '.join(TTA_MODES)}")
    h, w = x.shape[-2:]
    ch, cw = round(h * TENCROP_FRACTION), round(w * TENCROP_FRACTION)
    origins = [(0, 0), (0, w - cw), (h - ch, 0), (h - ch, w - cw), ((h - ch) // 2, (w - cw) // 2)]
    crops = [F.interpolate(x[..., t:t + ch, l:l + cw], size=(h, w), mode="bilinear", align_corners=False)
             for t, l in origins]
    return crops + [torch.flip(c, dims=[3]) for c in crops]
