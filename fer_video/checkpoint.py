"""Model checkpoints: ``<name>.safetensors`` (weights) + ``<name>.json`` (config).

Like timm's ``pretrained_cfg``, the preprocessing travels with the weights: inference
reads input size, channels, mean/std and crop margin from the config and never
hard-codes them a second time. Loading uses safetensors, never pickle.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


FORMAT = "fer-video-checkpoint"
FORMAT_VERSION = 1


@dataclass
class ModelConfig:
    """What a checkpoint needs to be rebuilt and fed correctly."""
    classes: list[str]
    architecture: str = "resnet50"
    head: str = "seed"                 # "seed" (Conv-Pool-BN-Dropout-Flatten-Dense) or "linear"
    stem: str = "imagenet"             # "imagenet" (standard ResNet stem) or "small" (no stem max-pool)
    input_size: int = 48               # square input side in pixels
    channels: int = 3                  # network input channels
    grayscale: bool = True             # convert the face crop to gray (replicated to `channels`)
    mean: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    std: list[float] = field(default_factory=lambda: [0.25, 0.25, 0.25])
    crop_margin: float = 0.10          # fraction of the face box side added on every side before resizing
    interpolation: str = "bilinear"
    # Landmark alignment of face crops ({} = the box crop above; see preprocess.align_face):
    # {"method": "eyes_mouth", "eye_x", "eye_y": where the eye midpoint lands, "em": the
    # eye-to-mouth-midpoint distance, all in units of the crop side; eyes are levelled}.
    alignment: dict[str, Any] = field(default_factory=dict)
    # Softmax temperature fitted on the validation carve (calibration): p = softmax(z / T).
    temperature: float = 1.0
    # int8 activation ranges measured on the validation carve ({} = none; see fer_video/int8.py):
    # {"scheme", "images", "points": {name: [scale, zero_point]}}.
    int8: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)     # what it was trained on
    recipe: dict[str, Any] = field(default_factory=dict)   # how (epochs, lr, augmentation, ...)
    metrics: dict[str, Any] = field(default_factory=dict)  # validation/test figures
    version: str = ""                                      # fer-video version that wrote it

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "format_version": FORMAT_VERSION, **asdict(self)}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "ModelConfig":
        if obj.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} config (format={obj.get('format')!r})")
        if int(obj.get("format_version", 0)) > FORMAT_VERSION:
            raise ValueError(f"checkpoint format_version {obj['format_version']} is newer than this "
                             f"fer-video understands ({FORMAT_VERSION}); upgrade fer-video")
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in obj.items() if k in known})


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable or inconsistent."""


def checkpoint_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """Accept ``x.safetensors``, ``x.json`` or the stem ``x``; return (weights, config)."""
    p = Path(path)
    if p.is_dir():
        # A run directory: its best checkpoint.
        p = p / "best"
    if p.suffix in (".safetensors", ".json"):
        p = p.with_suffix("")
    return p.with_suffix(".safetensors"), p.with_suffix(".json")


def save_checkpoint(model: torch.nn.Module, config: ModelConfig, path: str | os.PathLike,
                    dtype: torch.dtype | None = None) -> tuple[Path, Path]:
    """Write weights and config atomically (temp file + rename), optionally cast (e.g. fp16)."""
    from safetensors.torch import save_file

    weights_path, config_path = checkpoint_paths(path)
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    state = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu().contiguous()
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        state[k] = v
    tmp_w = weights_path.with_name(weights_path.name + ".tmp")
    tmp_c = config_path.with_name(config_path.name + ".tmp")
    save_file(state, str(tmp_w), metadata={"format": FORMAT})
    tmp_c.write_text(json.dumps(config.to_json(), indent=2) + "\n")
    os.replace(tmp_w, weights_path)
    os.replace(tmp_c, config_path)
    return weights_path, config_path


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_config(path: str | os.PathLike) -> ModelConfig:
    _, config_path = checkpoint_paths(path)
    if not config_path.is_file():
        raise CheckpointError(f"checkpoint config not found: {config_path}")
    try:
        return ModelConfig.from_json(json.loads(config_path.read_text()))
    except (json.JSONDecodeError, TypeError, ValueError) as exc:
        raise CheckpointError(f"bad checkpoint config {config_path}: {exc}") from None


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu",
                    config: ModelConfig | None = None,
                    as_float32: bool = True) -> tuple[torch.nn.Module, ModelConfig]:
    """Rebuild the network from its config and load the weights (as float32, or with
    ``as_float32=False`` as the file stores them, e.g. fp16) in eval mode.

    The network is built on the ``meta`` device (shapes only) and its tensors are replaced
    by the safetensors file's (``strict=True``, ``assign=True``), so every parameter and buffer
    comes from the checkpoint and no time is spent on a throw-away random initialisation
    (about 1 s of CPU for a ResNet50).
    """
    from safetensors import SafetensorError
    import torch
    from safetensors.torch import load_file

    from .model import build_model

    weights_path, _ = checkpoint_paths(path)
    config = config or load_config(path)
    if not weights_path.is_file():
        raise CheckpointError(f"checkpoint weights not found: {weights_path}")
    try:
        state = load_file(str(weights_path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read weights {weights_path}: {' '.join(str(exc).split())}") from None
    with torch.device("meta"):
        model = build_model(asdict(config))
    if as_float32:
        state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    try:
        # assign=True: the meta tensors are replaced by the file's. Giving them storage
        # first (to_empty) ran empty_like through torch._refs, which imports sympy and
        # torch.fx (0.4 s of start-up, measured).
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        raise CheckpointError(f"weights in {weights_path} do not match its config: "
                              f"{str(exc).splitlines()[0]}") from None
    return model.to(device).eval(), config


def default_model_path() -> Path:
    """The model shipped with the package."""
    return Path(__file__).resolve().parent / "models" / "fer2013_resnet50.safetensors"
