"""The one prediction path: face crops -> probabilities, for analyze, evaluate, average and train.

``analyze`` (``classify.EmotionClassifier.predict_crops``), ``evaluate``, ``average`` and
the validation in ``train`` all call ``predict_probs`` here, so a figure that ``evaluate``
reports is measured on the code that ``analyze`` runs (tests/test_predict.py checks that
both give the same probabilities for the same crops).
"""
from __future__ import annotations

import numpy as np
import torch

from .checkpoint import ModelConfig
from .preprocess import to_tensor, tta_views


def resize_batch(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 N,H,W -> N,size,size (bilinear, via PIL for the same kernel as inference)."""
    if images.shape[1] == size and images.shape[2] == size:
        return images
    from PIL import Image

    return np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.BILINEAR)) for im in images])



@torch.no_grad()
def predict_logits(model: torch.nn.Module, images: np.ndarray, config: ModelConfig, device: torch.device,
                   batch_size: int = 256, tta: str = "none") -> np.ndarray:
    """Logits (V x N x C float64: one slice per ``tta_views`` view) for uint8 face crops."""
    model.eval()
    images = resize_batch(images, config.input_size)
    out = []
    for i in range(0, len(images), batch_size):
        x = to_tensor(images[i:i + batch_size], config).to(device)
        views = tta_views(x, tta)
        out.append(np.stack([model(v.contiguous(memory_format=torch.channels_last)).float().double().cpu().numpy()
                             for v in views]))
    if out:
        return np.concatenate(out, axis=1)
    n_views = len(tta_views(torch.zeros(1, 1, 4, 4), tta))     # no crops: only the shape is needed
    return np.zeros((n_views, 0, len(config.classes)))


def probs_from_logits(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Mean over views (axis 0) of softmax(logits / temperature), float64, each row
    renormalised to sum to exactly 1."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    p = (e / e.sum(-1, keepdims=True)).mean(0)
    return p / p.sum(-1, keepdims=True)


def predict_probs(model: torch.nn.Module, images: np.ndarray, config: ModelConfig, device: torch.device,
                  batch_size: int = 256, tta: str = "none", temperature: float | None = None) -> np.ndarray:
    """Softmax probabilities (N x C, float64) for uint8 face crops already at any size, at the
    checkpoint's calibrated temperature (``config.temperature``, or ``temperature``); with
    ``tta``, the mean of the softmax outputs over ``tta_views``."""
    t = config.temperature if temperature is None else temperature
    return probs_from_logits(predict_logits(model, images, config, device, batch_size, tta), t)


