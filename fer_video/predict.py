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

# Arithmetic of the classifier's forward pass. bf16 (oneDNN's bfloat16 kernels under
# torch.autocast; weights and activations rounded to 8 mantissa bits, accumulation in fp32)
# halves the ResNet50's time on a CPU with native bf16 (AVX512_BF16/AMX): 12.0 -> 5.8 ms per
# 48-px crop, one thread, batch 32, on this project's 2-core AMD EPYC (session 11). It moves
# a probability by at most ~0.01 (0.0112 the largest of 247 face rows on three clips,
# bench/precision_ab.py; docs/benchmarks.md has the accuracy table both ways).
from .recipe import PRECISIONS  # noqa: E402  (the options, kept where settings can read them)


def resolve_precision(precision: str = "auto", device: str | torch.device = "cpu") -> str:
    """'auto' -> 'bf16' on a CPU whose oneDNN has native bf16 kernels, else 'fp32' (CUDA
    included: its bf16 path is unmeasured). 'bf16' where it is not native -> ValueError."""
    precision = (precision or "auto").lower()
    if precision not in PRECISIONS:
        raise ValueError(f"invalid precision {precision!r} (choose one of {', '.join(PRECISIONS)})")
    on_cpu = torch.device(device).type == "cpu"
    native = on_cpu and torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    if precision == "auto":
        return "bf16" if native else "fp32"
    if precision == "bf16" and not native:
        raise ValueError("precision bf16 needs a CPU with native bfloat16 (AVX512_BF16 or AMX); "
                         "this device has none (use fp32 or auto)")
    return precision


def resize_batch(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 N,H,W -> N,size,size (bilinear, via PIL for the same kernel as inference)."""
    if images.shape[1] == size and images.shape[2] == size:
        return images
    from PIL import Image

    return np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.BILINEAR)) for im in images])



@torch.no_grad()
def predict_logits(model: torch.nn.Module, images: np.ndarray, config: ModelConfig, device: torch.device,
                   batch_size: int = 256, tta: str = "none", precision: str = "fp32") -> np.ndarray:
    """Logits (V x N x C float64: one slice per ``tta_views`` view) for uint8 face crops;
    ``precision``: 'fp32' or 'bf16' (as :func:`resolve_precision` gives it)."""
    model.eval()
    bf16 = precision == "bf16"
    images = resize_batch(images, config.input_size)
    out = []
    for i in range(0, len(images), batch_size):
        x = to_tensor(images[i:i + batch_size], config).to(device)
        views = tta_views(x, tta)
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
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
                  batch_size: int = 256, tta: str = "none", temperature: float | None = None,
                  precision: str = "fp32") -> np.ndarray:
    """Softmax probabilities (N x C, float64) for uint8 face crops already at any size, at the
    checkpoint's calibrated temperature (``config.temperature``, or ``temperature``); with
    ``tta``, the mean of the softmax outputs over ``tta_views``."""
    t = config.temperature if temperature is None else temperature
    return probs_from_logits(predict_logits(model, images, config, device, batch_size, tta, precision), t)


