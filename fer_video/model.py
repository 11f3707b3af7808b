"""The emotion classifier: a torchvision ResNet50 backbone with one of two heads.

``seed`` is the head of the founding note (Conv2D -> MaxPooling2D -> BatchNormalization
-> Dropout -> Flatten -> Dense -> softmax); ``linear`` is the usual global-average-pool
+ linear head. Both return logits: softmax is applied by the caller (inference) or
inside the cross-entropy loss (training).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

ARCHITECTURES = ("resnet50",)
HEADS = ("seed", "linear")
STEMS = ("imagenet", "small")


class SeedHead(nn.Module):
    """Conv2d(2048->C, 3x3) + ReLU -> MaxPool2d(2, ceil) -> BatchNorm2d -> Dropout -> Flatten -> Linear.

    The flattened size depends on the backbone's output grid, so it is computed from
    ``feature_hw`` (the grid the backbone produces at the configured input size).
    """

    def __init__(self, in_channels: int, num_classes: int, feature_hw: tuple[int, int],
                 conv_channels: int = 256, dropout: float = 0.5):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, conv_channels, kernel_size=3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(kernel_size=2, ceil_mode=True)
        self.bn = nn.BatchNorm2d(conv_channels)
        self.dropout = nn.Dropout(dropout)
        h, w = ((feature_hw[0] + 1) // 2, (feature_hw[1] + 1) // 2)
        self.fc = nn.Linear(conv_channels * h * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.pool(self.relu(self.conv(x))))
        return self.fc(torch.flatten(self.dropout(x), 1))


class LinearHead(nn.Module):
    """Global average pool -> Dropout -> Linear."""

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.3):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(torch.flatten(self.pool(x), 1)))


class EmotionNet(nn.Module):
    """ResNet50 trunk (everything up to layer4) + an emotion head."""

    def __init__(self, num_classes: int, img_size: int = 48, head: str = "seed",
                 stem: str = "imagenet", dropout: float | None = None):
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"unknown head {head!r}; choose one of {HEADS}")
        if stem not in STEMS:
            raise ValueError(f"unknown stem {stem!r}; choose one of {STEMS}")
        from torchvision.models import resnet50

        trunk = resnet50(weights=None)
        if stem == "small":
            # Small faces (48x48): drop the stem max-pool so layer4 sees a 3x3 grid, not 2x2.
            trunk.maxpool = nn.Identity()
        self.backbone = nn.Sequential(
            trunk.conv1, trunk.bn1, trunk.relu, trunk.maxpool,
            trunk.layer1, trunk.layer2, trunk.layer3, trunk.layer4,
        )
        with torch.no_grad():
            grid = self.backbone.eval()(torch.zeros(1, 3, img_size, img_size)).shape[-2:]
        self.backbone.train()
        kw = {} if dropout is None else {"dropout": dropout}
        if head == "seed":
            self.head: nn.Module = SeedHead(2048, num_classes, (grid[0], grid[1]), **kw)
        else:
            self.head = LinearHead(2048, num_classes, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def build_model(config: dict) -> EmotionNet:
    """Build an (untrained) network from a checkpoint config."""
    arch = config.get("architecture", "resnet50")
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; this version knows {ARCHITECTURES}")
    return EmotionNet(
        num_classes=len(config["classes"]),
        img_size=int(config["input_size"]),
        head=config.get("head", "seed"),
        stem=config.get("stem", "imagenet"),
    )


class WeightsUnavailable(RuntimeError):
    """ImageNet weights could not be loaded (offline, no cached file)."""


def load_imagenet_backbone(model: EmotionNet) -> None:
    """Copy torchvision's ImageNet ResNet50 weights into the backbone.

    Uses torchvision's own loader, so an online user downloads them once into the torch
    hub cache; offline, the cached file is used when present, otherwise a clear error
    names the path to fill.
    """
    from torchvision.models import ResNet50_Weights

    weights = ResNet50_Weights.IMAGENET1K_V2
    hub_dir = Path(torch.hub.get_dir()) / "checkpoints"
    filename = os.path.basename(weights.url)
    try:
        state = weights.get_state_dict(progress=False, check_hash=False)
    except Exception as exc:  # urllib errors, hash errors, ...
        raise WeightsUnavailable(
            f"cannot load ImageNet weights for resnet50 ({type(exc).__name__}: {exc}). "
            f"Offline? Put {filename} (from {weights.url}) at {hub_dir / filename}, "
            "or start from one of our checkpoints with --weights PATH"
        ) from None
    trunk_state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    # Map torchvision names (conv1, bn1, layer1..4) onto our Sequential indices.
    names = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]
    mapped = {}
    for key, value in trunk_state.items():
        prefix, rest = key.split(".", 1)
        mapped[f"{names.index(prefix)}.{rest}"] = value
    missing, unexpected = model.backbone.load_state_dict(mapped, strict=True), None
    del missing, unexpected
