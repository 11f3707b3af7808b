"""The emotion classifier: a ResNet50 backbone with one of two heads.

The backbone is torchvision's ResNet50 (v1.5: stride on the 3x3 convolution) written out
here with the same layers and parameter names, so torchvision's ImageNet weights and every
checkpoint load into it unchanged (tests/test_classify.py compares the two networks
output for output). Why not import it: ``import torchvision`` imports ``torch._dynamo``
and cost 1.5 s of a 3.5 s start-up (measured: ``python -c "import torch"`` 1.9 s,
``"import torch, torchvision"`` 3.5 s, 2 busy cores); the detector dropped it for the same
reason (fer_video/mtcnn.py). torchvision is still imported to fetch ImageNet weights.

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


class Bottleneck(nn.Module):
    """torchvision's ``Bottleneck`` (expansion 4, stride on ``conv2``), same names."""
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


RESNET50_LAYERS = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))   # (planes, blocks, stride)


def resnet50_trunk(small_stem: bool) -> nn.Sequential:
    """conv1, bn1, relu, maxpool (an Identity for the small stem), layer1..4: torchvision's
    ``resnet50`` up to ``layer4``, as ``EmotionNet.backbone`` indexes it, initialised as
    torchvision initialises it (Kaiming-normal fan-out convolutions, BatchNorm 1 and 0)."""
    layers: list[nn.Module] = [nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False), nn.BatchNorm2d(64),
                               nn.ReLU(inplace=True),
                               nn.Identity() if small_stem else nn.MaxPool2d(3, stride=2, padding=1)]
    inplanes = 64
    for planes, blocks, stride in RESNET50_LAYERS:
        down = None
        if stride != 1 or inplanes != planes * Bottleneck.expansion:
            down = nn.Sequential(nn.Conv2d(inplanes, planes * Bottleneck.expansion, 1, stride=stride, bias=False),
                                 nn.BatchNorm2d(planes * Bottleneck.expansion))
        stage = [Bottleneck(inplanes, planes, stride, down)]
        inplanes = planes * Bottleneck.expansion
        stage += [Bottleneck(inplanes, planes) for _ in range(1, blocks)]
        layers.append(nn.Sequential(*stage))
    trunk = nn.Sequential(*layers)
    if trunk[0].weight.is_meta:
        # Built on the meta device to be filled from a checkpoint: nothing to initialise,
        # and normal_() there goes through torch._refs, which imports torch._dynamo
        # (1.1 s of start-up, measured).
        return trunk
    for m in trunk.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)
    return trunk


def trunk_grid(img_size: int, small_stem: bool) -> int:
    """The side of layer4's output grid for a square input of ``img_size``: conv1 and each
    later stage halve it (rounding up), as does the ImageNet stem's max-pool."""
    n = (img_size + 2 * 3 - 7) // 2 + 1
    if not small_stem:
        n = (n + 2 - 3) // 2 + 1
    for _, _, stride in RESNET50_LAYERS:
        n = (n + 2 - 3) // stride + 1
    return n


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
        # Small faces (48x48): the small stem drops the stem max-pool so layer4 sees a 3x3
        # grid, not 2x2.
        self.backbone = resnet50_trunk(small_stem=stem == "small")
        side = trunk_grid(img_size, small_stem=stem == "small")
        grid = (side, side)
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
    model.backbone.load_state_dict(backbone_state_from_torchvision(state), strict=True)


TORCHVISION_NAMES = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]


def backbone_state_from_torchvision(state: dict) -> dict:
    """A torchvision ``resnet50`` state dict as ``EmotionNet.backbone`` names it: conv1,
    bn1, layer1..4 become the Sequential's indices; ``fc`` is dropped."""
    mapped = {}
    for key, value in state.items():
        prefix, rest = key.split(".", 1)
        if prefix != "fc":
            mapped[f"{TORCHVISION_NAMES.index(prefix)}.{rest}"] = value
    return mapped
