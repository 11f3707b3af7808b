"""One face frame from training data to video: where the face sits in a model's input.

A model's config names its frame (``ModelConfig.alignment``: eye midpoint and eye-to-mouth
distance in units of the crop side, eyes level). At inference ``preprocess.align_face``
warps each detected face into it from MTCNN's 5 landmarks. Training and evaluation images
come framed by their dataset's own cropper; ``prepare_images`` warps a whole dataset from
its frame (``FaceDataset.frame``: known for FER2013, otherwise measured here by the same
detector on a sample of its images) into the model's, with the same ``align_face``, so the
same resampling code makes both ends. Without ``alignment`` images are only resized (the
box crop of older checkpoints).
"""
from __future__ import annotations

import numpy as np

from .checkpoint import ModelConfig

MEASURE_IMAGES = 256      # images per dataset the detector measures (deterministic sample)
MEASURE_SIDE = 144        # images are upsampled to this side first: MTCNN's window is 12 px


def measure_frame(images: np.ndarray, n: int = MEASURE_IMAGES, seed: int = 0) -> dict:
    """The mean face frame of uint8 gray images (N x H x W) as the project's detector sees
    it: eye midpoint (``eye_x``, ``eye_y``), eye-to-mouth-midpoint distance ``em`` (units of
    the image side), the number of faces found (``faces``) and of images tried. Raises
    ValueError when the detector finds no face in the sample."""
    from PIL import Image

    from .detect import FaceDetector
    from .preprocess import eyes_mouth

    idx = np.sort(np.random.default_rng(seed).permutation(len(images))[:n])
    det = FaceDetector(min_face=MEASURE_SIDE // 5, threshold=0.8, num_threads=None)
    side = MEASURE_SIDE
    batch = [np.asarray(Image.fromarray(images[i]).convert("RGB").resize((side, side), Image.BICUBIC)) for i in idx]
    eyes, ems = [], []
    for dets in det.detect(batch):
        if dets and dets[0].landmarks is not None:
            eye, mouth, _ = eyes_mouth(dets[0].landmarks)
            eyes.append(eye / side)
            ems.append(float(np.linalg.norm(mouth - eye)) / side)
    if not eyes:
        raise ValueError("the face detector found no face in the sample")
    e = np.mean(eyes, axis=0)
    return {"method": "eyes_mouth", "eye_x": round(float(e[0]), 4), "eye_y": round(float(e[1]), 4),
            "em": round(float(np.median(ems)), 4), "faces": len(eyes), "tried": len(idx)}


def source_landmarks(frame: dict, side: int) -> np.ndarray:
    """Five landmarks (pixels of a ``side`` x ``side`` image) that have exactly ``frame``'s
    eye midpoint, eye-to-mouth distance and zero roll: what ``align_face`` needs to warp a
    whole dataset from its frame."""
    ex, ey, em = frame["eye_x"] * side, frame["eye_y"] * side, frame["em"] * side
    d = em / 2
    return np.array([[ex - d, ey], [ex + d, ey], [ex, ey + em / 2], [ex - d, ey + em], [ex + d, ey + em]])


def same_frame(a: dict | None, b: dict | None, tol: float = 0.01) -> bool:
    if not a or not b:
        return False
    return all(abs(float(a[k]) - float(b[k])) <= tol for k in ("eye_x", "eye_y", "em"))


def prepare_images(data, config: ModelConfig) -> np.ndarray:
    """A dataset's images as the model takes them: uint8 N x S x S in the model's face frame
    (``config.alignment``) and input size. Measures the dataset's frame when unknown (and
    records it on ``data.frame``)."""
    from .preprocess import align_face
    from .predict import resize_batch

    images = data.images
    if not config.alignment:
        return resize_batch(images, config.input_size)
    if data.frame is None:
        data.frame = measure_frame(images)
    if same_frame(data.frame, config.alignment):
        return resize_batch(images, config.input_size)
    pts = source_landmarks(data.frame, images.shape[1])
    out = np.empty((len(images), config.input_size, config.input_size), dtype=np.uint8)
    for i, im in enumerate(images):
        out[i] = align_face(im, pts, config)
    return out
