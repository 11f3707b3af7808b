"""The training recipe as a dataclass (no heavy imports: the CLI builds its options from it)."""
from __future__ import annotations

from dataclasses import dataclass

# Test-time augmentation of `evaluate --tta` and `analyze --tta` (views: fer_video.preprocess.tta_views).
TTA_MODES = ("none", "flip", "tencrop")


@dataclass
class TrainArgs:
    # One or more sources: "PATH[,labels=original|ferplus][,weight=W]" (fer_video.sources).
    data: list[str] | str
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
    face_frame: str = "auto"         # "auto", "none" (box crops) or "fer2013" (landmark-aligned, FER2013's frame)
    augment: str = "video"           # "video" (geometry + blur, rescale, JPEG, light, occlusion) or "basic"
    epoch_size: int = 0              # training images drawn per epoch (0: all sources' training images)
    calibrate: bool = True           # fit a softmax temperature on the validation carve at the end


# What runs made before a field existed did: a recipe (args.json, a checkpoint's `recipe`)
# without the field means this value, not today's default.
LEGACY_DEFAULTS = {"face_frame": "none", "augment": "basic", "epoch_size": 0, "calibrate": False}


def recipe_args(recipe: dict, **override) -> TrainArgs:
    """A TrainArgs from a stored recipe: unknown keys ignored, fields it lacks set to
    ``LEGACY_DEFAULTS`` (so old runs resume, average and re-carve as they were made)."""
    from dataclasses import fields

    names = {f.name for f in fields(TrainArgs)}
    kw = {k: v for k, v in recipe.items() if k in names}
    for k, v in LEGACY_DEFAULTS.items():
        kw.setdefault(k, v)
    kw.update(override)
    return TrainArgs(**kw)
