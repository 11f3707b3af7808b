"""Emotion classification of face crops with a fer-video checkpoint.

Preprocessing is *only* ``preprocess.crop_face`` + ``preprocess.to_tensor``, driven by the
checkpoint's config, so inference matches training. Output rows are float64 softmax
probabilities of the logits divided by the checkpoint's calibrated temperature
(``ModelConfig.temperature``), computed at ``precision`` (``predict.resolve_precision``),
in the checkpoint's class order, renormalised to sum to exactly 1; with
test-time augmentation (``tta``), the mean of those over ``preprocess.tta_views``.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .errors import SetupError, UsageError


def resolve_device(device: str = "auto") -> str:
    """'auto' -> 'cuda' when a CUDA device is usable, else 'cpu'. 'cuda' without one -> UsageError."""
    import torch

    device = (device or "auto").lower()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return "cpu"
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise UsageError("--device cuda was requested but no CUDA device is available "
                             "(use --device cpu or auto)")
        return device
    raise UsageError(f"invalid device {device!r} (choose auto, cpu or cuda)")


def softmax64(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64, renormalised so each row sums to 1: the one softmax of
    the prediction path (``predict.probs_from_logits``, one view, temperature 1)."""
    from .predict import probs_from_logits

    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 2:
        z = z.reshape(len(z), -1)
    return probs_from_logits(z[None], 1.0)


def _load_network(weights: Path, config, device: str, as_float32: bool = True):
    """The checkpoint's network, or a one-line ``SetupError`` (exit code 3)."""
    from .checkpoint import CheckpointError, load_checkpoint

    try:
        model, _ = load_checkpoint(weights, device, config=config, as_float32=as_float32)
    except CheckpointError as exc:
        raise SetupError(f"invalid model checkpoint: {exc}") from None
    return model


def open_checkpoint(model_path: str | os.PathLike | None):
    """(weights path, config path, ``ModelConfig``) of a checkpoint (``x.safetensors``,
    ``x.json`` or stem ``x``; None: the packaged model), its files checked: a missing file
    or an invalid config is a one-line ``SetupError`` (exit code 3)."""
    from .checkpoint import CheckpointError, checkpoint_paths, default_model_path, load_config

    path = Path(model_path).expanduser() if model_path else default_model_path()
    weights, config_path = checkpoint_paths(path)
    if not weights.is_file():
        hint = (" (the default model is not installed yet; pass --model PATH)"
                if path.resolve() == default_model_path().resolve() else "")
        raise SetupError(f"model checkpoint not found: {weights}{hint}")
    if not config_path.is_file():
        raise SetupError(f"model config not found: {config_path} (it must lie next to {weights.name})")
    try:
        config = load_config(weights)
    except CheckpointError as exc:
        raise SetupError(f"invalid model checkpoint: {exc}") from None
    if not config.classes:
        raise SetupError(f"invalid model checkpoint {weights}: its config lists no classes")
    return weights, config_path, config


def model_info(config, weights_path: Path, sha256: str, *, device: str, tta: str, precision: str,
               backend: str) -> dict[str, Any]:
    """The report JSON's ``model``: the checkpoint's name, path, hash, classes, architecture
    and preprocessing, and how it ran (device, tta, precision, backend; ``temperature``: the
    one its probabilities were computed at, ``metrics.temperature_for`` the precision)."""
    from .metrics import temperature_for

    c = config
    return {
        "name": weights_path.stem,
        "path": str(weights_path),
        "sha256": sha256,
        "classes": list(c.classes),
        "architecture": c.architecture,
        "head": c.head,
        "stem": c.stem,
        "input_size": c.input_size,
        "grayscale": c.grayscale,
        "device": device,
        "tta": tta,
        "precision": precision,
        "backend": backend,
        "alignment": c.alignment,
        "temperature": temperature_for(c, precision),
        "version": c.version,
        "data": c.data,
        "metrics": c.metrics,
    }


class EmotionClassifier:
    """A checkpoint ready for batched inference.

    ``model_path``: checkpoint (``x.safetensors``, ``x.json`` or stem ``x``); default: the
    packaged model. A missing or invalid checkpoint raises ``SetupError`` (exit code 3).

    The files and the config are checked at once; the network itself is built and its
    weights read by :meth:`load` — called here unless ``lazy=True``, in which case it runs
    on first use (``predict*``, ``model``, ``sha256``, ``info``) or when the caller starts
    it early, e.g. in a worker thread so that it overlaps decoding and face detection.
    """

    backend = "torch"

    def __init__(self, model_path: str | os.PathLike | None = None, device: str = "auto",
                 batch_size: int = 32, lazy: bool = False, tta: str = "none", precision: str = "auto"):
        from .recipe import TTA_MODES

        if int(batch_size) < 1:
            raise UsageError(f"invalid batch size {batch_size!r} (must be >= 1)")
        if tta not in TTA_MODES:
            raise UsageError(f"invalid tta {tta!r} (choose one of {', '.join(TTA_MODES)})")
        self.tta = tta
        self.device = resolve_device(device)
        from .predict import resolve_precision

        try:
            self.precision = resolve_precision(precision, self.device)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        self.batch_size = int(batch_size)
        weights, config_path, config = open_checkpoint(model_path)
        if self.precision == "int8":
            from .int8 import Int8Unavailable, require_ranges

            try:
                require_ranges(config, weights)
            except Int8Unavailable as exc:
                raise UsageError(str(exc)) from None
        self.config = config
        self.classes: list[str] = list(config.classes)
        self.weights_path = weights
        self.config_path = config_path
        self._model = None
        self._sha256: str | None = None
        self._lock = threading.Lock()
        if not lazy:
            self.load()

    def load(self) -> "EmotionClassifier":
        """Build the network and read the weights, and make the network that predictions run
        (``predict.inference_form``: BatchNorm folded; in int8, ``fer_video/int8.py``); once,
        thread-safe.
        SetupError if invalid."""
        with self._lock:
            if self._model is not None:
                return self
            from .checkpoint import file_sha256

            weights = self.weights_path
            try:
                # The file's fp16 tensors go straight into the folded network (fp32, bf16,
                # or fp32 on the way to int8): the same bits as by way of an fp32 copy,
                # which holds every fp16 value exactly, and 50 MB less at the peak. Only
                # fp32 without folding (bench/fold_ab.py's switch) runs the loaded network.
                from . import predict

                model = _load_network(weights, self.config, self.device,
                                      as_float32=self.precision == "fp32" and not predict._FOLD_BN)
            except SetupError:
                raise
            except (ValueError, KeyError, TypeError, RuntimeError, OSError) as exc:
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise SetupError(f"invalid model checkpoint {weights}: {first}") from None
            self._sha256 = file_sha256(weights)
            # keep only the network predictions run (BatchNorm folded; bf16: 50 MB, int8:
            # 25 MB of weights) and let the loaded one go: the 1080p crowd's peak RSS in
            # bf16 1.16 -> 1.05 GB
            from .predict import inference_form

            try:
                model = inference_form(model, self.precision, self.config)
            except ValueError as exc:    # int8.Int8Unavailable: e.g. a torch without its kernels
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise SetupError(f"precision {self.precision}: {first}") from None
            self._model = model
        return self

    @property
    def model(self):
        """The torch network in eval mode (loaded on first use)."""
        if self._model is None:
            self.load()
        return self._model

    @property
    def sha256(self) -> str:
        if self._sha256 is None:
            self.load()
        return self._sha256

    # -- preprocessing -------------------------------------------------------------------
    def crop(self, image: np.ndarray, box: Sequence[float],
             landmarks: Sequence[Sequence[float]] | None = None) -> np.ndarray:
        """One face as the model wants it (uint8), via ``preprocess.crop_face``: aligned on
        the 5 landmarks when the checkpoint's config asks for alignment and they are given."""
        from .preprocess import crop_face

        return crop_face(image, box, self.config, landmarks)

    # -- inference -----------------------------------------------------------------------
    def predict_crops(self, crops: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """Probabilities (N x C float64) for crops made by :meth:`crop`, in batches, through
        the one prediction path (``predict.predict_probs``) that evaluate also uses."""
        from .predict import predict_probs

        n = len(crops)
        if n == 0:
            return np.zeros((0, len(self.classes)), dtype=np.float64)
        import torch

        with torch.inference_mode():
            return predict_probs(self.model, np.stack([np.asarray(c) for c in crops]), self.config, self.device,
                                 batch_size=self.batch_size, tta=self.tta, precision=self.precision)

    def predict(self, image: np.ndarray, boxes: Iterable[Sequence[float]]) -> np.ndarray:
        """Probabilities (N x C) for the N face boxes of one RGB frame."""
        return self.predict_crops([self.crop(image, b) for b in boxes])

    def info(self) -> dict[str, Any]:
        """What the report JSON records about the model (``temperature``: the one its
        probabilities were computed at, ``predict.temperature_for`` its precision)."""
        return model_info(self.config, self.weights_path, self.sha256, device=self.device, tta=self.tta,
                          precision=self.precision, backend=self.backend)
