"""The classifier in int8: weights per output channel, activations per tensor, on x86 CPUs.

Where a CPU has no bfloat16 in hardware, fp32 is the fastest float arithmetic, and the
ResNet50 costs ~22 ms a 48-px crop there (2-core Ice Lake Xeon, one thread, batch 32,
median of 3; session 18). In int8 (FBGEMM's x86 kernels, VNNI where the CPU has it) the same
network takes ~5.8 ms (``bench/arith_speed.py``). On the shipped model's validation images
that the ranges were not measured on, its top class was fp32's on 98.2% of 3,061, accuracy
0.7092 against 0.7086; docs/benchmarks.md has every test split, where accuracy held and
CK+'s calibration error did not (0.055 against 0.045), so ``auto`` does not take int8.

What int8 rounds, and where (the x86 recipe of ``torch.ao.quantization``'s
``get_default_qconfig("x86")``, written out so that building the network costs no graph
tracing: ~0.6 s against ~1.8 s for ``prepare_fx`` + ``convert_fx``, most of it FBGEMM's
weight packing):

- every convolution of the trunk and the seed head's convolution, after each BatchNorm is
  folded into it (``predict.fold_batchnorm``), with a following ReLU fused: weights qint8,
  symmetric, one scale per output channel, from the weights themselves at load time;
- the input, each convolution's output and each residual sum (add + ReLU): quint8, one
  scale and zero point per tensor, over 7 bits (``reduce_range``, for CPUs without VNNI).
  These activation ranges are *calibrated*: measured once with torch's ``HistogramObserver``
  on the checkpoint's validation carve (``fer-video calibrate``; ``train`` does it at the
  end) and stored in the checkpoint's JSON (``ModelConfig.int8``) with a temperature fitted
  on int8's own logits (``predict.temperature_for``);
- what follows the trunk's last rounding stays in fp32: the seed head's max-pool output is
  dequantised before its BatchNorm and Linear (the linear head: before its pooling).

A checkpoint without ``int8`` ranges cannot run in int8 (:class:`Int8Unavailable`).
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn

from .checkpoint import ModelConfig

# torch 2.14 warns once per process that quantized tensors are deprecated (pytorch/pytorch
# #184982): with the pinned torch they work; a torch without them fails int8_network's
# build, which names the precision to use instead. The warning is not the user's to act on.
warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor, torch\.quantize_per_channel",
                        category=UserWarning)

SCHEME = "x86: weights qint8 per-channel symmetric; activations quint8 per-tensor, histogram, reduce_range"
ENGINES = ("x86", "fbgemm")


class Int8Unavailable(ValueError):
    """int8 cannot run here: no x86 quantized engine, or the checkpoint has no int8 ranges."""


def int8_engine() -> str | None:
    """The quantized engine int8 runs on here ('x86' or 'fbgemm'), or None."""
    engines = set(torch.backends.quantized.supported_engines)
    return next((e for e in ENGINES if e in engines), None)


def require_ranges(config: ModelConfig, weights) -> None:
    """:class:`Int8Unavailable` (one line) when the checkpoint ``weights`` has no int8 ranges."""
    if not (config.int8 or {}).get("points"):
        raise Int8Unavailable(f"precision int8: {weights} has no int8 activation ranges (run "
                              f"`fer-video calibrate --model {weights}` to measure them, or use fp32)")


def run_points(net: nn.Module, x: torch.Tensor, ops) -> torch.Tensor:
    """The forward pass of a BatchNorm-folded ``EmotionNet`` (``predict.fold_batchnorm``),
    naming each point where int8 rounds: ``ops.quant(name, x)``, ``ops.conv(name, conv, x,
    relu)``, ``ops.add_relu(name, a, b)`` and ``ops.dequant(x)``. With float ops it is the
    network's own forward (tests/test_int8.py checks it); calibration observes at the names,
    the int8 network rounds there."""
    from .model import SeedHead

    b = net.backbone
    x = ops.quant("input", x)
    x = ops.conv("stem", b[0], x, True)
    x = b[3](x)                                     # the stem's max-pool, or an Identity
    for stage in range(4, 8):
        for i, blk in enumerate(b[stage]):
            p = f"layer{stage - 3}.{i}"
            idn = x if blk.downsample is None else ops.conv(p + ".down", blk.downsample[0], x, False)
            out = ops.conv(p + ".conv1", blk.conv1, x, True)
            out = ops.conv(p + ".conv2", blk.conv2, out, True)
            out = ops.conv(p + ".conv3", blk.conv3, out, False)
            x = ops.add_relu(p + ".out", out, idn)
    head = net.head
    if isinstance(head, SeedHead):
        x = head.pool(ops.conv("head.conv", head.conv, x, True))
        return head.fc(torch.flatten(head.bn(ops.dequant(x)), 1))   # dropout: none in eval
    return head(ops.dequant(x))


class _FloatOps:
    """The float forward; with ``observers``, each named activation is observed."""

    def __init__(self, observers: dict | None = None):
        self.observers = observers

    def _see(self, name: str, x: torch.Tensor) -> torch.Tensor:
        if self.observers is not None:
            if name not in self.observers:
                from torch.ao.quantization.observer import HistogramObserver

                self.observers[name] = HistogramObserver(quant_min=0, quant_max=127)   # reduce_range
            self.observers[name](x.detach().float())
        return x

    def quant(self, name, x):
        return self._see(name, x)

    def conv(self, name, conv, x, relu):
        y = conv(x)
        return self._see(name, torch.relu(y) if relu else y)

    def add_relu(self, name, a, b):
        return self._see(name, torch.relu(a + b))

    def dequant(self, x):
        return x


@torch.no_grad()
def calibrate_int8(folded: nn.Module, images: np.ndarray, config: ModelConfig, batch_size: int = 64) -> dict:
    """The int8 activation ranges of a BatchNorm-folded fp32 network (``predict.fold_batchnorm``)
    measured on ``images`` (uint8 faces in the model's frame and size):
    ``{"scheme", "images", "points": {name: [scale, zero_point]}}``, to be stored as
    ``config.int8``."""
    from .preprocess import to_tensor

    net = folded.eval()
    observers: dict = {}
    ops = _FloatOps(observers)
    for i in range(0, len(images), batch_size):
        x = to_tensor(images[i:i + batch_size], config).contiguous(memory_format=torch.channels_last)
        run_points(net, x, ops)
    points = {}
    for name, obs in observers.items():
        scale, zp = obs.calculate_qparams()
        points[name] = [float(scale.reshape(-1)[0]), int(zp.reshape(-1)[0])]
    return {"scheme": SCHEME, "images": int(len(images)), "points": points}


class QConv(nn.Module):
    """One int8 convolution (FBGEMM's packed weights, bias in fp32), its ReLU fused; quint8
    in, quint8 out at ``scale``/``zero_point``."""

    def __init__(self, conv: nn.Conv2d, relu: bool, scale: float, zero_point: int):
        super().__init__()
        w = conv.weight.detach().float().contiguous()
        # torch's PerChannelMinMaxObserver, qint8 symmetric: scale = max|w| / 127.5, zero point 0
        amax = w.abs().amax(dim=(1, 2, 3)).double()
        s = torch.clamp(amax / 127.5, min=torch.finfo(torch.float32).eps)
        qw = torch.quantize_per_channel(w, s, torch.zeros_like(s, dtype=torch.long), 0, torch.qint8)
        bias = conv.bias.detach().float() if conv.bias is not None else torch.zeros(conv.out_channels)
        self.packed = torch.ops.quantized.conv2d_prepack(qw, bias, list(conv.stride), list(conv.padding),
                                                         list(conv.dilation), conv.groups)
        self._op = torch.ops.quantized.conv2d_relu if relu else torch.ops.quantized.conv2d
        self.scale, self.zero_point = float(scale), int(zero_point)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._op(x, self.packed, self.scale, self.zero_point)


class _Int8Ops:
    def __init__(self, points: dict):
        self.points = points

    def quant(self, name, x):
        s, z = self.points[name]
        return torch.quantize_per_tensor(x.float(), s, z, torch.quint8)

    def conv(self, name, conv, x, relu):
        return conv(x)                      # the int8 module that replaced it (ReLU fused)

    def add_relu(self, name, a, b):
        s, z = self.points[name]
        return torch.ops.quantized.add_relu(a, b, s, z)

    def dequant(self, x):
        return x.dequantize()


class Int8Net(nn.Module):
    """The int8 network: a folded copy of the model whose convolutions are int8 modules,
    run by :func:`run_points`. Takes and returns fp32 (logits)."""

    def __init__(self, folded: nn.Module, points: dict):
        super().__init__()
        self.net = folded
        self._ops = _Int8Ops(points)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return run_points(self.net, x, self._ops)


def int8_network(folded: nn.Module, config: ModelConfig) -> Int8Net:
    """A BatchNorm-folded fp32 network (``predict.fold_batchnorm``: a copy, made for this) as
    an :class:`Int8Net` with ``config.int8``'s activation ranges; its convolutions are
    replaced in place. :class:`Int8Unavailable` where no x86 engine runs or the checkpoint
    has no ranges."""
    engine = int8_engine()
    if engine is None:
        raise Int8Unavailable("precision int8 needs torch's x86 (FBGEMM) quantized engine; "
                              "this build has none (use fp32 or auto)")
    points = (config.int8 or {}).get("points") if isinstance(config.int8, dict) else None
    if not points:
        raise Int8Unavailable("this checkpoint has no int8 activation ranges; "
                              "run `fer-video calibrate --model MODEL` to measure them (or use fp32)")
    torch.backends.quantized.engine = engine
    from .model import SeedHead

    net = folded.eval()
    targets = []
    b = net.backbone
    targets.append(("stem", b, "0", True))
    required = ["input"]
    for stage in range(4, 8):
        for i, blk in enumerate(b[stage]):
            p = f"layer{stage - 3}.{i}"
            required.append(p + ".out")
            if blk.downsample is not None:
                targets.append((p + ".down", blk.downsample, "0", False))
            targets += [(p + ".conv1", blk, "conv1", True), (p + ".conv2", blk, "conv2", True),
                        (p + ".conv3", blk, "conv3", False)]
    if isinstance(net.head, SeedHead):
        targets.append(("head.conv", net.head, "conv", True))
    missing = [n for n in required + [t[0] for t in targets] if n not in points]
    if missing:
        raise Int8Unavailable(f"this checkpoint's int8 ranges lack {len(missing)} points (first: {missing[0]}); "
                              "run `fer-video calibrate --model MODEL` again")
    try:
        for name, parent, attr, relu in targets:
            conv = parent._modules[attr]
            parent._modules[attr] = QConv(conv, relu, *points[name])
    except (RuntimeError, AttributeError, NotImplementedError) as exc:
        # a torch whose quantized tensors or kernels are gone (deprecated in 2.14)
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise Int8Unavailable(f"this torch cannot build the int8 network ({first}); use fp32 or auto") from None
    return Int8Net(net, points).eval()
