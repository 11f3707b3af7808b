"""The one prediction path: face crops -> probabilities, for analyze, evaluate, average and train.

``analyze`` (``classify.EmotionClassifier.predict_crops``), ``evaluate``, ``average`` and
the validation in ``train`` all call ``predict_probs`` here, so a figure that ``evaluate``
reports is measured on the code that ``analyze`` runs (tests/test_predict.py checks that
both give the same probabilities for the same crops).
"""
from __future__ import annotations

import threading
import weakref

import numpy as np
import torch

from .checkpoint import ModelConfig
from .metrics import probs_from_logits, temperature_for  # noqa: F401  (numpy only; re-exported)
from .preprocess import to_tensor, tta_views

# Arithmetic of the classifier's forward pass. bf16 (oneDNN's bfloat16 kernels; weights and
# activations rounded to 8 mantissa bits, accumulation in fp32) more than halves the
# ResNet50's time on a CPU with native bf16 (AVX512_BF16/AMX): 12.0 -> 5.8 ms per 48-px crop
# under autocast (session 11), 5.3 ms with the folded network below (session 12); one thread,
# batch 32, this project's 2-core AMD EPYC. It moves a probability by at most ~0.01 (0.011
# the largest on three clips, bench/precision_ab.py and bench/fold_ab.py; docs/benchmarks.md
# has the accuracy tables).
from .recipe import PRECISIONS  # noqa: E402  (the options, kept where settings can read them)


def bf16_runs(device: str | torch.device = "cpu") -> bool:
    """True where oneDNN runs bf16 kernels on this CPU at all: natively, or emulated on
    AVX-512 without AVX512_BF16 (oneDNN's own check is true for both)."""
    return (torch.device(device).type == "cpu" and torch.backends.mkldnn.is_available()
            and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()))


def bf16_native(device: str | torch.device = "cpu") -> bool:
    """True on a CPU with bfloat16 in hardware (AVX512_BF16 or AMX), where bf16 is the fast
    arithmetic. Emulated bf16 is the slow one: on a 2-core Ice Lake Xeon (AVX-512, no
    AVX512_BF16; session 17) the ResNet50 at 48 px, batch 128, one thread took 44.2 ms a
    crop in bf16 against 22.6 in fp32, and training with bf16 autocast ran at 12.7 img/s
    against 24.0 in fp32, where oneDNN's check said bf16 was supported."""
    if not bf16_runs(device):
        return False
    cpu = getattr(torch, "cpu", None)
    checks = [getattr(cpu, n, None) for n in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if all(callable(c) for c in checks):
        return any(bool(c()) for c in checks)
    from .threads import BF16_FLAGS, cpu_flags     # a torch without the checks: Linux's CPU flags

    return bool((cpu_flags() or frozenset()) & BF16_FLAGS)


def resolve_precision(precision: str = "auto", device: str | torch.device = "cpu") -> str:
    """'auto' -> 'bf16' on a CPU with bf16 in hardware (:func:`bf16_native`), else 'fp32'
    (CUDA included: its bf16 path is unmeasured; a CPU that only emulates bf16 too, where it
    is about twice as slow as fp32). 'bf16' asked for explicitly runs wherever oneDNN runs
    it (:func:`bf16_runs`), emulated or not; 'int8' (fer_video/int8.py) on a CPU whose torch
    has the x86 quantized engine (whether the checkpoint has int8 ranges is checked where
    it is loaded); elsewhere -> ValueError."""
    precision = (precision or "auto").lower()
    if precision not in PRECISIONS:
        raise ValueError(f"invalid precision {precision!r} (choose one of {', '.join(PRECISIONS)})")
    if precision == "auto":
        return "bf16" if bf16_native(device) else "fp32"
    if precision == "bf16" and not bf16_runs(device):
        raise ValueError("precision bf16 needs a CPU whose oneDNN has bfloat16 kernels "
                         "(AVX-512 or newer); this device has none (use fp32 or auto)")
    if precision == "int8":
        from .int8 import int8_engine

        if torch.device(device).type != "cpu":
            raise ValueError("precision int8 runs on the CPU only (use fp32 or auto with --device cuda)")
        if int8_engine() is None:
            raise ValueError("precision int8 needs torch's x86 (FBGEMM) quantized engine; "
                             "this build has none (use fp32 or auto)")
    return precision


# bf16 runs a copy of the network with every BatchNorm that follows a convolution folded into
# that convolution's weights and bias, the weights stored in bf16 once: under autocast each
# forward re-cast 25M fp32 weights (copy_: 9% of a batch's time) and ran 54 BatchNorms (11%).
# ResNet50, 48 px, batch 32, one thread, this 2-core machine: 6.6 -> 5.3 ms per crop (same
# process, 256 crops, session 12). fp32 runs the folded copy too, the same function (logits
# within 8e-6 on 4,085 validation images): on a 2-core Ice Lake Xeon (no bf16 in hardware)
# 22.8 -> 21.6 ms per crop, median of 3 (bench/arith_speed.py), 20.4 -> 16.6 best of 3 in a
# probe (session 18). The A/B switch of bench/fold_ab.py and bench/arith_speed.py.
_FOLD_BN = True
_FORMS: "weakref.WeakKeyDictionary[torch.nn.Module, dict]" = weakref.WeakKeyDictionary()
_FORMS_LOCK = threading.Lock()


def _state_key(model: torch.nn.Module) -> tuple:
    """Changes whenever a parameter or buffer is replaced or modified in place (an optimiser
    step, ``load_state_dict``): the identity and version counter of each tensor (inference
    tensors have no counter; they change only inside inference mode, which training is not)."""
    return tuple((t.data_ptr(), 0 if t.is_inference() else t._version)
                 for t in (*model.parameters(), *model.buffers()))


def _structure_copy(module: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``module``'s tree of modules whose parameter and buffer tables are its own
    but hold the same tensors: replacing a tensor in the copy leaves ``module`` as it was,
    and no tensor is copied (a deepcopy would hold a second fp32 network, +100 MB)."""
    import copy

    new = copy.copy(module)
    new._parameters = dict(module._parameters)
    new._buffers = dict(module._buffers)
    new._modules = {k: None if m is None else _structure_copy(m) for k, m in module._modules.items()}
    return new


def fold_batchnorm(model: torch.nn.Module, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """A copy of ``model`` (eval mode) in which each ``BatchNorm2d`` that directly follows a
    ``Conv2d`` (the pairs ``convK``/``bnK`` of a block, and a ``Sequential``'s consecutive
    conv, BN) is folded into the convolution and replaced by an ``Identity``:
    W' = W * s, b' = beta - mu * s (+ b * s), s = gamma / sqrt(var + eps), in fp32, the same
    function up to rounding. A BatchNorm after anything else (the seed head's) stays. Every
    tensor of the copy is made in ``dtype`` (4-d weights channels-last); ``model`` is left
    as it was."""
    from torch import nn

    net = _structure_copy(model).eval()
    fresh: set[int] = set()

    def param(t: torch.Tensor) -> nn.Parameter:
        fmt = torch.channels_last if t.dim() == 4 else torch.contiguous_format
        p = nn.Parameter(t.to(dtype, memory_format=fmt, copy=True), requires_grad=False)
        fresh.add(id(p))
        return p

    @torch.no_grad()
    def fuse(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
        s = (bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)).float()
        bias = bn.bias - bn.running_mean * s
        if conv.bias is not None:
            bias = bias + conv.bias * s
        # an fp32 copy (never the model's own tensor) scaled in place: half the time of an
        # fp16 * fp32 product, same bits
        conv.weight = param(conv.weight.detach().to(torch.float32, copy=True).mul_(s.reshape(-1, 1, 1, 1)))
        conv.bias = param(bias)

    with torch.no_grad():
        for mod in list(net.modules()):
            if isinstance(mod, nn.Sequential):
                kids = list(mod._modules.items())
                for (_, a), (name, b) in zip(kids, kids[1:]):
                    if isinstance(a, nn.Conv2d) and isinstance(b, nn.BatchNorm2d):
                        fuse(a, b)
                        mod._modules[name] = nn.Identity()
            for i in range(1, 4):
                conv, bn = getattr(mod, f"conv{i}", None), getattr(mod, f"bn{i}", None)
                if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                    fuse(conv, bn)
                    setattr(mod, f"bn{i}", nn.Identity())
        for mod in net.modules():               # what was not folded: the copy's own, in dtype
            for k, t in mod._parameters.items():
                if t is not None and id(t) not in fresh:
                    mod._parameters[k] = param(t.detach())
            for k, t in mod._buffers.items():
                if t is not None and t.is_floating_point():
                    mod._buffers[k] = t.to(dtype)
    return net


def inference_form(model: torch.nn.Module, precision: str = "fp32",
                   config: ModelConfig | None = None) -> torch.nn.Module:
    """The network :func:`predict_logits` runs for ``model``, made once and kept while the
    model's tensors do not change (rebuilt after a training step; one per model and
    precision, thread-safe):

    - fp32: the BatchNorm-folded copy (:func:`fold_batchnorm`), channels-last (the same
      function up to float rounding; ``_FOLD_BN`` off: the model itself);
    - bf16: the folded copy with bf16 weights (``_FOLD_BN`` off: the model, under autocast);
    - int8: ``int8.int8_network`` with ``config.int8``'s activation ranges
      (``int8.Int8Unavailable`` where it has none).

    Given a form, the form."""
    if getattr(model, "_fer_video_form", None):      # a form already (EmotionClassifier's)
        return model
    if precision != "int8" and not _FOLD_BN:
        return model
    key = _state_key(model)
    if precision == "int8":
        key = (key, repr(sorted(((config.int8 if config else {}) or {}).get("points", {}).items())))
    with _FORMS_LOCK:
        forms = _FORMS.setdefault(model, {})
        hit = forms.get(precision)
        if hit is not None and hit[0] == key:
            return hit[1]
        if precision == "int8":
            from .int8 import int8_network

            form = int8_network(fold_batchnorm(model, torch.float32), config)
        else:
            form = fold_batchnorm(model, torch.bfloat16 if precision == "bf16" else torch.float32)
        form._fer_video_form = precision
        forms[precision] = (key, form)
        return form


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
    ``precision``: 'fp32', 'bf16' or 'int8' (as :func:`resolve_precision` gives it)."""
    model.eval()
    net = inference_form(model, precision, config)
    form = getattr(net, "_fer_video_form", None)
    bf16_weights = form == "bf16"                           # input cast to bf16, no autocast
    autocast = precision == "bf16" and not bf16_weights
    images = resize_batch(images, config.input_size)
    out = []
    for i in range(0, len(images), batch_size):
        x = to_tensor(images[i:i + batch_size], config).to(device)
        views = tta_views(x, tta)
        if bf16_weights:
            views = [v.to(torch.bfloat16) for v in views]
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=autocast):
            out.append(np.stack([net(v.contiguous(memory_format=torch.channels_last)).float().double().cpu().numpy()
                                 for v in views]))
    if out:
        return np.concatenate(out, axis=1)
    n_views = len(tta_views(torch.zeros(1, 1, 4, 4), tta))     # no crops: only the shape is needed
    return np.zeros((n_views, 0, len(config.classes)))


def predict_probs(model: torch.nn.Module, images: np.ndarray, config: ModelConfig, device: torch.device,
                  batch_size: int = 256, tta: str = "none", temperature: float | None = None,
                  precision: str = "fp32") -> np.ndarray:
    """Softmax probabilities (N x C, float64) for uint8 face crops already at any size, at the
    checkpoint's calibrated temperature for ``precision`` (:func:`temperature_for`, or
    ``temperature``); with ``tta``, the mean of the softmax outputs over ``tta_views``."""
    t = temperature_for(config, precision) if temperature is None else temperature
    return probs_from_logits(predict_logits(model, images, config, device, batch_size, tta, precision), t)


