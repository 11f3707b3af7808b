"""Face detection: MTCNN with facenet-pytorch's bundled P/R/O-net weights, tuned for CPU.

``FaceDetector.detect(images)`` returns every face in every frame as ``Detection`` records
(boxes and 5 landmarks in full-frame pixels, O-net confidence as ``score``).
``FaceDetector.refine_near(image, boxes)`` runs R-net and O-net alone on a few candidates
at given boxes, ``FaceDetector.detect_near(image, boxes)`` the whole cascade only on small
regions around them (track-guided detection between keyframes, refine first; ``Keyframes`` says which
frames are keyframes: every N-th, the first, a shot cut, or a region frame that lost a
track, searched again; it is
in :mod:`fer_video.keyframes`, re-exported here). Measured
(bench/roi_detection.py, busy 2-core machine, CPU ms per sampled frame at 5 fps):
WolfgangLanger 640x360 39 -> 35 (N=5), KatieHill 512x512 54 -> 34, crowd 1080p 280 -> 159.

The cascade is facenet-pytorch 2.6.0's ``detect_face`` (same networks and weights, same
thresholds, box regression and NMS steps), re-implemented so that it runs about twice as
fast on CPU and starts 2.5 s sooner; the networks, NMS, box arithmetic and crops are in
:mod:`fer_video.mtcnn` (which says what differs from facenet-pytorch), the stages that
string them together (pyramid, P-net, R-net, O-net) here. Measured CPU time per frame, one
thread, batches of 8, on the 2-core machine: 640x360 36 ms (facenet-pytorch's
``MTCNN.detect``: 60-90 ms); 1920x1080 (detected at 960x540) ~300 ms (~570 ms).

On the sample clips boxes agree with facenet-pytorch's ``MTCNN.detect`` at IoU ~0.9 (the
face counts match; borderline faces in the crowd can differ).

Threads: the detector leaves torch's thread count alone. Torch's intra-op thread count is
process-wide, so it is set once where a process starts, from its ``threads.ThreadPlan``
(``ThreadPlan.apply``: one intra-op thread; on a 2-core machine with any other busy process,
OpenMP's spin-waiting made 2 threads up to 15x slower than 1). A stand-alone caller may
still pass ``num_threads`` to have the constructor set it, as it did by default before.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from .keyframes import SHOT_CUT_DISTANCE, Keyframes, frame_signature, is_shot_cut  # re-exported
from .mtcnn import INSTALL_HINT, weights_dir  # re-exported
from .mtcnn import (batched_nms, crop_resize, generate_boxes, load_networks, normalise, regress,
                    resize_u8, square, to_detections)
from .records import Detection

_PNET_CELL = 12                  # P-net's window: the smallest face it sees, in detection px
_STAGE_THRESHOLDS = (0.6, 0.7)   # P-net and R-net thresholds (facenet-pytorch defaults)
_PNET_CHUNK_PIXELS = 1_000_000   # pixels per P-net call for big levels (see _cascade)
_RNET_ROWS = 16                  # rows per R-net call and per O-net call; a last, shorter chunk is
_ONET_ROWS = 8                   #   padded to the next power of two (so few fixed shapes: flat memory)
# Measured (one thread, idle 2-core machine, ms per call; session 13): O-net 1/2/4/8/16/32/64 rows
# 0.8/1.3/2.0/3.8/11.1/24.2/39.7 (past 8 rows its maps fall out of cache: 16 rows cost 2.9x 8);
# R-net 0.3/0.5/0.6/0.9/1.4/3.9/7.6. A talking head's ~5 O-net rows padded to 8 cost 3.8 ms of a
# region frame's ~9 (before: every call padded to a multiple of 8 or 64 rows, in chunks of 512).
ROI_REGION = 3.0                 # detect_near searches a square this many times a box's side
# ... twice as wide for a track missed in the frame before (``reach`` 2): where it is now is
# less sure. Measured on the 1080p crowd clip: a 26-px face missed at 0.6 s had moved 1.2x
# its side by 0.8 s, just out of a 3x square and inside a 6x one.
ROI_REACH_MISSED = 2.0
_ROI_LEVELS = (8.0, 32.0)        # ... on the pyramid levels where that side is 8-32 px
# refine_near's candidates per box: (x shift, y shift, in units of the box's side; scale of
# the side). Measured (session 13, one thread, 39 frames each, candidates from the frame
# before's full-frame boxes): talking head 9.7 ms a frame against detect_near's 15.3, every
# face row at IoU >= 0.8 with full-frame detection; 640x360 Pexels 10.2 against 14.6 ms,
# 97.4% of rows (the shifts let a face that moved ~0.15 of its side be framed again).
_REFINE_CANDIDATES = ((0.0, 0.0, 1.0), (0.15, 0.0, 1.0), (-0.15, 0.0, 1.0), (0.0, 0.15, 1.0),
                      (0.0, -0.15, 1.0), (0.0, 0.0, 0.85), (0.0, 0.0, 1.18))


class CascadeOptions:
    """What both MTCNN detectors (this module's on torch, ``mtcnn_onnx``'s on ONNX Runtime)
    share and that runs no network: the options and their checks, the batching of
    :meth:`detect`, the detection scale and the pyramid's scales. A subclass provides
    ``_detect_batch(frames)``."""

    def _set_options(self, min_face: float, threshold: float, max_side: Optional[int], batch_size: int,
                     factor: float) -> None:
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
        self.min_face = float(min_face)
        self.threshold = float(threshold)
        self.max_side = int(max_side) if max_side else None
        self.batch_size = int(batch_size)
        self.factor = float(factor)

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

    def detect_one(self, image: np.ndarray) -> list[Detection]:
        """Full-frame detection of one frame (a keyframe of track-guided detection): as
        ``detect([image])[0]``."""
        return self._detect_batch([image])[0]

    def detection_scale(self, height: int, width: int) -> float:
        """The factor frames of this size are resized by for detection (<= 1)."""
        if self.max_side and max(height, width) > self.max_side:
            return self.max_side / max(height, width)
        return 1.0

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


class FaceDetector(CascadeOptions):
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
        self._set_options(min_face, threshold, max_side, batch_size, factor)
        folder = weights_dir()
        import torch
        if num_threads:
            torch.set_num_threads(int(num_threads))
        self._torch = torch
        self.device = torch.device(device)
        self._pnet, self._rnet, self._onet = load_networks(folder, self.device)

    # ------------------------------------------------------------------ public

    def detect_near(self, image: np.ndarray,
                    boxes: Sequence[tuple[float, float, float, float]],
                    reach: Optional[Sequence[float]] = None) -> list[Detection]:
        """Faces in ``image`` near the given boxes (e.g. the tracks' predicted boxes), strongest
        first: the cascade on small regions, for track-guided detection between keyframes.

        Around each box, a square region ``ROI_REGION`` times its side (times ``reach``, one
        factor per box, default 1) is searched: P-net
        runs on that window of the pyramid levels where a face of about the box's size can
        be found (``_ROI_LEVELS``), and its candidates go through R-net and O-net exactly as
        in :meth:`detect` (the same levels, crops, thresholds, regression and NMS; P-net's
        output cells inside a window are those of the whole level), so a face inside a
        region comes out with the box full-frame detection gives it. A face outside every
        region is not looked for. No box: no face.
        """
        if len(boxes) == 0:
            return []
        h, w = image.shape[:2]
        with self._torch.inference_mode():
            batch, hd, wd, scale, min_face_det = self._one_at_detection_scale(image)
            factors = np.ones(len(boxes)) if reach is None else np.asarray(reach, dtype=np.float64)
            if factors.shape != (len(boxes),) or not np.all(factors > 0):
                raise ValueError(f"reach must be one positive factor per box, not {reach!r}")
            found = self._near(batch, hd, wd, min_face_det,
                               np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * scale, factors)
        return to_detections(*found, scale, h, w, 1, self.min_face)[0]

    def refine_near(self, image: np.ndarray,
                    boxes: Sequence[tuple[float, float, float, float]]) -> list[Detection]:
        """Faces in ``image`` at about the given boxes (the predicted boxes of tracks seen in
        the frame before), strongest first: R-net and O-net only, no P-net.

        Each box gives seven square candidates: itself and copies shifted by 0.15 of its
        side left, right, up and down, and scaled by 0.85 and 1.18
        (``_REFINE_CANDIDATES``). They go through R-net and O-net exactly as P-net's
        candidates do in :meth:`detect` (the same crops from the same pyramid levels,
        thresholds, regression and NMS), so what comes out is a face O-net accepts, with
        its box and landmarks; the box can differ from full-frame detection's by a few
        percent (it starts from another candidate). A face that moved further than the
        shifts reach, or changed size more, is not found: :meth:`detect_near` looks wider.
        No box: no face. About 2/3 of :meth:`detect_near`'s time for a talking head.
        """
        torch = self._torch
        if len(boxes) == 0:
            return []
        h, w = image.shape[:2]
        with torch.inference_mode():
            batch, hd, wd, scale, min_face_det = self._one_at_detection_scale(image)
            b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * scale
            side = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])[:, None]
            jitter = np.asarray(_REFINE_CANDIDATES)
            cx = (b[:, 0:1] + b[:, 2:3]) / 2 + jitter[:, 0] * side
            cy = (b[:, 1:2] + b[:, 3:4]) / 2 + jitter[:, 1] * side
            half = side * jitter[:, 2] / 2
            # facenet-pytorch's 1-based inclusive boxes: (x1, y1, x2, y2) covers edges x1 - 1 .. x2
            cand = np.stack([cx - half + 1, cy - half + 1, cx + half, cy + half,
                             np.ones_like(cx)], axis=-1).reshape(-1, 5)
            cand = torch.from_numpy(cand).float().to(self.device)
            _, _, sources = self._lazy_levels(batch, hd, wd, min_face_det)
            found = self._refine(sources, cand, torch.zeros(len(cand), dtype=torch.long,
                                                           device=cand.device))
        return to_detections(*found, scale, h, w, 1, self.min_face)[0]

    def _one_at_detection_scale(self, image: np.ndarray):
        """(batch, height, width, scale, smallest face) of one frame at detection scale, for
        the region searches: the frame as a one-image u8 batch, its size and scale there,
        and ``min_face`` in those pixels (at least P-net's 12-px cell)."""
        batch, hd, wd, scale = self._to_u8_batch([image])
        return batch, hd, wd, scale, max(float(_PNET_CELL), self.min_face * scale)

    def _lazy_levels(self, batch_u8, h: int, w: int, min_face: float):
        """(scales, level(i, size), R/O-net crop sources) for one frame whose pyramid levels
        are made only when first used: a region search needs few of them."""
        levels: dict[int, Any] = {}       # pyramid levels made so far, by index

        def level(i: int, size: tuple[int, int]):
            if i not in levels:
                levels[i] = normalise(resize_u8(batch_u8, size)).contiguous()
            return levels[i]

        scales = self._pyramid_scales(h, w, min_face)
        sizes = [(int(h * s + 1), int(w * s + 1)) for s in scales]
        sources: list = [(sz[1] / w, sz[0] / h, (lambda i=i, sz=sz: level(i, sz)))
                         for i, sz in enumerate(sizes)]
        sources.reverse()   # smallest scale first
        sources.append((1.0, 1.0, lambda: normalise(batch_u8.contiguous())))
        return scales, level, sources

    def _near(self, batch_u8, h: int, w: int, min_face: float, boxes: np.ndarray,
              reach: np.ndarray):
        """:meth:`detect_near` at detection scale: boxes Kx4 in the batch's pixels."""
        torch = self._torch
        empty = (np.zeros((0, 5)), np.zeros((0,), dtype=np.int64), np.zeros((0, 5, 2)))
        scales, level, sources = self._lazy_levels(batch_u8, h, w, min_face)
        sizes = [(int(h * s + 1), int(w * s + 1)) for s in scales]
        side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
        all_boxes = []
        for i, (s, size) in enumerate(zip(scales, sizes)):
            for k in np.flatnonzero((side * s >= _ROI_LEVELS[0]) & (side * s <= _ROI_LEVELS[1])):
                half = ROI_REGION * reach[k] * side[k] * s / 2   # in this level's pixels
                # even offsets: P-net's stride-2 cells then fall where the whole level's do
                x0 = max(0, int((cx[k] * s - half) // 2) * 2)
                y0 = max(0, int((cy[k] * s - half) // 2) * 2)
                x1, y1 = min(size[1], int(cx[k] * s + half) + 1), min(size[0], int(cy[k] * s + half) + 1)
                if x1 - x0 < _PNET_CELL or y1 - y0 < _PNET_CELL:
                    continue
                window = level(i, size)[:, :, y0:y1, x0:x1].contiguous(
                    memory_format=torch.channels_last)
                reg, prob = self._pnet(window)
                found, inds = generate_boxes(reg, prob[:, 1], s, _STAGE_THRESHOLDS[0],
                                             offset=(x0 // 2, y0 // 2))
                if len(found):
                    all_boxes.append(found)
        if not all_boxes:
            return empty
        # The same candidate can come from two overlapping regions: NMS as per level, then
        # across levels, as the full cascade does.
        cand = torch.cat(all_boxes)
        inds = torch.zeros(len(cand), dtype=torch.long, device=cand.device)
        keep = batched_nms(cand[:, :4], cand[:, 4], inds, 0.5)
        cand = cand[keep]
        keep = batched_nms(cand[:, :4], cand[:, 4], inds[keep], 0.7)
        cand = cand[keep]
        regw, regh = cand[:, 2] - cand[:, 0], cand[:, 3] - cand[:, 1]
        cand = square(torch.stack([cand[:, 0] + cand[:, 5] * regw, cand[:, 1] + cand[:, 6] * regh,
                                   cand[:, 2] + cand[:, 7] * regw, cand[:, 3] + cand[:, 8] * regh,
                                   cand[:, 4]], dim=1))
        return self._refine(sources, cand, torch.zeros(len(cand), dtype=torch.long,
                                                       device=cand.device))

    # ------------------------------------------------------------------ cascade

    def _detect_batch(self, frames: Sequence[np.ndarray]) -> list[list[Detection]]:
        torch = self._torch
        h, w = frames[0].shape[:2]
        with torch.inference_mode():
            batch, hd, wd, scale = self._to_u8_batch(frames)
            min_face_det = max(float(_PNET_CELL), self.min_face * scale)
            boxes, image_inds, points = self._cascade(batch, hd, wd, min_face_det)
        return to_detections(boxes, image_inds, points, scale, h, w, len(frames), self.min_face)

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
            batch = resize_u8(batch, (hd, wd))
        else:
            hd, wd = h, w
        return batch, hd, wd, scale

    def _cascade(self, batch_u8, h: int, w: int, min_face: float):
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
            level = normalise(resize_u8(batch_u8, size)).contiguous(
                memory_format=torch.channels_last)
            sources.append((size[1] / w, size[0] / h, level))
            # A whole batch of 960x540 feature maps falls out of cache: ~2x slower.
            chunk = max(1, min(n, _PNET_CHUNK_PIXELS // (size[0] * size[1])))
            outs = [self._pnet(level[i:i + chunk]) for i in range(0, n, chunk)]
            reg = torch.cat([o[0] for o in outs])
            prob = torch.cat([o[1] for o in outs])[:, 1]
            boxes_s, inds_s = generate_boxes(reg, prob, s, _STAGE_THRESHOLDS[0])
            if len(boxes_s):
                keep = batched_nms(boxes_s[:, :4], boxes_s[:, 4], inds_s, 0.5)
                all_boxes.append(boxes_s[keep])
                all_inds.append(inds_s[keep])
        if not all_boxes:
            return empty
        boxes = torch.cat(all_boxes)
        image_inds = torch.cat(all_inds)
        keep = batched_nms(boxes[:, :4], boxes[:, 4], image_inds, 0.7)
        boxes, image_inds = boxes[keep], image_inds[keep]
        regw = boxes[:, 2] - boxes[:, 0]
        regh = boxes[:, 3] - boxes[:, 1]
        boxes = torch.stack([boxes[:, 0] + boxes[:, 5] * regw, boxes[:, 1] + boxes[:, 6] * regh,
                             boxes[:, 2] + boxes[:, 7] * regw, boxes[:, 3] + boxes[:, 8] * regh,
                             boxes[:, 4]], dim=1)
        boxes = square(boxes)

        # Crops come from the pyramid levels, or from the full frames (made on demand).
        sources.reverse()   # smallest scale first
        sources.append((1.0, 1.0, lambda: normalise(batch_u8.contiguous())))
        return self._refine(sources, boxes, image_inds)

    def _refine(self, sources: list, boxes, image_inds):
        """Stages 2 and 3 of the cascade on square candidate ``boxes`` (Kx5, the batch's
        pixels, facenet-pytorch's convention): R-net, NMS, O-net, NMS. ``sources`` are
        (x scale, y scale, level or a function making it) smallest scale first, the last
        one the frames themselves (:meth:`_crops`). Returns what :meth:`_cascade` does."""
        torch = self._torch
        empty = (np.zeros((0, 5)), np.zeros((0,), dtype=np.int64), np.zeros((0, 5, 2)))

        # Stage 2: R-net on 24x24 crops.
        reg, prob = self._run(self._rnet, self._crops(sources, boxes, image_inds, 24), _RNET_ROWS)
        score = prob[:, 1]
        ok = score > _STAGE_THRESHOLDS[1]
        boxes = torch.cat([boxes[ok, :4], score[ok].unsqueeze(1)], dim=1)
        image_inds, reg = image_inds[ok], reg[ok]
        if len(boxes) == 0:
            return empty
        keep = batched_nms(boxes[:, :4], boxes[:, 4], image_inds, 0.7)
        boxes, image_inds, reg = boxes[keep], image_inds[keep], reg[keep]
        boxes = square(regress(boxes, reg))

        # Stage 3: O-net on 48x48 crops: final score, box regression, landmarks.
        reg, marks, prob = self._run(self._onet, self._crops(sources, boxes, image_inds, 48), _ONET_ROWS)
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
        boxes = regress(boxes, reg)
        keep = batched_nms(boxes[:, :4], boxes[:, 4], image_inds, 0.7, mode="min")
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
            out[sel] = crop_resize(level, edges[sel] * scale, image_inds[sel], size)
            todo &= ~sel
        return out.contiguous(memory_format=torch.channels_last)

    def _run(self, net, x, rows: int):
        """``net(x)`` in chunks of ``rows`` rows (the fastest size per net, see
        ``_ONET_ROWS``), a shorter last chunk zero-padded to the next power of two.

        The number of candidates changes every frame, and every new batch shape left memory
        behind in the CPU kernels' caches/allocator (RSS grew ~100 MB a minute on a long
        video); with a few fixed shapes (1, 2, 4, ... ``rows``) it stays flat. Chunks also
        bound memory when a crowd yields thousands of candidates.
        """
        torch = self._torch
        outs = []
        for i in range(0, len(x), rows):
            chunk = x[i:i + rows]
            n = len(chunk)
            padded = min(rows, 1 << (n - 1).bit_length())
            if padded != n:
                chunk = torch.cat([chunk, chunk.new_zeros((padded - n, *chunk.shape[1:]))])
                chunk = chunk.contiguous(memory_format=torch.channels_last)
            outs.append(tuple(v[:n] for v in net(chunk)))
        return tuple(torch.cat(v, dim=0) for v in zip(*outs))


__all__ = ["CascadeOptions", "FaceDetector", "INSTALL_HINT", "Keyframes", "ROI_REACH_MISSED", "ROI_REGION",
           "SHOT_CUT_DISTANCE", "frame_signature", "is_shot_cut", "weights_dir"]
