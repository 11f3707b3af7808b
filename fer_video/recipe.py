"""The training recipe as a dataclass (no heavy imports: the CLI builds its options from it)."""
from __future__ import annotations

from dataclasses import dataclass

# Test-time augmentation of `evaluate --tta` and `analyze --tta` (views: fer_video.preprocess.tta_views).
TTA_MODES = ("none", "flip", "tencrop")


@dataclass
class TrainArgs:
    data: str
    out: str
    weights: str = "none"            # "imagenet", "none" or a checkpoint path (ours)
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3                 # head LR; the backbone uses lr * backbone_lr_mult once unfrozen
    backbone_lr_mult: float = 0.1    # only when starting from pretrained weights
    weight_decay: float = 1e-4
    img_size: int = 48
    head: str = "seed"
    stem: str = "imagenet"
    freeze_epochs: int = 0           # epochs with the backbone frozen (pretrained starts only)
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    class_weighting: str = "sqrt"    # "none", "sqrt" (1/sqrt(freq)) or "inverse" (1/freq)
    val_fraction: float = 0.1
    device: str = "auto"
    seed: int = 0
    resume: bool = False
    amp: bool = True                 # bf16 autocast on CPU, fp16/bf16 on CUDA
    max_images: int = 0              # cap on training images (smoke tests); 0 = all
    log_every: int = 50              # steps between progress lines
    keep_epochs: bool = False        # also keep every epoch's weights (epoch_NNN.*), for averaging
