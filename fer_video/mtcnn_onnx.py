"""Face detection without torch: the MTCNN cascade of :mod:`fer_video.detect` on ONNX Runtime
and numpy, for a start-up that does not import torch (issue 12: ``import torch`` alone takes
1.75 s on the 2-core machine, ``import onnxruntime`` 0.12 s).

:class:`OnnxFaceDetector` has :class:`fer_video.detect.FaceDetector`'s surface (``detect``,
``detect_one``, ``detect_near``, ``refine_near``, ``detection_scale``) and its cascade step
for step: the same networks and weights (``fer_video/models/mtcnn/*.onnx``, written from
facenet-pytorch's files by ``bench/export_mtcnn_onnx.py``), pyramid scales, thresholds,
NMS, box regression, region search and R/O-net candidates. What differs, and so moves a box
or a score in its last digits:

* resizes (the detection scale and the pyramid levels) are Pillow's antialiased bilinear on
  uint8 frames, where the torch detector uses torch's uint8 kernel (made to match Pillow's);
* the R/O-net crops are sampled in numpy with the same positions, bilinear weights, zeros
  outside the level and 2x2 averaging as ``mtcnn.crop_resize``'s ``grid_sample``;
* the networks run in ONNX Runtime's kernels, one intra-op thread, no spin-waiting.

``analyze --backend onnx`` runs it with ``classify_onnx.OnnxEmotionClassifier``.
tests/test_mtcnn_onnx.py compares it with the torch detector on real clips.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .detect import (_ONET_ROWS, _PNET_CELL, _PNET_CHUNK_PIXELS, _REFINE_CANDIDATES, _RNET_ROWS,
                     _ROI_LEVELS, _STAGE_THRESHOLDS, ROI_REGION, CascadeOptions)
from .errors import SetupError
from .mtcnn import _nms, to_detections
from .records import Detection

MODELS = Path(__file__).resolve().parent / "models" / "mtcnn"
_EMPTY = (np.zeros((0, 5)), np.zeros((0,), dtype=np.int64), np.zeros((0, 5, 2)))


def _session(path: Path, threads: int):
    from .onnxrt import import_onnxruntime, session_options

    ort = import_onnxruntime()
    so = session_options(threads)
    try:
        return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    except Exception as exc:       # onnxruntime raises its own types for unreadable models
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SetupError(f"cannot load the MTCNN network {path} ({first})") from None


def resize_u8(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Antialiased bilinear resize of uint8 NHWC frames to ``size`` (height, width): Pillow's."""
    from PIL import Image

    h, w = size
    if frames.shape[1:3] == (h, w):
        return frames
    return np.stack([np.asarray(Image.fromarray(f).resize((w, h), Image.BILINEAR)) for f in frames])


def resize_block(frame_u8: np.ndarray, size: tuple[int, int], block: tuple[int, int, int, int]) -> np.ndarray:
    """Pixels ``block`` = (x0, y0, x1, y1) of ``frame_u8`` (H x W x 3) resized to ``size``
    (height, width), as 1 x h x w x 3: Pillow's resize of just that box, the same values as
    the block of the whole resized frame (the same filter positions and weights, clipped to
    the frame, not to the box)."""
    from PIL import Image

    h, w = frame_u8.shape[:2]
    lh, lw = size
    x0, y0, x1, y1 = block
    box = (x0 * w / lw, y0 * h / lh, x1 * w / lw, y1 * h / lh)
    return np.asarray(Image.fromarray(frame_u8).resize((x1 - x0, y1 - y0), Image.BILINEAR, box=box))[None]


def normalise(frames_u8: np.ndarray) -> np.ndarray:
    """uint8 NHWC -> float32 NCHW, (x - 127.5) / 128 as ``mtcnn.normalise`` computes it."""
    x = frames_u8.astype(np.float32)
    x *= np.float32(0.0078125)
    x -= np.float32(0.99609375)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def generate_boxes(reg: np.ndarray, prob: np.ndarray, scale: float, threshold: float,
                   offset: tuple[int, int] = (0, 0)):
    """``mtcnn.generate_boxes`` in numpy (float32 like the torch version)."""
    n, y, x = np.nonzero(prob >= threshold)
    score = prob[n, y, x]
    r = reg[n, :, y, x]
    xy = np.stack([x, y], axis=1).astype(np.float32) + np.asarray(offset, dtype=np.float32)
    q1 = np.floor((2 * xy + 1) / np.float32(scale))
    q2 = np.floor((2 * xy + _PNET_CELL) / np.float32(scale))
    return np.concatenate([q1, q2, score[:, None], r], axis=1).astype(np.float32), n.astype(np.int64)


def square(boxes: np.ndarray) -> np.ndarray:
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out = boxes.copy()
    out[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def regress(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    out = boxes.copy()
    out[:, 0] = boxes[:, 0] + reg[:, 0] * w
    out[:, 1] = boxes[:, 1] + reg[:, 1] * h
    out[:, 2] = boxes[:, 2] + reg[:, 2] * w
    out[:, 3] = boxes[:, 3] + reg[:, 3] * h
    return out


def batched_nms(boxes: np.ndarray, scores: np.ndarray, image_inds: np.ndarray, threshold: float,
                mode: str = "union") -> np.ndarray:
    """``mtcnn.batched_nms`` on numpy arrays: kept indices, highest score first."""
    b, s = boxes.astype(np.float64), scores.astype(np.float64)
    keep = [sel[_nms(b[sel], s[sel], threshold, mode)]
            for sel in (np.flatnonzero(image_inds == img) for img in np.unique(image_inds))]
    keep = np.concatenate(keep) if keep else np.zeros(0, dtype=np.int64)
    return keep[np.argsort(-s[keep], kind="stable")]


def _axis_weights(lo: np.ndarray, hi: np.ndarray, size: int, limit: int):
    """For crops spanning pixel edges ``lo``..``hi`` (K) of an axis ``limit`` pixels long:
    (first source index per crop (K), K x size x B weights over B source pixels from it).
    Output pixel i averages 2 samples at (i + 0.25) and (i + 0.75) of its cell, each
    bilinear between its two nearest pixel centres, zero outside the axis: the samples and
    weights of ``grid_sample`` (align_corners=False: edge x is pixel index x - 0.5) with
    ``avg_pool2d(2)``, folded into one matrix per crop."""
    k = len(lo)
    sub = (np.arange(2 * size, dtype=np.float32) + np.float32(0.5)) / np.float32(2 * size)
    pos = lo[:, None] + (hi - lo)[:, None] * sub - np.float32(0.5)       # K x 2S sample positions
    p0 = np.floor(pos)
    frac = pos - p0
    idx = p0.astype(np.int64)[..., None] + np.arange(2)                  # K x 2S x 2 taps
    wt = np.stack([1 - frac, frac], axis=-1) * np.float32(0.5)           # 0.5: the 2-sample mean
    wt = np.where((idx >= 0) & (idx < limit), wt, np.float32(0))
    first = np.clip(idx.min(axis=(1, 2)), 0, limit - 1)
    local = idx - first[:, None, None]
    span = int(np.clip(local, 0, None).max()) + 1
    local = np.clip(local, 0, span - 1)                                   # (weight 0 where clipped)
    mat = np.zeros((k, size, span), dtype=np.float32)
    rows = np.broadcast_to(np.arange(2 * size)[None, :, None] // 2, local.shape)
    np.add.at(mat, (np.broadcast_to(np.arange(k)[:, None, None], local.shape), rows, local), wt)
    return first, mat


def crop_resize(level: np.ndarray, edges: np.ndarray, image_inds: np.ndarray, size: int,
                origin: tuple[int, int] = (0, 0), limits: tuple[int, int] | None = None) -> np.ndarray:
    """``mtcnn.crop_resize`` in numpy: crops of ``level`` (NCHW float32) inside ``edges``
    (K x [x1, y1, x2, y2] pixel edges), resized to ``size`` by 2x2 bilinear samples per
    output pixel averaged, zeros outside the level; as two small matrix products per crop
    (:func:`_axis_weights`) on the block of the level each crop covers. ``level`` may be a
    block of the level: its pixel (0, 0) is the level's ``origin`` (x, y), and ``limits``
    (width, height) are the whole level's, outside which samples are zero."""
    _, channels, bh, bw = level.shape
    lw, lh = limits if limits is not None else (bw, bh)
    k = len(edges)
    e = edges.astype(np.float32)
    x0, ax = _axis_weights(e[:, 0], e[:, 2], size, lw)                  # K, K x S x Bw
    y0, ay = _axis_weights(e[:, 1], e[:, 3], size, lh)                  # K, K x S x Bh
    cols = np.clip(np.clip(x0[:, None] + np.arange(ax.shape[2]), 0, lw - 1) - origin[0], 0, bw - 1)
    rows = np.clip(np.clip(y0[:, None] + np.arange(ay.shape[2]), 0, lh - 1) - origin[1], 0, bh - 1)
    img = np.asarray(image_inds, dtype=np.int64)
    nhwc = level.transpose(0, 2, 3, 1)
    blocks = nhwc[img[:, None, None], rows[:, :, None], cols[:, None, :]]    # K x Bh x Bw x C
    nh, nw = blocks.shape[1:3]
    t = np.matmul(ay, blocks.reshape(k, nh, nw * channels))                 # K x S x Bw*C
    t = t.reshape(k, size, nw, channels).transpose(0, 1, 3, 2).reshape(k, size * channels, nw)
    out = np.matmul(t, ax.transpose(0, 2, 1))                               # K x S*C x S
    return np.ascontiguousarray(out.reshape(k, size, channels, size).transpose(0, 2, 1, 3))


class OnnxFaceDetector(CascadeOptions):
    """:class:`fer_video.detect.FaceDetector` on ONNX Runtime (same options, minus
    ``device``; ``num_threads``: ONNX Runtime intra-op threads, default 1)."""

    def __init__(self, min_face: float = 20, threshold: float = 0.9, max_side: Optional[int] = 960,
                 batch_size: int = 8, num_threads: int = 1, factor: float = 0.709,
                 models: Path = MODELS):
        self._set_options(min_face, threshold, max_side, batch_size, factor)
        missing = [n for n in ("pnet", "rnet", "onet") if not (Path(models) / f"{n}.onnx").is_file()]
        if missing:
            raise SetupError(f"MTCNN networks missing in {models}: {', '.join(m + '.onnx' for m in missing)} "
                             "(write them with bench/export_mtcnn_onnx.py)")
        self._pnet, self._rnet, self._onet = (_session(Path(models) / f"{n}.onnx", num_threads)
                                              for n in ("pnet", "rnet", "onet"))
        self._local = threading.local()      # the last frame each thread searched: _frame_state

    # ------------------------------------------------------------------ public

    def detect_near(self, image: np.ndarray, boxes: Sequence[tuple[float, float, float, float]],
                    reach: Optional[Sequence[float]] = None) -> list[Detection]:
        """As ``FaceDetector.detect_near``."""
        if len(boxes) == 0:
            return []
        h, w = image.shape[:2]
        batch, hd, wd, scale, min_face_det, levels = self._one_at_detection_scale(image)
        factors = np.ones(len(boxes)) if reach is None else np.asarray(reach, dtype=np.float64)
        if factors.shape != (len(boxes),) or not np.all(factors > 0):
            raise ValueError(f"reach must be one positive factor per box, not {reach!r}")
        found = self._near(batch, hd, wd, min_face_det,
                           np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * scale, factors, levels)
        return to_detections(*found, scale, h, w, 1, self.min_face)[0]

    def refine_near(self, image: np.ndarray, boxes: Sequence[tuple[float, float, float, float]]) -> list[Detection]:
        """As ``FaceDetector.refine_near``: R-net and O-net on seven candidates per box."""
        if len(boxes) == 0:
            return []
        h, w = image.shape[:2]
        batch, hd, wd, scale, min_face_det, levels = self._one_at_detection_scale(image)
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * scale
        side = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])[:, None]
        jitter = np.asarray(_REFINE_CANDIDATES)
        cx = (b[:, 0:1] + b[:, 2:3]) / 2 + jitter[:, 0] * side
        cy = (b[:, 1:2] + b[:, 3:4]) / 2 + jitter[:, 1] * side
        half = side * jitter[:, 2] / 2
        cand = np.stack([cx - half + 1, cy - half + 1, cx + half, cy + half, np.ones_like(cx)],
                        axis=-1).reshape(-1, 5).astype(np.float32)
        *_, sources = self._lazy_levels(batch, hd, wd, min_face_det, levels)
        found = self._refine(sources, cand, np.zeros(len(cand), dtype=np.int64))
        return to_detections(*found, scale, h, w, 1, self.min_face)[0]

    # ------------------------------------------------------------------ cascade

    def _to_u8_batch(self, frames: Sequence[np.ndarray]):
        for f in frames:
            if f.ndim != 3 or f.shape[2] != 3 or f.dtype != np.uint8:
                raise ValueError(f"expected HxWx3 uint8 RGB frames, got {f.dtype} {f.shape}")
        h, w = frames[0].shape[:2]
        scale = self.detection_scale(h, w)
        batch = np.stack(frames)
        if scale < 1.0:
            hd, wd = max(1, round(h * scale)), max(1, round(w * scale))
            batch = resize_u8(batch, (hd, wd))
        else:
            hd, wd = h, w
        return batch, hd, wd, scale

    def _frame_state(self, image: np.ndarray):
        """(u8 batch at detection scale, its h, w, the scale, its pyramid levels made so far)
        of one frame, kept for the last frame this thread searched: a region frame that goes
        from ``refine_near`` to ``detect_near`` to full-frame detection is resized once, and
        its levels are made once (Pillow's resize costs 3-4x torch's: 16 ms for 1080p ->
        960x540 on the 2-core machine). The frame is recognised by identity, its data
        pointer and a strided sample of its pixels, so a buffer refilled in place is not
        mistaken for the frame before."""
        key = (id(image), image.__array_interface__["data"][0], image.shape,
               image[::max(1, image.shape[0] // 7), ::max(1, image.shape[1] // 11)].tobytes())
        cached = getattr(self._local, "state", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        batch, hd, wd, scale = self._to_u8_batch([image])
        state = (batch, hd, wd, scale, {})
        self._local.state = (key, state)
        return state

    def _one_at_detection_scale(self, image: np.ndarray):
        batch, hd, wd, scale, levels = self._frame_state(image)
        return batch, hd, wd, scale, max(float(_PNET_CELL), self.min_face * scale), levels

    def _lazy_levels(self, batch_u8: np.ndarray, h: int, w: int, min_face: float, levels: dict | None = None):
        """(scales, level(i, size), block(i, size, x0, y0, x1, y1), R/O-net crop sources) of
        a frame whose pyramid levels are made on first use and kept in ``levels`` ("full":
        the frame itself). Each source is (x scale, y scale, the level or a function making
        it, a function making a block of it or None, its size): a region search of one frame
        resizes only the blocks it reads."""
        levels = {} if levels is None else levels

        def full() -> np.ndarray:
            if "full" not in levels:
                levels["full"] = normalise(batch_u8)
            return levels["full"]

        def level(i: int, size: tuple[int, int]) -> np.ndarray:
            if i not in levels:
                levels[i] = normalise(resize_u8(batch_u8, size))
            return levels[i]

        def block(i: int, size: tuple[int, int], x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
            if i in levels or len(batch_u8) != 1:
                return level(i, size)[:, :, y0:y1, x0:x1]
            return normalise(resize_block(batch_u8[0], size, (x0, y0, x1, y1)))

        scales = self._pyramid_scales(h, w, min_face)
        sizes = [(int(h * s + 1), int(w * s + 1)) for s in scales]
        one = len(batch_u8) == 1            # blocks for one frame only (crops index their frame)
        sources: list = [(sz[1] / w, sz[0] / h, (lambda i=i, sz=sz: level(i, sz)),
                          (lambda *b, i=i, sz=sz: block(i, sz, *b)) if one else None, sz)
                         for i, sz in enumerate(sizes)]
        sources.reverse()   # smallest scale first
        sources.append((1.0, 1.0, full, None, (h, w)))
        return scales, level, block, sources

    def _pnet_run(self, x: np.ndarray):
        reg, prob = self._pnet.run(None, {"x": x})
        return reg, prob[:, 1]

    def _near(self, batch_u8, h: int, w: int, min_face: float, boxes: np.ndarray, reach: np.ndarray,
              levels: dict | None = None):
        scales, _, block, sources = self._lazy_levels(batch_u8, h, w, min_face, levels)
        sizes = [(int(h * s + 1), int(w * s + 1)) for s in scales]
        side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
        all_boxes = []
        for i, (s, size) in enumerate(zip(scales, sizes)):
            for k in np.flatnonzero((side * s >= _ROI_LEVELS[0]) & (side * s <= _ROI_LEVELS[1])):
                half = ROI_REGION * reach[k] * side[k] * s / 2
                x0 = max(0, int((cx[k] * s - half) // 2) * 2)
                y0 = max(0, int((cy[k] * s - half) // 2) * 2)
                x1, y1 = min(size[1], int(cx[k] * s + half) + 1), min(size[0], int(cy[k] * s + half) + 1)
                if x1 - x0 < _PNET_CELL or y1 - y0 < _PNET_CELL:
                    continue
                window = np.ascontiguousarray(block(i, size, x0, y0, x1, y1))
                reg, prob = self._pnet_run(window)
                found, _ = generate_boxes(reg, prob, s, _STAGE_THRESHOLDS[0], offset=(x0 // 2, y0 // 2))
                if len(found):
                    all_boxes.append(found)
        if not all_boxes:
            return _EMPTY
        # the same candidate can come from two overlapping regions: NMS as per level, then
        # across levels, as the full cascade does (one frame: every image index is 0)
        cand = np.concatenate(all_boxes)
        cand = cand[batched_nms(cand[:, :4], cand[:, 4], np.zeros(len(cand), np.int64), 0.5)]
        cand = cand[batched_nms(cand[:, :4], cand[:, 4], np.zeros(len(cand), np.int64), 0.7)]
        return self._refine(sources, self._regressed_squares(cand), np.zeros(len(cand), dtype=np.int64))

    @staticmethod
    def _regressed_squares(boxes: np.ndarray) -> np.ndarray:
        regw, regh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        return square(np.stack([boxes[:, 0] + boxes[:, 5] * regw, boxes[:, 1] + boxes[:, 6] * regh,
                                boxes[:, 2] + boxes[:, 7] * regw, boxes[:, 3] + boxes[:, 8] * regh,
                                boxes[:, 4]], axis=1))

    def _detect_batch(self, frames: Sequence[np.ndarray]) -> list[list[Detection]]:
        h, w = frames[0].shape[:2]
        if len(frames) == 1:        # a keyframe: perhaps searched around its tracks already
            batch, hd, wd, scale, levels = self._frame_state(frames[0])
        else:
            (batch, hd, wd, scale), levels = self._to_u8_batch(frames), {}
        min_face_det = max(float(_PNET_CELL), self.min_face * scale)
        boxes, image_inds, points = self._cascade(batch, hd, wd, min_face_det, levels)
        return to_detections(boxes, image_inds, points, scale, h, w, len(frames), self.min_face)

    def _cascade(self, batch_u8: np.ndarray, h: int, w: int, min_face: float, levels: dict):
        """``FaceDetector._cascade``: P-net over the pyramid (levels made or taken from
        ``levels``), NMS, then :meth:`_refine`."""
        scales, make_level, _, sources = self._lazy_levels(batch_u8, h, w, min_face, levels)
        n = batch_u8.shape[0]
        all_boxes, all_inds = [], []
        for i, s in enumerate(scales):
            size = (int(h * s + 1), int(w * s + 1))
            level = make_level(i, size)
            chunk = max(1, min(n, _PNET_CHUNK_PIXELS // (size[0] * size[1])))
            outs = [self._pnet_run(level[j:j + chunk]) for j in range(0, n, chunk)]
            reg = np.concatenate([o[0] for o in outs])
            prob = np.concatenate([o[1] for o in outs])
            boxes_s, inds_s = generate_boxes(reg, prob, s, _STAGE_THRESHOLDS[0])
            if len(boxes_s):
                keep = batched_nms(boxes_s[:, :4], boxes_s[:, 4], inds_s, 0.5)
                all_boxes.append(boxes_s[keep])
                all_inds.append(inds_s[keep])
        if not all_boxes:
            return _EMPTY
        boxes, image_inds = np.concatenate(all_boxes), np.concatenate(all_inds)
        keep = batched_nms(boxes[:, :4], boxes[:, 4], image_inds, 0.7)
        boxes, image_inds = boxes[keep], image_inds[keep]
        return self._refine(sources, self._regressed_squares(boxes), image_inds)

    def _refine(self, sources: list, boxes: np.ndarray, image_inds: np.ndarray):
        reg, prob = self._run(self._rnet, self._crops(sources, boxes, image_inds, 24), _RNET_ROWS)
        score = prob[:, 1]
        ok = score > _STAGE_THRESHOLDS[1]
        boxes = np.concatenate([boxes[ok, :4], score[ok, None]], axis=1)
        image_inds, reg = image_inds[ok], reg[ok]
        if len(boxes) == 0:
            return _EMPTY
        keep = batched_nms(boxes[:, :4], boxes[:, 4], image_inds, 0.7)
        boxes, image_inds, reg = boxes[keep], image_inds[keep], reg[keep]
        boxes = square(regress(boxes, reg))

        reg, marks, prob = self._run(self._onet, self._crops(sources, boxes, image_inds, 48), _ONET_ROWS)
        score = prob[:, 1]
        ok = score >= self.threshold
        if not ok.any():
            return _EMPTY
        boxes = np.concatenate([boxes[ok, :4], score[ok, None]], axis=1)
        image_inds, reg, marks = image_inds[ok], reg[ok], marks[ok]
        bw = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
        bh = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
        points = np.stack([bw * marks[:, :5] + boxes[:, 0:1] - 1, bh * marks[:, 5:10] + boxes[:, 1:2] - 1], axis=2)
        boxes = regress(boxes, reg)
        keep = batched_nms(boxes[:, :4], boxes[:, 4], image_inds, 0.7, mode="min")
        return boxes[keep], image_inds[keep], points[keep]

    def _crops(self, sources: list, boxes: np.ndarray, image_inds: np.ndarray, size: int) -> np.ndarray:
        """As ``FaceDetector._crops``; a level not made yet is, where the boxes cut from it
        cover less than half of it, resized only in the block they read (the boxes' sample
        taps and one pixel more; zeros outside the level stay zeros: block edges inside the
        level lie beyond every tap)."""
        edges = np.stack([boxes[:, 0] - 1, boxes[:, 1] - 1, boxes[:, 2], boxes[:, 3]], axis=1).astype(np.float32)
        side = np.maximum(edges[:, 2] - edges[:, 0], edges[:, 3] - edges[:, 1])
        out = np.empty((len(boxes), 3, size, size), dtype=np.float32)
        todo = np.ones(len(boxes), dtype=bool)
        for i, (sx, sy, level, block, (lh, lw)) in enumerate(sources):
            last = i == len(sources) - 1
            sel = todo if last else todo & (side * np.float32(min(sx, sy)) >= size)
            if not sel.any():
                continue
            scale = np.asarray([sx, sy, sx, sy], dtype=np.float32)
            e = edges[sel] * scale
            if callable(level) and block is not None:
                x0, y0 = max(0, int(np.floor(e[:, 0].min())) - 2), max(0, int(np.floor(e[:, 1].min())) - 2)
                x1, y1 = min(lw, int(np.ceil(e[:, 2].max())) + 2), min(lh, int(np.ceil(e[:, 3].max())) + 2)
                if x1 > x0 and y1 > y0 and (x1 - x0) * (y1 - y0) * 2 < lw * lh:
                    out[sel] = crop_resize(block(x0, y0, x1, y1), e, np.zeros(int(sel.sum()), np.int64), size,
                                           origin=(x0, y0), limits=(lw, lh))
                    todo &= ~sel
                    continue
            if callable(level):
                level = level()
                sources[i] = (sx, sy, level, block, (lh, lw))
            out[sel] = crop_resize(level, e, image_inds[sel], size)
            todo &= ~sel
        return out

    @staticmethod
    def _run(sess, x: np.ndarray, rows: int):
        """``sess`` on ``x`` in chunks of ``rows`` rows, a shorter last chunk zero-padded to
        the next power of two (few input shapes, as the torch detector)."""
        outs = []
        for i in range(0, len(x), rows):
            chunk = x[i:i + rows]
            n = len(chunk)
            padded = min(rows, 1 << (n - 1).bit_length())
            if padded != n:
                chunk = np.concatenate([chunk, np.zeros((padded - n, *chunk.shape[1:]), dtype=chunk.dtype)])
            outs.append(tuple(v[:n] for v in sess.run(None, {"x": np.ascontiguousarray(chunk)})))
        if not outs:
            n_out = len(sess.get_outputs())
            shapes = [o.shape[1] for o in sess.get_outputs()]
            return tuple(np.zeros((0, s), dtype=np.float32) for s in shapes[:n_out])
        return tuple(np.concatenate(v, axis=0) for v in zip(*outs))


__all__ = ["OnnxFaceDetector", "crop_resize", "resize_u8"]
