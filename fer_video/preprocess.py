"""Face-crop preprocessing shared by training, evaluation and inference.

Everything here is driven by the checkpoint's ``ModelConfig`` (input size, grayscale,
channels, mean/std, crop margin), so inference cannot disagree with training.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np
from PIL import Image

from .checkpoint import ModelConfig

if TYPE_CHECKING:
    import torch
from .recipe import TTA_MODES

_RESAMPLE = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}


def crop_face(image: np.ndarray, box: Sequence[float], config: ModelConfig,
              landmarks: Optional[Sequence[Sequence[float]]] = None) -> np.ndarray:
    """Cut one face out of an RGB frame as the model expects it.

    With ``config.alignment`` and the detector's 5 landmarks, the crop is ``align_face``'s
    (eyes levelled, eye-to-mouth distance fixed: the face frame the model was trained in).
    Otherwise the box crop: the box is made square around its centre (side = the longer box
    side), grown by ``crop_margin`` of that side on every side, clipped to the frame (pixels
    outside are filled by edge replication), converted to gray if the model is grayscale,
    and resized to ``input_size``. Returns uint8 HxW (gray) or HxWx3 (colour).
    """
    if config.alignment and landmarks is not None:
        return align_face(image, landmarks, config)
    h, w = image.shape[:2]
    left, top, size = _box_square(box, config)
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


def _box_square(box: Sequence[float], config: ModelConfig) -> tuple[int, int, int]:
    """(left, top, side) in frame pixels of the box crop's square."""
    x1, y1, x2, y2 = (float(v) for v in box)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    side = max(x2 - x1, y2 - y1) * (1 + 2 * config.crop_margin)
    side = max(side, 2.0)
    return int(round(cx - side / 2)), int(round(cy - side / 2)), int(round(side))


def eyes_mouth(landmarks: Sequence[Sequence[float]]) -> tuple[np.ndarray, np.ndarray, float]:
    """(eye midpoint, mouth midpoint, roll in radians) of MTCNN's 5 points
    (left eye, right eye, nose, left mouth corner, right mouth corner; image coordinates)."""
    pts = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    eye = (pts[0] + pts[1]) / 2
    mouth = (pts[3] + pts[4]) / 2
    d = pts[1] - pts[0]
    return eye, mouth, float(np.arctan2(d[1], d[0]))


def crop_transform(box: Sequence[float], landmarks: Optional[Sequence[Sequence[float]]],
                   config: ModelConfig) -> np.ndarray:
    """The 2x3 affine matrix that maps frame pixels to the crop's unit square (0..1 on
    both axes) for the crop ``crop_face`` makes: the aligned one when ``config.alignment``
    and ``landmarks`` are given, else the box crop."""
    if config.alignment and landmarks is not None:
        a = config.alignment
        eye, mouth, roll = eyes_mouth(landmarks)
        s = float(a["em"]) / max(float(np.linalg.norm(mouth - eye)), 1e-6)
        c, sn = np.cos(-roll) * s, np.sin(-roll) * s
        rot = np.array([[c, -sn], [sn, c]])
        t = np.array([float(a["eye_x"]), float(a["eye_y"])]) - rot @ eye
        return np.hstack([rot, t[:, None]])
    left, top, size = _box_square(box, config)
    return np.array([[1 / size, 0, -left / size], [0, 1 / size, -top / size]])


def align_face(image: np.ndarray, landmarks: Sequence[Sequence[float]], config: ModelConfig) -> np.ndarray:
    """The aligned crop: a similarity transform (rotation, uniform scale, shift) that levels
    the eyes, puts their midpoint at (``eye_x``, ``eye_y``) and makes the eye-to-mouth-midpoint
    distance ``em`` (fractions of the crop side, from ``config.alignment``). The eye-to-mouth
    distance sets the scale because it barely changes with head yaw, where the eye distance
    shrinks. Pixels outside the frame are edge-replicated (as in the box crop). A face much
    larger than the crop is first shrunk with PIL's antialiased resize, so the result is
    filtered like a downscaled photo (as FER2013's and RAF-DB's faces were), not aliased.
    Returns uint8 HxW (gray) or HxWx3 (colour) at ``input_size``."""
    n = int(config.input_size)
    m = crop_transform(None, landmarks, config) * n          # frame px -> output px
    inv = np.linalg.inv(np.vstack([m, [0, 0, 1]]))[:2]       # output px -> frame px
    corners = np.array([[0, 0, 1], [n, 0, 1], [0, n, 1], [n, n, 1]], dtype=np.float64) @ inv.T
    x0, y0 = np.floor(corners.min(0)).astype(int) - 1
    x1, y1 = np.ceil(corners.max(0)).astype(int) + 1
    h, w = image.shape[:2]
    # The footprint, cut from the frame and edge-padded where it leaves it.
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if cx1 <= cx0 or cy1 <= cy0:       # landmarks far outside the frame: nothing to align
        return crop_face(image, (0, 0, w, h), config)
    region = image[cy0:cy1, cx0:cx1]
    pads = ((cy0 - y0, y1 - cy1), (cx0 - x0, x1 - cx1))
    if any(p for pair in pads for p in pair):
        region = np.pad(region, pads + ((0, 0),) * (region.ndim - 2), mode="edge")
    pil = Image.fromarray(np.ascontiguousarray(region))
    if config.grayscale:
        pil = pil.convert("L")
    src_per_out = float(np.sqrt(abs(np.linalg.det(inv[:, :2]))))   # frame px per output px
    shrink = 1.0
    if src_per_out > 1.5:
        shrink = src_per_out
        pil = pil.resize((max(1, round(pil.width / shrink)), max(1, round(pil.height / shrink))), Image.BILINEAR)
        shrink = region.shape[1] / pil.width
    # output px -> region px (frame px minus the footprint's origin), then -> resized region px
    a = inv.copy()
    a[:, 2] -= (x0, y0)
    a /= shrink
    out = pil.transform((n, n), Image.AFFINE, data=tuple(a.reshape(-1)),
                        resample=_RESAMPLE.get(config.interpolation, Image.BILINEAR))
    return np.asarray(out)


def to_tensor(batch: np.ndarray | torch.Tensor, config: ModelConfig) -> torch.Tensor:
    """uint8 N x H x W (gray) or N x H x W x 3 -> normalised float N x C x H x W."""
    import torch

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
    import torch
    import torch.nn.functional as F

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
