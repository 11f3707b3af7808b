"""The int8 classifier's structure and numbers without torch, for ONNX Runtime (``--backend
onnx --precision int8``).

The int8 network is the one :mod:`fer_video.int8` runs in torch (``int8.run_points``): the
BatchNorm-folded ResNet50 whose input, convolution outputs (ReLU fused where it follows)
and residual sums (add + ReLU) are rounded to uint8 at the checkpoint's calibrated points
(``config.int8["points"]``: scale and zero point per tensor), with weights int8 per output
channel, symmetric, scale max|w| / 127.5 (torch's ``PerChannelMinMaxObserver``); what
follows the trunk's last rounding stays in fp32 (the seed head's max-pool, BatchNorm and
Linear). Here it is written once as a list of steps (:func:`int8_steps`), read from a
checkpoint's tensor names, and used twice:

* ``bench/export_classifier_onnx.py --int8`` writes the steps as an ONNX graph in QDQ form
  (QuantizeLinear / DequantizeLinear around each rounding point, which ONNX Runtime fuses
  into its integer kernels), every number left out as external data;
* :func:`int8_initializers` computes those numbers at load time from the checkpoint's
  weights and ranges, so the weights still live in one file (``classify_onnx``).

What differs from torch's int8, and so moves a logit in its later digits: ONNX Runtime's
requantisation rounding, biases rounded to int32 at input scale x weight scale (torch keeps
them in fp32), and activations saturating at 255 rather than at the 7-bit range's 127
(the ranges are calibrated over 7 bits, ``reduce_range``; a value past them is clipped later
here). tests/test_classify_onnx.py compares the two.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Conv:
    """A convolution: its output is rounded at ``point``; its input was rounded at
    ``source``; ``key`` is its weight's prefix in the state (``backbone.4.0.conv1``)."""
    point: str
    key: str
    source: str
    relu: bool
    stride: int


@dataclass(frozen=True)
class AddRelu:
    """A residual sum: relu(``a`` + ``b``), rounded at ``point``."""
    point: str
    a: str
    b: str


@dataclass(frozen=True)
class Head:
    """What follows the trunk, in fp32: ``kind`` seed (the head convolution's rounded output
    -> max-pool 2, ceil -> BatchNorm -> Flatten -> Linear) or linear (the trunk's rounded
    output -> global average pool -> Flatten -> Linear); ``source``: its rounded input."""
    kind: str
    source: str


@dataclass(frozen=True)
class Plan:
    """The int8 network: the input rounded at ``input``, then ``steps`` in order (with the
    ImageNet stem, ``stem_max_pool``: a 3x3 stride-2 max-pool on the rounded stem output,
    which keeps its point), then ``head``."""
    steps: tuple
    head: Head
    stem_max_pool: bool


def int8_steps(state_keys, stem: str) -> Plan:
    """The :class:`Plan` of ``int8.run_points`` for a checkpoint whose tensors are named
    ``state_keys``, with ``stem`` "small" or "imagenet"."""
    keys = set(state_keys)
    steps: list = [Conv("stem", "backbone.0", "input", True, 2)]
    x = "stem"
    for stage in range(1, 5):
        i = 0
        while f"backbone.{stage + 3}.{i}.conv1.weight" in keys:
            key, p = f"backbone.{stage + 3}.{i}", f"layer{stage}.{i}"
            stride = 2 if stage > 1 and i == 0 else 1
            idn = x
            if f"{key}.downsample.0.weight" in keys:
                steps.append(Conv(p + ".down", key + ".downsample.0", x, False, stride))
                idn = p + ".down"
            steps += [Conv(p + ".conv1", key + ".conv1", x, True, 1),
                      Conv(p + ".conv2", key + ".conv2", p + ".conv1", True, stride),
                      Conv(p + ".conv3", key + ".conv3", p + ".conv2", False, 1),
                      AddRelu(p + ".out", p + ".conv3", idn)]
            x = p + ".out"
            i += 1
        if i == 0:
            raise ValueError(f"not a ResNet checkpoint: no blocks in layer{stage}")
    if "head.conv.weight" in keys:
        steps.append(Conv("head.conv", "head.conv", x, True, 1))
        return Plan(tuple(steps), Head("seed", "head.conv"), stem == "imagenet")
    return Plan(tuple(steps), Head("linear", x), stem == "imagenet")


def int8_initializers(folded: dict[str, np.ndarray], points: dict, plan: Plan) -> dict[str, np.ndarray]:
    """Every number of the QDQ graph, by name, from the BatchNorm-folded fp32 tensors
    (``classify_onnx.folded_weights``) and the checkpoint's int8 points:

    * ``q.<point>.s`` / ``q.<point>.z``: the point's scale (float32) and zero point (uint8);
    * ``<key>.wq`` / ``.ws`` / ``.wz``: the weight in int8, its scale per output channel
      (max|w| / 127.5, in float64 then float32 as torch computes it), zeros;
    * ``<key>.bq`` / ``.bs`` / ``.bz``: the bias in int32 at scale input scale x weight scale;
    * the head's fp32 tensors under their own names (``head.bn.*``, ``head.fc.*``).

    A point the checkpoint lacks is a ``KeyError`` naming it."""
    out: dict[str, np.ndarray] = {}

    def point(name: str) -> float:
        if name not in points:
            raise KeyError(f"int8 point {name!r} missing from the checkpoint's ranges")
        s, z = points[name]
        out[f"q.{name}.s"] = np.asarray(s, dtype=np.float32)
        out[f"q.{name}.z"] = np.asarray(z, dtype=np.uint8)
        return float(np.float32(s))

    point("input")
    for st in plan.steps:
        if isinstance(st, AddRelu):
            point(st.point)
            continue
        s_in = point(st.source)
        point(st.point)
        w = folded[st.key + ".weight"].astype(np.float32)
        amax = np.abs(w).reshape(len(w), -1).max(axis=1).astype(np.float64)
        ws = np.maximum(amax / 127.5, np.finfo(np.float32).eps).astype(np.float32)
        out[st.key + ".wq"] = np.clip(np.round(w / ws.reshape(-1, 1, 1, 1)), -128, 127).astype(np.int8)
        out[st.key + ".ws"] = ws
        out[st.key + ".wz"] = np.zeros(len(w), dtype=np.int8)
        b = folded.get(st.key + ".bias", np.zeros(len(w), np.float32)).astype(np.float32)
        bs = (np.float32(s_in) * ws).astype(np.float32)
        out[st.key + ".bq"] = np.clip(np.round(b.astype(np.float64) / bs), -2**31, 2**31 - 1).astype(np.int32)
        out[st.key + ".bs"] = bs
        out[st.key + ".bz"] = np.zeros(len(w), dtype=np.int32)
    names = ("head.bn.weight", "head.bn.bias", "head.bn.running_mean", "head.bn.running_var") \
        if plan.head.kind == "seed" else ()
    for k in names + ("head.fc.weight", "head.fc.bias"):
        out[k] = folded[k].astype(np.float32)
    return out


__all__ = ["AddRelu", "Conv", "Head", "Plan", "int8_initializers", "int8_steps"]
