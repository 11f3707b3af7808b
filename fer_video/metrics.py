"""Scores of probabilities against labels: confusion matrix, accuracy, macro-F1, per-class
precision/recall/F1, expected calibration error, cross-entropy, and the temperature fit.
Every number these produce is defined in docs/training.md."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .checkpoint import ModelConfig


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n: int) -> np.ndarray:
    cm = np.zeros((n, n), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def metrics_from_confusion(cm: np.ndarray, classes: list[str]) -> dict:
    """accuracy, macro-F1 (over classes present in y_true), per-class precision/recall/F1/support."""
    tp = np.diag(cm).astype(float)
    support = cm.sum(1).astype(float)
    predicted = cm.sum(0).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    present = support > 0
    total = cm.sum()
    return {
        "accuracy": float(tp.sum() / total) if total else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "n": int(total),
        "per_class": {c: {"precision": float(precision[i]), "recall": float(recall[i]),
                          "f1": float(f1[i]), "support": int(support[i])} for i, c in enumerate(classes)},
    }


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """ECE: the top-class confidence is binned into ``bins`` equal-width bins over [0, 1];
    ECE = sum over bins of (share of images in the bin) x |accuracy - mean confidence| in it."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    if not len(labels):
        return 0.0
    conf = probs.max(1)
    correct = (probs.argmax(1) == labels).astype(np.float64)
    which = np.minimum((conf * bins).astype(int), bins - 1)
    ece = 0.0
    for b in range(bins):
        m = which == b
        if m.any():
            ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(ece)


def soft_nll(probs: np.ndarray, targets: np.ndarray) -> float:
    """Mean cross-entropy of probabilities against target distributions (= NLL for one-hot)."""
    return float(-(np.asarray(targets) * np.log(np.clip(probs, 1e-12, None))).sum(1).mean())


def fit_temperature(logits: np.ndarray, targets: np.ndarray) -> float:
    """The softmax temperature T > 0 minimising the mean cross-entropy of softmax(logits / T)
    against ``targets`` (N x C distributions): golden-section search on log T in [1/20, 20]."""
    z = np.asarray(logits, dtype=np.float64)
    t = np.asarray(targets, dtype=np.float64)

    def loss(log_t: float) -> float:
        a = z / math.exp(log_t)
        a = a - a.max(1, keepdims=True)
        logp = a - np.log(np.exp(a).sum(1, keepdims=True))
        return float(-(t * logp).sum(1).mean())

    lo, hi = math.log(0.05), math.log(20.0)
    g = (math.sqrt(5) - 1) / 2
    c, d = hi - g * (hi - lo), lo + g * (hi - lo)
    fc, fd = loss(c), loss(d)
    for _ in range(80):
        if fc < fd:
            hi, d, fd = d, c, fc
            c = hi - g * (hi - lo)
            fc = loss(c)
        else:
            lo, c, fc = c, d, fd
            d = lo + g * (hi - lo)
            fd = loss(d)
    return float(math.exp((lo + hi) / 2))


def temperature_for(config: ModelConfig, precision: str = "fp32") -> float:
    """The calibrated temperature of ``precision``'s logits: ``config.int8["temperature"]``
    for int8 (fitted on int8's own logits: rounding makes them a little less sharp, and the
    fp32 temperature then over-corrects), else ``config.temperature``."""
    if precision == "int8":
        t = (config.int8 or {}).get("temperature")
        if t:
            return float(t)
    return float(config.temperature)


def probs_from_logits(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Mean over views (axis 0) of softmax(logits / temperature), float64, each row
    renormalised to sum to exactly 1."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    p = (e / e.sum(-1, keepdims=True)).mean(0)
    return p / p.sum(-1, keepdims=True)
