"""The emotion classifier without torch: a checkpoint's BatchNorm-folded network on ONNX
Runtime, for a start-up that does not import torch (issue 12; ``fer_video.mtcnn_onnx`` is
the detector's half).

The network's graph is ``<stem>.graph.onnx`` beside the checkpoint (written once by
``bench/export_classifier_onnx.py``; ~100 kB, no weights): its initializers are marked as
external data and filled in at load time from the checkpoint's own safetensors file, with
each BatchNorm that follows a convolution folded into it as ``predict.fold_batchnorm``
does (:func:`folded_weights`). So the weights live in one file, and what runs is the
function fp32 runs in torch (logits within ~1e-5, tests/test_classify_onnx.py).

:class:`OnnxEmotionClassifier` has :class:`fer_video.classify.EmotionClassifier`'s surface
(``crop``, ``predict_crops``, ``predict``, ``info``, ``load``, ``classes``, ``config``,
``sha256``); tta ``none`` or ``flip``; CPU only. Precision ``fp32``, or ``int8``: the int8
network of ``fer_video.int8`` (the checkpoint's calibrated ranges) as a QDQ graph,
``<stem>.int8.graph.onnx``, whose numbers are computed at load time from the same
safetensors file and ranges (``fer_video.int8_steps``).
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .classify import EmotionClassifier, open_checkpoint
from .errors import SetupError, UsageError

ONNX_TTA = ("none", "flip")
ONNX_PRECISIONS = ("fp32", "int8")


def graph_path(weights: str | os.PathLike) -> Path:
    """``x.graph.onnx`` for the checkpoint ``x.safetensors``."""
    w = Path(weights)
    return w.with_name(w.name[:-len(".safetensors")] + ".graph.onnx" if w.name.endswith(".safetensors")
                       else w.name + ".graph.onnx")


def int8_graph_path(weights: str | os.PathLike) -> Path:
    """``x.int8.graph.onnx`` for the checkpoint ``x.safetensors``."""
    g = graph_path(weights)
    return g.with_name(g.name[:-len(".graph.onnx")] + ".int8.graph.onnx")


def _bn_of(conv_key: str, state: dict) -> str | None:
    """The BatchNorm that directly follows the convolution ``conv_key`` (``...weight``), by
    ``predict.fold_batchnorm``'s rule: ``convK``'s ``bnK`` in the same module, or the next
    entry of a ``Sequential`` (``...0`` -> ``...1``); None if there is none."""
    path = conv_key[:-len(".weight")]
    parent, _, last = path.rpartition(".")
    pre = parent + "." if parent else ""
    if last.startswith("conv") and last[4:].isdigit():
        bn = pre + "bn" + last[4:]
    elif last.isdigit():
        bn = pre + str(int(last) + 1)
    else:
        return None
    return bn if bn + ".running_var" in state else None


def folded_weights(state: dict[str, np.ndarray], eps: float = 1e-5) -> dict[str, np.ndarray]:
    """The folded network's fp32 tensors from a checkpoint's state (any float dtype):
    W' = W * s, b' = beta - mu * s (+ b * s), s = gamma / sqrt(var + eps) for each folded
    pair (s in float64, then fp32, as ``predict.fold_batchnorm``); everything else as it is,
    in fp32. The folded BatchNorms' tensors are left out."""
    out: dict[str, np.ndarray] = {}
    folded_bn: set[str] = set()
    for k, v in state.items():
        if not (k.endswith(".weight") and v.ndim == 4):
            continue
        bn = _bn_of(k, state)
        if bn is None:
            continue
        gamma, beta = state[bn + ".weight"].astype(np.float32), state[bn + ".bias"].astype(np.float32)
        mean, var = state[bn + ".running_mean"].astype(np.float32), state[bn + ".running_var"].astype(np.float32)
        s = (gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + eps)).astype(np.float32)
        bias = beta - mean * s
        conv_bias = k[:-len("weight")] + "bias"
        if conv_bias in state:
            bias = bias + state[conv_bias].astype(np.float32) * s
        out[k] = v.astype(np.float32) * s.reshape(-1, 1, 1, 1)
        out[conv_bias] = bias.astype(np.float32)
        folded_bn.add(bn)
    for k, v in state.items():
        if k in out or k.rpartition(".")[0] in folded_bn or not np.issubdtype(v.dtype, np.floating):
            continue
        out[k] = v.astype(np.float32)
    return out


class OnnxEmotionClassifier:
    """A checkpoint ready for batched inference on ONNX Runtime (CPU; fp32 or int8).

    ``model_path``: checkpoint (``x.safetensors``, ``x.json`` or stem ``x``; default: the
    packaged model) with its ``x.graph.onnx`` (int8: ``x.int8.graph.onnx``). Missing or invalid files raise ``SetupError``
    (exit code 3), an option this backend does not run ``UsageError`` (exit code 2). The
    session is made by :meth:`load`, here unless ``lazy=True`` (then on first use, or in a
    worker thread that starts it early). ``num_threads``: ONNX Runtime intra-op threads.
    """

    device = "cpu"
    backend = "onnx"

    def __init__(self, model_path: str | os.PathLike | None = None, batch_size: int = 32, lazy: bool = False,
                 tta: str = "none", num_threads: int = 1, precision: str = "fp32"):
        if int(batch_size) < 1:
            raise UsageError(f"invalid batch size {batch_size!r} (must be >= 1)")
        if tta not in ONNX_TTA:
            raise UsageError(f"tta {tta!r} runs with the torch backend only (the ONNX one has "
                             f"{', '.join(ONNX_TTA)})")
        if precision not in ONNX_PRECISIONS:
            raise UsageError(f"precision {precision!r} runs with the torch backend only (the ONNX one has "
                             f"{', '.join(ONNX_PRECISIONS)})")
        self.tta, self.batch_size, self.num_threads = tta, int(batch_size), int(num_threads)
        self.precision = precision
        weights, config_path, config = open_checkpoint(model_path)
        graph = graph_path(weights) if precision == "fp32" else int8_graph_path(weights)
        if not graph.is_file():
            raise SetupError(f"no ONNX graph for {weights.name}: {graph.name} is missing (write it with "
                             f"bench/export_classifier_onnx.py{' --int8' if precision == 'int8' else ''}, "
                             "or use --backend torch)")
        if precision == "int8" and not (config.int8 or {}).get("points"):
            raise SetupError(f"precision int8: {weights.name} has no int8 activation ranges (run "
                             f"`fer-video calibrate --model {weights}` to measure them, or use fp32)")
        self.config = config
        self.classes: list[str] = list(config.classes)
        self.weights_path, self.config_path, self.graph_path = weights, config_path, graph
        self._session = None
        self._sha256: str | None = None
        self._lock = threading.Lock()
        if not lazy:
            self.load()

    def load(self) -> "OnnxEmotionClassifier":
        """Read the weights, fold them, and make the ONNX Runtime session; once, thread-safe."""
        with self._lock:
            if self._session is not None:
                return self
            from safetensors import SafetensorError
            from safetensors.numpy import load_file

            from .checkpoint import file_sha256
            from .onnxrt import import_onnxruntime, session_options

            ort = import_onnxruntime()
            try:
                state = load_file(str(self.weights_path))
            except (SafetensorError, OSError, ValueError) as exc:
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise SetupError(f"invalid model checkpoint {self.weights_path}: {first}") from None
            tensors = folded_weights(state)
            if self.precision == "int8":
                from .int8_steps import int8_initializers, int8_steps

                try:
                    tensors = int8_initializers(tensors, self.config.int8["points"],
                                                int8_steps(state.keys(), self.config.stem))
                except (KeyError, ValueError) as exc:
                    raise SetupError(f"precision int8: {self.weights_path.name}: {exc.args[0]}") from None
            so = session_options(self.num_threads)
            try:
                # every folded tensor fills the graph initializer of its name; ONNX Runtime
                # itself refuses a name the graph lacks and a graph tensor left unfilled
                so.add_external_initializers(list(tensors), [ort.OrtValue.ortvalue_from_numpy(v) for v in tensors.values()])
                self._session = ort.InferenceSession(str(self.graph_path), so, providers=["CPUExecutionProvider"])
            except Exception as exc:           # onnxruntime's own error types, shape mismatches
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise SetupError(f"cannot run {self.graph_path.name} with {self.weights_path.name}: {first}") from None
            self._keep = tensors               # the OrtValues share these arrays' memory
            self._sha256 = file_sha256(self.weights_path)
        return self

    @property
    def sha256(self) -> str:
        if self._sha256 is None:
            self.load()
        return self._sha256

    # the same crops as the torch classifier's (``preprocess.crop_face``, from self.config)
    crop = EmotionClassifier.crop

    def to_input(self, crops: np.ndarray) -> np.ndarray:
        """uint8 crops (N x H x W gray or N x H x W x 3) -> the network's float32 NCHW input,
        as ``preprocess.to_tensor``."""
        c = self.config
        x = np.asarray(crops)
        x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)
        x = x.astype(np.float32) / np.float32(255.0)
        if x.shape[1] == 1 and c.channels == 3:
            x = np.repeat(x, 3, axis=1)
        mean = np.asarray(c.mean, dtype=np.float32).reshape(1, -1, 1, 1)
        std = np.asarray(c.std, dtype=np.float32).reshape(1, -1, 1, 1)
        return np.ascontiguousarray((x - mean) / std)

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Logits (N x C float32) of a normalised NCHW batch, in chunks of ``batch_size``, a
        shorter last chunk zero-padded to the next power of two (few input shapes: ONNX
        Runtime's memory stays flat)."""
        if self._session is None:
            self.load()
        outs = []
        for i in range(0, len(x), self.batch_size):
            chunk = x[i:i + self.batch_size]
            n = len(chunk)
            padded = min(self.batch_size, 1 << (n - 1).bit_length())
            if padded != n:
                chunk = np.concatenate([chunk, np.zeros((padded - n, *chunk.shape[1:]), np.float32)])
            outs.append(self._session.run(None, {"x": np.ascontiguousarray(chunk, dtype=np.float32)})[0][:n])
        return np.concatenate(outs) if outs else np.zeros((0, len(self.classes)), np.float32)

    def predict_crops(self, crops: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """Probabilities (N x C float64) for crops made by :meth:`crop`, as
        ``EmotionClassifier.predict_crops``: softmax of the logits at the checkpoint's
        temperature, with flip the mean over each crop and its mirror image."""
        if len(crops) == 0:
            return np.zeros((0, len(self.classes)), dtype=np.float64)
        from .metrics import probs_from_logits, temperature_for

        x = self.to_input(np.stack([np.asarray(c) for c in crops]))
        views = [x] if self.tta == "none" else [x, np.ascontiguousarray(x[..., ::-1])]
        logits = np.stack([self.logits(v) for v in views]).astype(np.float64)
        return probs_from_logits(logits, temperature_for(self.config, self.precision))

    predict = EmotionClassifier.predict        # probabilities of one frame's boxes

    def info(self) -> dict[str, Any]:
        """What the report JSON records about the model (``classify.model_info``)."""
        from .classify import model_info

        return model_info(self.config, self.weights_path, self.sha256, device=self.device, tta=self.tta,
                          precision=self.precision, backend=self.backend)


__all__ = ["ONNX_PRECISIONS", "ONNX_TTA", "OnnxEmotionClassifier", "folded_weights", "graph_path",
           "int8_graph_path"]
