"""Face detection: MTCNN with facenet-pytorch's bundled P/R/O-net weights, tuned for CPU.

``FaceDetector.detect(images)`` returns every face in every frame as ``Detection`` records
(boxes and 5 landmarks in full-frame pixels, O-net confidence as ``score``).
``FaceDetector.detect_near(image, boxes)`` runs the same cascade only on small regions
around given boxes (track-guided detection between keyframes; ``Keyframes`` says which
frames are keyframes: every N-th, the first, after a shot cut or a lost track). Measured
(bench/roi_detection.py, busy 2-core machine, CPU ms per sampled frame at 5 fps):
WolfgangLanger 640x360 39 -> 35 (N=5), KatieHill 512x512 54 -> 34, crowd 1080p 280 -> 159.

The cascade is facenet-pytorch 2.6.0's ``detect_face`` (same networks and weights, same
thresholds, box regression and NMS steps; facenet-pytorch is MIT-licensed, (c) Tim
Esler), re-implemented here so that it runs about twice as fast on CPU and starts 2.5 s
sooner. Measured CPU time per frame, one thread, batches of 8, on the 2-core machine:
640x360 36 ms (facenet-pytorch's ``MTCNN.detect``: 60-90 ms); 1920x1080 (detected at
960x540) ~300 ms (~570 ms). What differs from facenet-pytorch:

* start-up: facenet-pytorch's code imports torchvision, and torchvision 0.29 imports
  ``torch._dynamo`` (~2.5 s on the 2-core machine, as long as torch itself). Only the
  package's weight files are used: the three small networks are defined below with the
  same layers and parameter names, and NMS and crops are done without torchvision.
* the image pyramid is resized from uint8 frames with antialiased bilinear interpolation
  (a vectorised uint8 kernel) instead of float "area" interpolation of the full frame;
* the networks run in channels-last memory format, with P-net's 2x2 max-pool as strided
  maxima (PyTorch's pooling kernels were slow on CPU);
* big pyramid levels go through P-net a few frames at a time (cache-friendly);
* R-net/O-net inputs are cut by ``grid_sample`` from the pyramid level where each box is
  24/48 px or a bit more, 2x2 samples per output pixel (an area-like resize), instead of
  a Python loop over candidate boxes; outside the frame they are zero (mid-gray after
  normalisation) as in the original MTCNN, rather than stretching the part inside.

On the sample clips boxes agree with facenet-pytorch's ``MTCNN.detect`` at IoU ~0.9 (the
face counts match; borderline faces in the crowd can differ).

Threads: the detector leaves torch's thread count alone. Torch's intra-op thread count is
process-wide, so it is set once where a process starts, from its ``threads.ThreadPlan``
(``ThreadPlan.apply``: one intra-op thread; on a 2-core machine with any other busy process,
OpenMP's spin-waiting made 2 threads up to 15x slower than 1). A stand-alone caller may
still pass ``num_threads`` to have the constructor set it, as it did by default before.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Optional, Sequence

import numpy as np

from .errors import SetupError
from .records import Detection, DetectionStats

INSTALL_HINT = "pip install --no-deps facenet-pytorch==2.6.0"

_PNET_CELL = 12                  # P-net's window: the smallest face it sees, in detection px
_STAGE_THRESHOLDS = (0.6, 0.7)   # P-net and R-net thresholds (facenet-pytorch defaults)
_PNET_CHUNK_PIXELS = 1_000_000   # pixels per P-net call for big levels (see _cascade)
_NET_CHUNK = 512                 # crops per R/O-net call, to bound memory in crowds
_NET_BUCKET = 64                 # R/O-net batches are padded to a multiple of this (flat memory)
_ROI_BUCKET = 16                 # ... in detect_near, where a few faces give tens of candidates
ROI_REGION = 3.0                 # detect_near searches a square this many times a box's side
_ROI_LEVELS = (8.0, 32.0)        # ... on the pyramid levels where that side is 8-32 px


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


class FaceDetector:
    """Find all faces in RGB frames with MTCNN.

    device:      torch device for the networks ("cpu", "cuda", ...).
    min_face:    smallest face side to find, in ORIGINAL frame pixels; faces whose box is
                 smaller are not reported. Bounded below by MTCNN's 12-pixel window at
                 detection scale: in a frame downscaled by ``s`` (see max_side) faces
                 smaller than ``12 / s`` pixels cannot be found (24 px for 1920x1080 at
                 the default max_side); raise max_side to find smaller ones.
    threshold:   minimum final-stage (O-net) confidence; weaker faces are dropped.
    max_side:    frames whose longer side exceeds this are downscaled for detection (the
                 pyramid starts there); boxes and landmarks are mapped back to full-frame
                 pixels. ``None`` or 0: never downscale.
    batch_size:  frames run through the networks together (same-size frames only).
    num_threads: torch intra-op threads to set (process-wide); None (the default) leaves
                 them alone: the analysis sets them once per process (``ThreadPlan.apply``).
    factor:      scale step of the image pyramid (MTCNN's 0.709).
    """

    def __init__(self, device="cpu", min_face: float = 20, threshold: float = 0.9,
                 max_side: Optional[int] = 960, batch_size: int = 8,
                 num_threads: Optional[int] = None, factor: float = 0.709):
        if not min_face > 0:
            raise ValueError(f"min_face must be > 0 pixels, not {min_face!r}")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], not {threshold!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, not {batch_size!r}")
        if not 0.1 <= factor < 1.0:
            raise ValueError(f"factor must be in [0.1, 1), not {factor!r}")
        if max_side and max_side < _PNET_CELL:
            raise ValueError(f"max_side must be >= {_PNET_CELL} pixels, not {max_side!r}")
        folder = weights_dir()
        import torch
        if num_threads:
            torch.set_num_threads(int(num_threads))
        self._torch = torch
        self.device = torch.device(device)
        self.min_face = float(min_face)
        self.threshold = float(threshold)
        self.max_side = int(max_side) if max_side else None
        self.batch_size = int(batch_size)
        self.factor = float(factor)
        nets = _networks()
        loaded = []
        for name, cls in (("pnet", nets.PNet), ("rnet", nets.RNet), ("onet", nets.ONet)):
            net = cls()
            try:
                state = torch.load(folder / f"{name}.pt", map_location="cpu", weights_only=True)
                net.load_state_dict(state)
            except (OSError, RuntimeError, ValueError) as e:   # unreadable or wrong file
                raise SetupError(f"cannot load the MTCNN weights {folder / (name + '.pt')} "
                                 f"({e}); reinstall: {INSTALL_HINT}") from None
            loaded.append(net.eval().to(self.device).to(memory_format=torch.channels_last))
        self._pnet, self._rnet, self._onet = loaded

    # ------------------------------------------------------------------ public

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        """Faces in each image: one list per image (possibly empty), strongest first.

        ``images`` are HxWx3 uint8 RGB arrays (e.g. ``SampledFrame.image``). Consecutive
        images of the same size are batched ``batch_size`` at a time. Thread-safe: the
        detector holds no per-call state, so several threads may call it at once.
        """
        results: list[list[Detection]] = []
        i = 0
        n = len(images)
        while i < n:
            shape = images[i].shape
            j = i + 1
            while j < n and j - i < self.batch_size and images[j].shape == shape:
                j += 1
            results.extend(self._detect_batch(images[i:j]))
            i = j
        return results

    def detect_near(self, image: np.ndarray,
                    boxes: Sequence[tuple[float, float, float, float]]) -> list[Detection]:
        """Faces in ``image`` near the given boxes (e.g. the tracks' predicted boxes), strongest
        first: the cascade on small regions, for track-guided detection between keyframes.

        Around each box, a square region ``ROI_REGION`` times its side is searched: P-net
        runs on that window of the pyramid levels where a face of about the box's size can
        be found (``_ROI_LEVELS``), and its candidates go through R-net and O-net exactly as
        in :meth:`detect` (the same levels, crops, thresholds, regression and NMS; P-net's
        output cells inside a window are those of the whole level), so a face inside a
        region comes out with the box full-frame detection gives it. A face outside every
        region is not looked for. No box: no face.
        """
        torch = self._torch
        if len(boxes) == 0:
            return []
        h, w = image.shape[:2]
        with torch.inference_mode():
            batch, hd, wd, scale = self._to_u8_batch([image])
            min_face_det = max(float(_PNET_CELL), self.min_face * scale)
            found = self._near(batch, hd, wd, min_face_det,
                               np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * scale)
        return _to_detections(*found, scale, h, w, 1, self.min_face)[0]

    def _near(self, batch_u8, h: int, w: int, min_face: float, boxes: np.ndarray):
        """:meth:`detect_near` at detection scale: boxes Kx4 in the batch's pixels."""
        torch = self._torch
        empty = (np.zeros((0, 5)), np.zeros((0,), dtype=np.int64), np.zeros((0, 5, 2)))
        levels: dict[int, Any] = {}       # pyramid levels made so far, by index

        def level(i: int, size: tuple[int, int]):
            if i not in levels:
                levels[i] = _normalise(_resize_u8(batch_u8, size)).contiguous()
            return levels[i]

        scales = self._pyramid_scales(h, w, min_face)
        sizes = [(int(h * s + 1), int(w * s + 1)) for s in scales]
        side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
        all_boxes = []
        for i, (s, size) in enumerate(zip(scales, sizes)):
            for k in np.flatnonzero((side * s >= _ROI_LEVELS[0]) & (side * s <= _ROI_LEVELS[1])):
                half = ROI_REGION * side[k] * s / 2          # in this level's pixels
                # even offsets: P-net's stride-2 cells then fall where the whole level's do
                x0 = max(0, int((cx[k] * s - half) // 2) * 2)
                y0 = max(0, int((cy[k] * s - half) // 2) * 2)
                x1, y1 = min(size[1], int(cx[k] * s + half) + 1), min(size[0], int(cy[k] * s + half) + 1)
                if x1 - x0 < _PNET_CELL or y1 - y0 < _PNET_CELL:
                    continue
                window = level(i, size)[:, :, y0:y1, x0:x1].contiguous(
                    memory_format=torch.channels_last)
                reg, prob = self._pnet(window)
                found, inds = _generate_boxes(reg, prob[:, 1], s, _STAGE_THRESHOLDS[0],
                                              offset=(x0 // 2, y0 // 2))
                if len(found):
                    all_boxes.append(found)
        if not all_boxes:
            return empty
        # The same candidate can come from two overlapping regions: NMS as per level, then
        # across levels, as the full cascade does.
        cand = torch.cat(all_boxes)
        inds = torch.zeros(len(cand), dtype=torch.long, device=cand.device)
        keep = _batched_nms(cand[:, :4], cand[:, 4], inds, 0.5)
        cand = cand[keep]
        keep = _batched_nms(cand[:, :4], cand[:, 4], inds[keep], 0.7)
        cand = cand[keep]
        regw, regh = cand[:, 2] - cand[:, 0], cand[:, 3] - cand[:, 1]
        cand = _square(torch.stack([cand[:, 0] + cand[:, 5] * regw, cand[:, 1] + cand[:, 6] * regh,
                                    cand[:, 2] + cand[:, 7] * regw, cand[:, 3] + cand[:, 8] * regh,
                                    cand[:, 4]], dim=1))
        sources: list = [(sz[1] / w, sz[0] / h, (lambda i=i, sz=sz: level(i, sz)))
                         for i, sz in enumerate(sizes)]
        sources.reverse()   # smallest scale first
        sources.append((1.0, 1.0, lambda: _normalise(batch_u8.contiguous())))
        return self._refine(sources, cand, torch.zeros(len(cand), dtype=torch.long,
                                                       device=cand.device), bucket=_ROI_BUCKET)

    def detection_scale(self, height: int, width: int) -> float:
        """The factor frames of this size are resized by for detection (<= 1)."""
        if self.max_side and max(height, width) > self.max_side:
            return self.max_side / max(height, width)
        return 1.0

    # ------------------------------------------------------------------ cascade

    def detect_one(self, image: np.ndarray) -> list[Detection]:
        """Full-frame detection of one frame (a keyframe of track-guided detection): as
        ``detect([image])[0]``, with R/O-net batches padded to 16 rows instead of 64 (one
        640x360 frame: 69 -> ~45 ms CPU; the padding is what a lone frame cannot share)."""
        return self._detect_batch([image], bucket=_ROI_BUCKET)[0]

    def _detect_batch(self, frames: Sequence[np.ndarray],
                      bucket: int = _NET_BUCKET) -> list[list[Detection]]:
        torch = self._torch
        h, w = frames[0].shape[:2]
        with torch.inference_mode():
            batch, hd, wd, scale = self._to_u8_batch(frames)
            min_face_det = max(float(_PNET_CELL), self.min_face * scale)
            boxes, image_inds, points = self._cascade(batch, hd, wd, min_face_det, bucket)
        return _to_detections(boxes, image_inds, points, scale, h, w, len(frames), self.min_face)

    def _to_u8_batch(self, frames: Sequence[np.ndarray]):
        """(uint8 NCHW channels-last batch at detection scale, its h, w, the scale)."""
        torch = self._torch
        for f in frames:
            if f.ndim != 3 or f.shape[2] != 3 or f.dtype != np.uint8:
                raise ValueError(f"expected HxWx3 uint8 RGB frames, got {f.dtype} {f.shape}")
        h, w = frames[0].shape[:2]
        scale = self.detection_scale(h, w)
        # NHWC uint8 viewed as NCHW: a channels-last tensor, no copy
        batch = torch.from_numpy(np.stack(frames)).to(self.device).permute(0, 3, 1, 2)
        if scale < 1.0:
            hd, wd = max(1, round(h * scale)), max(1, round(w * scale))
            batch = _resize_u8(batch, (hd, wd))
        else:
            hd, wd = h, w
        return batch, hd, wd, scale

    def _pyramid_scales(self, h: int, w: int, min_face: float) -> list[float]:
        """P-net's pyramid scales for an ``h`` x ``w`` detection-scale frame, largest first."""
        m = _PNET_CELL / min_face
        minl = min(h, w) * m
        scales = []
        s = m
        while minl >= _PNET_CELL:
            scales.append(s)
            s *= self.factor
            minl *= self.factor
        return scales

    def _cascade(self, batch_u8, h: int, w: int, min_face: float, bucket: int = _NET_BUCKET):
        """facenet-pytorch's ``detect_face`` on a uint8 NCHW (channels-last) batch.

        Returns (boxes Kx5 [x1, y1, x2, y2, score], image index per box, landmarks Kx5x2),
        numpy, in the batch's pixel coordinates (facenet-pytorch's box convention).
        """
        torch = self._torch
        empty = (np.zeros((0, 5)), np.zeros((0,), dtype=np.int64), np.zeros((0, 5, 2)))

        # Stage 1: P-net over the image pyramid.
        scales = self._pyramid_scales(h, w, min_face)
        n = batch_u8.shape[0]
        all_boxes, all_inds = [], []
        sources = []   # (x scale, y scale, normalised level) for the R/O-net crops
        for s in scales:
            size = (int(h * s + 1), int(w * s + 1))
            level = _normalise(_resize_u8(batch_u8, size)).contiguous(
                memory_format=torch.channels_last)
            sources.append((size[1] / w, size[0] / h, level))
            # A whole batch of 960x540 feature maps falls out of cache: ~2x slower.
            chunk = max(1, min(n, _PNET_CHUNK_PIXELS // (size[0] * size[1])))
            outs = [self._pnet(level[i:i + chunk]) for i in range(0, n, chunk)]
            reg = torch.cat([o[0] for o in outs])
            prob = torch.cat([o[1] for o in outs])[:, 1]
            boxes_s, inds_s = _generate_boxes(reg, prob, s, _STAGE_THRESHOLDS[0])
            if len(boxes_s):
                keep = _batched_nms(boxes_s[:, :4], boxes_s[:, 4], inds_s, 0.5)
                all_boxes.append(boxes_s[keep])
                all_inds.append(inds_s[keep])
        if not all_boxes:
            return empty
        boxes = torch.cat(all_boxes)
        image_inds = torch.cat(all_inds)
        keep = _batched_nms(boxes[:, :4], boxes[:, 4], image_inds, 0.7)
        boxes, image_inds = boxes[keep], image_inds[keep]
        regw = boxes[:, 2] - boxes[:, 0]
        regh = boxes[:, 3] - boxes[:, 1]
        boxes = torch.stack([boxes[:, 0] + boxes[:, 5] * regw, boxes[:, 1] + boxes[:, 6] * regh,
                             boxes[:, 2] + boxes[:, 7] * regw, boxes[:, 3] + boxes[:, 8] * regh,
                             boxes[:, 4]], dim=1)
        boxes = _square(boxes)

        # Crops come from the pyramid levels, or from the full frames (made on demand).
        sources.reverse()   # smallest scale first
        sources.append((1.0, 1.0, lambda: _normalise(batch_u8.contiguous())))
        return self._refine(sources, boxes, image_inds, bucket)

    def _refine(self, sources: list, boxes, image_inds, bucket: int = _NET_BUCKET):
        """Stages 2 and 3 of the cascade on square candidate ``boxes`` (Kx5, the batch's
        pixels, facenet-pytorch's convention): R-net, NMS, O-net, NMS. ``sources`` are
        (x scale, y scale, level or a function making it) smallest scale first, the last
        one the frames themselves (:meth:`_crops`). Returns what :meth:`_cascade` does."""
        torch = self._torch
        empty = (np.zeros((0, 5)), np.zeros((0,), dtype=np.int64), np.zeros((0, 5, 2)))

        # Stage 2: R-net on 24x24 crops.
        reg, prob = self._run(self._rnet, self._crops(sources, boxes, image_inds, 24), bucket)
        score = prob[:, 1]
        ok = score > _STAGE_THRESHOLDS[1]
        boxes = torch.cat([boxes[ok, :4], score[ok].unsqueeze(1)], dim=1)
        image_inds, reg = image_inds[ok], reg[ok]
        if len(boxes) == 0:
            return empty
        keep = _batched_nms(boxes[:, :4], boxes[:, 4], image_inds, 0.7)
        boxes, image_inds, reg = boxes[keep], image_inds[keep], reg[keep]
        boxes = _square(_regress(boxes, reg))

        # Stage 3: O-net on 48x48 crops: final score, box regression, landmarks.
        reg, marks, prob = self._run(self._onet, self._crops(sources, boxes, image_inds, 48), bucket)
        score = prob[:, 1]
        ok = score >= self.threshold
        if not bool(ok.any()):
            return empty
        boxes = torch.cat([boxes[ok, :4], score[ok].unsqueeze(1)], dim=1)
        image_inds, reg, marks = image_inds[ok], reg[ok], marks[ok]
        bw = (boxes[:, 2] - boxes[:, 0] + 1).unsqueeze(1)
        bh = (boxes[:, 3] - boxes[:, 1] + 1).unsqueeze(1)
        points = torch.stack([bw * marks[:, :5] + boxes[:, 0:1] - 1,
                              bh * marks[:, 5:10] + boxes[:, 1:2] - 1], dim=2)
        boxes = _regress(boxes, reg)
        keep = _batched_nms(boxes[:, :4], boxes[:, 4], image_inds, 0.7, mode="min")
        return (boxes[keep].cpu().numpy(), image_inds[keep].cpu().numpy(),
                points[keep].cpu().numpy())

    def _crops(self, sources: list, boxes, image_inds, size: int):
        """Square crops of the candidate boxes resized to ``size``x``size``, channels-last.

        Each box is cut from the coarsest pyramid level (or else the full frame) in which
        it is at least ``size`` pixels wide, with 2x2 bilinear samples per output pixel.
        Consecutive levels differ by ~1.4x, so that averages over the box much like an
        area resize (no aliasing). Outside the frame the crop is zero (mid-gray).

        facenet-pytorch's box convention is 1-based inclusive: box (x1, y1, x2, y2) covers
        the pixel edges x1 - 1 .. x2.
        """
        torch = self._torch
        edges = torch.stack([boxes[:, 0] - 1, boxes[:, 1] - 1, boxes[:, 2], boxes[:, 3]], dim=1)
        side = torch.maximum(edges[:, 2] - edges[:, 0], edges[:, 3] - edges[:, 1])
        out = torch.empty((len(boxes), 3, size, size), dtype=edges.dtype, device=edges.device)
        todo = torch.ones(len(boxes), dtype=torch.bool, device=edges.device)
        for i, (sx, sy, level) in enumerate(sources):
            last = i == len(sources) - 1
            sel = todo if last else todo & (side * min(sx, sy) >= size)
            if not bool(sel.any()):
                continue
            if callable(level) or not level.is_contiguous():
                # made on first use; grid_sample is faster on NCHW-contiguous input
                level = level() if callable(level) else level.contiguous()
                sources[i] = (sx, sy, level)
            scale = torch.tensor([sx, sy, sx, sy], dtype=edges.dtype, device=edges.device)
            out[sel] = _crop_resize(level, edges[sel] * scale, image_inds[sel], size)
            todo &= ~sel
        return out.contiguous(memory_format=torch.channels_last)

    def _run(self, net, x, bucket: int = _NET_BUCKET):
        """``net(x)`` in chunks, to bound memory when a crowd yields thousands of candidates.

        Each chunk is zero-padded to a multiple of ``_NET_BUCKET`` rows: the number of
        candidates changes every frame, and every new batch shape left memory behind in
        the CPU kernels' caches/allocator (RSS grew ~100 MB a minute on a long video);
        with a few fixed shapes it stays flat, at no measurable cost in speed.
        """
        torch = self._torch
        outs = []
        for i in range(0, len(x), _NET_CHUNK):
            chunk = x[i:i + _NET_CHUNK]
            n = len(chunk)
            padded = -(-n // bucket) * bucket
            if padded != n:
                chunk = torch.cat([chunk, chunk.new_zeros((padded - n, *chunk.shape[1:]))])
                chunk = chunk.contiguous(memory_format=torch.channels_last)
            outs.append(tuple(v[:n] for v in net(chunk)))
        return tuple(torch.cat(v, dim=0) for v in zip(*outs))


# ----------------------------------------------------------------------------- helpers

def _to_detections(boxes, image_inds, points, scale: float, h: int, w: int, n: int,
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


def _resize_u8(batch_u8, size):
    """Antialiased bilinear resize of a uint8 NCHW batch (PyTorch's fast uint8 kernel)."""
    import torch
    return torch.nn.functional.interpolate(batch_u8, size=size, mode="bilinear",
                                           antialias=True, align_corners=False)


def _normalise(batch_u8):
    """(x - 127.5) / 128 as MTCNN expects; in place on the float copy (same bits: the
    scale is a power of two)."""
    return batch_u8.float().mul_(0.0078125).sub_(0.99609375)


def _generate_boxes(reg, prob, scale: float, threshold: float, offset: tuple[int, int] = (0, 0)):
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


def _square(boxes):
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


def _regress(boxes, reg):
    """Apply the networks' box regression (``bbreg``)."""
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    out = boxes.clone()
    out[:, 0] = boxes[:, 0] + reg[:, 0] * w
    out[:, 1] = boxes[:, 1] + reg[:, 1] * h
    out[:, 2] = boxes[:, 2] + reg[:, 2] * w
    out[:, 3] = boxes[:, 3] + reg[:, 3] * h
    return out


def _batched_nms(boxes, scores, image_inds, threshold: float, mode: str = "union"):
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


def _crop_resize(level, edges, image_inds, size: int):
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


def _networks():
    """The three MTCNN networks, as facenet-pytorch 2.6.0 defines them (same layers and
    parameter names, so its weight files load as they are), with P-net's 2x2 max-pool as
    strided maxima (bit-identical, ~2.5x faster on CPU)."""
    from torch import nn

    class MaxPool2x2Ceil(nn.Module):
        def forward(self, x):
            return _max_pool_2x2_ceil(x)

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


def _max_pool_2x2_ceil(x):
    """``max_pool2d(x, 2, 2, ceil_mode=True)`` as three element-wise maxima of strided
    views: bit-identical, and ~2.5x faster for P-net's large channels-last maps."""
    import torch
    h, w = x.shape[-2:]
    if h % 2 or w % 2:   # padding would cost more than it saves
        return torch.nn.functional.max_pool2d(x, 2, 2, ceil_mode=True)
    top = torch.maximum(x[..., 0::2, 0::2], x[..., 0::2, 1::2])
    bottom = torch.maximum(x[..., 1::2, 0::2], x[..., 1::2, 1::2])
    return torch.maximum(top, bottom, out=top)


# -- keyframes: when track-guided detection runs the full cascade -------------------------

# A shot cut: the total-variation distance between the 16-bin gray histograms of two
# consecutive sampled frames (64x36 thumbnails) exceeds this. Measured at 5 fps on the 22
# shared clips: within a clip at most 0.10 (camera motion, a crowd walking, talking heads);
# between the last frame of one clip and the first of another (462 pairs) 1% below 0.17,
# the median ~0.5; the two real cuts in pyfeat_*face*.mov 0.52 and 1.0. A histogram,
# not a pixel difference: the mean absolute pixel difference reached 29 (of 255) within a
# clip (liveportrait_d12, a moving head) while 5% of cuts stayed below 38. A missed cut
# costs little: a track that is not found where it was forces a keyframe next frame.
SHOT_CUT_DISTANCE = 0.15
_SIGNATURE_SIZE = (64, 36)


def frame_signature(image: np.ndarray) -> np.ndarray:
    """A frame's 16-bin gray-level histogram (sums to 1), from a 64x36 thumbnail: what
    :func:`is_shot_cut` compares (~3 ms for a 1080p frame)."""
    from PIL import Image

    gray = np.asarray(Image.fromarray(image).resize(_SIGNATURE_SIZE, Image.BILINEAR,
                                                     reducing_gap=2.0).convert("L"))
    return np.bincount(gray.ravel() // 16, minlength=16) / gray.size


def is_shot_cut(before: np.ndarray, after: np.ndarray,
                threshold: float = SHOT_CUT_DISTANCE) -> bool:
    """True when two frames' signatures (:func:`frame_signature`) differ by more than
    ``threshold`` (total-variation distance, 0..1)."""
    return 0.5 * float(np.abs(before - after).sum()) > threshold


class Keyframes:
    """Which sampled frames get full-frame detection in track-guided detection.

    A frame is a keyframe when it is the first one, when ``every`` sampled frames have
    passed since the last keyframe (so a face that enters is found within ``every``
    sampled frames), when it looks unlike the frame before (:func:`is_shot_cut`), or when
    the frame before lost a track (:meth:`lost`). ``every=1``: every frame. The other
    frames search only around the live tracks (:meth:`FaceDetector.detect_near`).
    ``stats`` counts what happened.
    """

    def __init__(self, every: int):
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be an integer >= 1, not {every!r}")
        self.every = every
        self.stats = DetectionStats()
        self._since = 0                       # sampled frames since the last keyframe
        self._previous: Optional[np.ndarray] = None
        self._lost = False

    def is_keyframe(self, image: np.ndarray) -> bool:
        """Whether this frame (the next sampled one, in order) is a keyframe; counts it."""
        if self.every == 1:
            self.stats.keyframes += 1
            return True
        signature = frame_signature(image)
        cut = self._previous is not None and is_shot_cut(self._previous, signature)
        self._previous = signature
        key = self._since == 0 or self._since >= self.every     # the first, or every N-th
        if not key and cut:
            self.stats.shot_cuts += 1
        elif not key and self._lost:
            self.stats.lost_tracks += 1
        key = key or cut or self._lost
        self._lost = False
        if key:
            self.stats.keyframes += 1
            self._since = 1
        else:
            self.stats.roi_frames += 1
            self._since += 1
        return key

    def lost(self) -> None:
        """A track seen in the frame before was not found in this (region-searched) frame:
        the next frame is a keyframe."""
        self._lost = True


__all__ = ["FaceDetector", "INSTALL_HINT", "Keyframes", "ROI_REGION", "SHOT_CUT_DISTANCE",
           "frame_signature", "is_shot_cut", "weights_dir"]
