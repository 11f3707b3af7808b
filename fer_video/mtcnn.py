"""MTCNN's parts: the three networks, P-net's box generation, NMS, box regression and
squaring, the pyramid resize and the R/O-net crops, the mapping back to ``Detection`` s,
and facenet-pytorch's weight files (found without importing it). :class:`fer_video.detect.FaceDetector` strings them into the cascade.

They are facenet-pytorch 2.6.0's (MIT-licensed, (c) Tim Esler), re-implemented for CPU speed
and start-up. What differs from facenet-pytorch:

* start-up: facenet-pytorch's code imports torchvision, and torchvision 0.29 imports
  ``torch._dynamo`` (~2.5 s on the 2-core machine, as long as torch itself). Only the
  package's weight files are used: the three small networks are defined here with the
  same layers and parameter names, and NMS and crops are done without torchvision.
* the image pyramid is resized from uint8 frames with antialiased bilinear interpolation
  (a vectorised uint8 kernel) instead of float "area" interpolation of the full frame;
* the networks run in channels-last memory format, with P-net's 2x2 max-pool as strided
  maxima (PyTorch's pooling kernels were slow on CPU);
* big pyramid levels go through P-net a few frames at a time (cache-friendly; the cascade
  in detect.py);
* R-net/O-net inputs are cut by ``grid_sample`` from the pyramid level where each box is
  24/48 px or a bit more, 2x2 samples per output pixel (an area-like resize), instead of
  a Python loop over candidate boxes; outside the frame they are zero (mid-gray after
  normalisation) as in the original MTCNN, rather than stretching the part inside.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from .errors import SetupError
from .records import Detection

INSTALL_HINT = "pip install --no-deps facenet-pytorch==2.6.0"


def weights_dir() -> Path:
    """Folder of facenet-pytorch's bundled MTCNN weights, found without importing it."""
    try:
        spec = importlib.util.find_spec("facenet_pytorch")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise SetupError("face detector unavailable: facenet-pytorch (MTCNN weights) is not "
                         f"installed. Install it with: {INSTALL_HINT}")
    folder = Path(list(spec.submodule_search_locations)[0]) / "data"
    missing = [n for n in ("pnet.pt", "rnet.pt", "onet.pt") if not (folder / n).is_file()]
    if missing:
        raise SetupError(f"facenet-pytorch is installed but its MTCNN weights are missing "
                         f"({', '.join(missing)} in {folder}); reinstall: {INSTALL_HINT}")
    return folder


def load_networks(folder: Path, device) -> tuple:
    """P-net, R-net and O-net with the weights in ``folder`` (:func:`weights_dir`), in eval
    mode on ``device``, channels-last. A weight file that cannot be loaded: ``SetupError``."""
    import torch
    nets = networks()
    loaded = []
    for name, cls in (("pnet", nets.PNet), ("rnet", nets.RNet), ("onet", nets.ONet)):
        net = cls()
        try:
            state = torch.load(folder / f"{name}.pt", map_location="cpu", weights_only=True)
            net.load_state_dict(state)
        except (OSError, RuntimeError, ValueError) as e:   # unreadable or wrong file
            raise SetupError(f"cannot load the MTCNN weights {folder / (name + '.pt')} "
                             f"({e}); reinstall: {INSTALL_HINT}") from None
        loaded.append(net.eval().to(device).to(memory_format=torch.channels_last))
    return tuple(loaded)


def to_detections(boxes, image_inds, points, scale: float, h: int, w: int, n: int,
                  min_face: float) -> list[list[Detection]]:
    """The cascade's output (detection-scale pixels) as ``Detection`` s of each of ``n``
    frames of ``h`` x ``w`` pixels: mapped back, clipped to the frame, faces smaller than
    ``min_face`` dropped, strongest first."""
    out: list[list[Detection]] = [[] for _ in range(n)]
    if len(boxes) == 0:
        return out
    boxes = boxes.astype(np.float64)
    points = points.astype(np.float64)
    boxes[:, :4] /= scale
    points /= scale
    for b, k, pts in zip(boxes, image_inds, points):
        x1, y1, x2, y2, score = (float(v) for v in b)
        if max(x2 - x1, y2 - y1) < min_face:
            continue
        x1, x2 = min(max(x1, 0.0), float(w)), min(max(x2, 0.0), float(w))
        y1, y2 = min(max(y1, 0.0), float(h)), min(max(y2, 0.0), float(h))
        if x2 - x1 < 1.0 or y2 - y1 < 1.0:
            continue
        landmarks = tuple((float(px), float(py)) for px, py in pts)   # may lie outside
        out[int(k)].append(Detection(box=(x1, y1, x2, y2), score=score, landmarks=landmarks))
    for dets in out:
        dets.sort(key=lambda d: -d.score)
    return out


def resize_u8(batch_u8, size):
    """Antialiased bilinear resize of a uint8 NCHW batch (PyTorch's fast uint8 kernel)."""
    import torch
    return torch.nn.functional.interpolate(batch_u8, size=size, mode="bilinear",
                                           antialias=True, align_corners=False)


def normalise(batch_u8):
    """(x - 127.5) / 128 as MTCNN expects; in place on the float copy (same bits: the
    scale is a power of two)."""
    return batch_u8.float().mul_(0.0078125).sub_(0.99609375)


def generate_boxes(reg, prob, scale: float, threshold: float, offset: tuple[int, int] = (0, 0)):
    """P-net's output map -> candidate boxes in frame pixels (facenet-pytorch's
    ``generateBoundingBox``): rows [x1, y1, x2, y2, score, 4 regressions], image index.
    ``offset``: (x, y) of the map's first cell in the whole level's map (a window's)."""
    import torch
    stride, cell = 2, 12
    mask = prob >= threshold
    where = mask.nonzero()
    image_inds = where[:, 0]
    score = prob[mask]
    reg = reg.permute(1, 0, 2, 3)[:, mask].permute(1, 0)
    yx = where[:, 1:].to(reg.dtype).flip(1)   # (x, y) of each cell
    if offset != (0, 0):
        yx = yx + torch.tensor(offset, dtype=reg.dtype, device=reg.device)
    q1 = ((stride * yx + 1) / scale).floor()
    q2 = ((stride * yx + cell) / scale).floor()
    return torch.cat([q1, q2, score.unsqueeze(1), reg], dim=1), image_inds


def square(boxes):
    """Make boxes square around their centre, side = the longer side (``rerec``)."""
    import torch
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = torch.maximum(w, h)
    out = boxes.clone()
    out[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def regress(boxes, reg):
    """Apply the networks' box regression (``bbreg``)."""
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    out = boxes.clone()
    out[:, 0] = boxes[:, 0] + reg[:, 0] * w
    out[:, 1] = boxes[:, 1] + reg[:, 1] * h
    out[:, 2] = boxes[:, 2] + reg[:, 2] * w
    out[:, 3] = boxes[:, 3] + reg[:, 3] * h
    return out


def batched_nms(boxes, scores, image_inds, threshold: float, mode: str = "union"):
    """Greedy NMS within each image; indices of the kept boxes, highest score first.

    ``mode="union"`` suppresses boxes whose IoU with a kept box exceeds ``threshold``
    (torchvision's ``batched_nms``, areas without +1); ``mode="min"`` divides the
    intersection by the smaller area with MATLAB's +1 pixel areas (facenet-pytorch's
    final ``batched_nms_numpy(..., 'Min')``).
    """
    import torch
    b = boxes.detach().cpu().double().numpy()
    s = scores.detach().cpu().double().numpy()
    k = image_inds.detach().cpu().numpy()
    keep = []
    for img in np.unique(k):
        sel = np.flatnonzero(k == img)
        keep.append(sel[_nms(b[sel], s[sel], threshold, mode)])
    keep = np.concatenate(keep) if keep else np.zeros(0, dtype=np.int64)
    keep = keep[np.argsort(-s[keep], kind="stable")]
    return torch.as_tensor(keep, dtype=torch.long, device=boxes.device)


def _nms(b: np.ndarray, s: np.ndarray, threshold: float, mode: str) -> np.ndarray:
    one = 1.0 if mode == "min" else 0.0
    order = np.argsort(-s, kind="stable")
    x1, y1, x2, y2 = (b[order, i] for i in range(4))
    area = (x2 - x1 + one) * (y2 - y1 + one)
    keep = []
    rest = np.arange(len(order))
    while rest.size:
        i = rest[0]
        keep.append(i)
        rest = rest[1:]
        if not rest.size:
            break
        iw = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + one)
        ih = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + one)
        inter = iw * ih
        if mode == "min":
            overlap = inter / np.minimum(area[i], area[rest])
        else:
            overlap = inter / np.maximum(area[i] + area[rest] - inter, 1e-12)
        rest = rest[overlap <= threshold]
    return order[np.array(keep, dtype=np.int64)]


def crop_resize(level, edges, image_inds, size: int):
    """Crops of ``level`` (NCHW float) inside ``edges`` (K x [x1, y1, x2, y2], continuous
    pixel-edge coordinates of the level), resized to ``size`` with 2x2 bilinear samples
    per output pixel (RoIAlign with sampling ratio 2), zeros outside the level."""
    import torch
    import torch.nn.functional as F
    n_img, channels, lh, lw = level.shape
    out = torch.empty((len(edges), channels, size, size), dtype=level.dtype, device=level.device)
    sub = (torch.arange(2 * size, dtype=level.dtype, device=level.device) + 0.5) / (2 * size)
    for img in torch.unique(image_inds).tolist():
        sel = (image_inds == img).nonzero().squeeze(1)
        e = edges[sel]
        xs = e[:, 0:1] + (e[:, 2:3] - e[:, 0:1]) * sub          # K x 2S sample x-positions
        ys = e[:, 1:2] + (e[:, 3:4] - e[:, 1:2]) * sub
        gx = (2 * xs / lw - 1)[:, None, :].expand(-1, 2 * size, -1)
        gy = (2 * ys / lh - 1)[:, :, None].expand(-1, -1, 2 * size)
        grid = torch.stack([gx, gy], dim=-1).reshape(1, -1, 2 * size, 2)   # K*2S rows
        samples = F.grid_sample(level[img:img + 1], grid, mode="bilinear",
                                padding_mode="zeros", align_corners=False)
        samples = samples.reshape(channels, len(sel), 2 * size, 2 * size).transpose(0, 1)
        out[sel] = F.avg_pool2d(samples, 2)
    return out


def networks():
    """The three MTCNN networks, as facenet-pytorch 2.6.0 defines them (same layers and
    parameter names, so its weight files load as they are), with P-net's 2x2 max-pool as
    strided maxima (bit-identical, ~2.5x faster on CPU)."""
    from torch import nn

    class MaxPool2x2Ceil(nn.Module):
        def forward(self, x):
            return max_pool_2x2_ceil(x)

    class PNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 10, kernel_size=3)
            self.prelu1 = nn.PReLU(10)
            self.pool1 = MaxPool2x2Ceil()
            self.conv2 = nn.Conv2d(10, 16, kernel_size=3)
            self.prelu2 = nn.PReLU(16)
            self.conv3 = nn.Conv2d(16, 32, kernel_size=3)
            self.prelu3 = nn.PReLU(32)
            self.conv4_1 = nn.Conv2d(32, 2, kernel_size=1)
            self.softmax4_1 = nn.Softmax(dim=1)
            self.conv4_2 = nn.Conv2d(32, 4, kernel_size=1)

        def forward(self, x):
            x = self.pool1(self.prelu1(self.conv1(x)))
            x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
            return self.conv4_2(x), self.softmax4_1(self.conv4_1(x))

    class RNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 28, kernel_size=3)
            self.prelu1 = nn.PReLU(28)
            self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
            self.conv2 = nn.Conv2d(28, 48, kernel_size=3)
            self.prelu2 = nn.PReLU(48)
            self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
            self.conv3 = nn.Conv2d(48, 64, kernel_size=2)
            self.prelu3 = nn.PReLU(64)
            self.dense4 = nn.Linear(576, 128)
            self.prelu4 = nn.PReLU(128)
            self.dense5_1 = nn.Linear(128, 2)
            self.softmax5_1 = nn.Softmax(dim=1)
            self.dense5_2 = nn.Linear(128, 4)

        def forward(self, x):
            x = self.pool1(self.prelu1(self.conv1(x)))
            x = self.pool2(self.prelu2(self.conv2(x)))
            x = self.prelu3(self.conv3(x))
            x = x.permute(0, 3, 2, 1).contiguous()       # (the Caffe weights' flatten order)
            x = self.prelu4(self.dense4(x.view(x.shape[0], -1)))
            return self.dense5_2(x), self.softmax5_1(self.dense5_1(x))

    class ONet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 32, kernel_size=3)
            self.prelu1 = nn.PReLU(32)
            self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
            self.conv2 = nn.Conv2d(32, 64, kernel_size=3)
            self.prelu2 = nn.PReLU(64)
            self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
            self.conv3 = nn.Conv2d(64, 64, kernel_size=3)
            self.prelu3 = nn.PReLU(64)
            self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
            self.conv4 = nn.Conv2d(64, 128, kernel_size=2)
            self.prelu4 = nn.PReLU(128)
            self.dense5 = nn.Linear(1152, 256)
            self.prelu5 = nn.PReLU(256)
            self.dense6_1 = nn.Linear(256, 2)
            self.softmax6_1 = nn.Softmax(dim=1)
            self.dense6_2 = nn.Linear(256, 4)
            self.dense6_3 = nn.Linear(256, 10)

        def forward(self, x):
            x = self.pool1(self.prelu1(self.conv1(x)))
            x = self.pool2(self.prelu2(self.conv2(x)))
            x = self.pool3(self.prelu3(self.conv3(x)))
            x = self.prelu4(self.conv4(x))
            x = x.permute(0, 3, 2, 1).contiguous()
            x = self.prelu5(self.dense5(x.view(x.shape[0], -1)))
            return self.dense6_2(x), self.dense6_3(x), self.softmax6_1(self.dense6_1(x))

    return SimpleNamespace(PNet=PNet, RNet=RNet, ONet=ONet)


def max_pool_2x2_ceil(x):
    """``max_pool2d(x, 2, 2, ceil_mode=True)`` as three element-wise maxima of strided
    views: bit-identical, and ~2.5x faster for P-net's large channels-last maps."""
    import torch
    h, w = x.shape[-2:]
    if h % 2 or w % 2:   # padding would cost more than it saves
        return torch.nn.functional.max_pool2d(x, 2, 2, ceil_mode=True)
    top = torch.maximum(x[..., 0::2, 0::2], x[..., 0::2, 1::2])
    bottom = torch.maximum(x[..., 1::2, 0::2], x[..., 1::2, 1::2])
    return torch.maximum(top, bottom, out=top)


__all__ = ["INSTALL_HINT", "batched_nms", "crop_resize", "generate_boxes", "load_networks",
           "max_pool_2x2_ceil", "networks", "normalise", "regress", "resize_u8", "square",
           "to_detections", "weights_dir"]
