"""The training recipe as a dataclass (no heavy imports: the CLI builds its options from it)."""
from __future__ import annotations

from dataclasses import dataclass, field

# Test-time augmentation of `evaluate --tta` and `analyze --tta` (views: fer_video.preprocess.tta_views).
TTA_MODES = ("none", "flip", "tencrop")
# The classifier's arithmetic for `analyze/evaluate --precision` (fer_video.predict.resolve_precision).
PRECISIONS = ("auto", "fp32", "bf16", "int8")
# The networks' runtime for `analyze --backend` (fer_video.job.load_models).
BACKENDS = ("torch", "onnx")


def _opt(default, help: str, **meta):
    """A recipe field with its command-line option: ``help`` (``%(default)s`` allowed),
    optional ``choices``, ``flag`` (the option's name when not ``--field-name``), ``metavar``,
    ``cli`` ("recipe": train and evaluate --folds; "train": train only; "none": not an option)."""
    return field(default=default, metadata={"help": help, **meta})


@dataclass
class TrainArgs:
    """The training recipe. Each field is written once, here: its default, its option and
    its help; ``add_recipe_options`` builds the ``train``/``evaluate --folds`` options from
    these fields, so the CLI and the recipe cannot disagree."""
    # One or more sources: "PATH[,labels=original|ferplus|both][,weight=W]" (fer_video.sources).
    data: list[str] | str
    out: str
    weights: str = _opt("none", "starting weights: imagenet, none, or one of our checkpoints (default: %(default)s)")
    epochs: int = _opt(30, "epochs (default: %(default)s)")
    batch_size: int = _opt(64, "images per training step (default: %(default)s)")
    lr: float = _opt(1e-3, "peak learning rate of the head (default: %(default)s)")
    backbone_lr_mult: float = _opt(0.1, "backbone LR = lr x this, when starting from pretrained weights "
                                        "(default: %(default)s)")
    weight_decay: float = _opt(1e-4, "AdamW weight decay (default: %(default)s)")
    img_size: int = _opt(48, "input side in pixels (default: %(default)s)")
    head: str = _opt("seed", "seed: Conv-MaxPool-BN-Dropout-Flatten-Dense (founding note); linear: avg-pool + "
                             "linear (default: %(default)s)", choices=("seed", "linear"))
    stem: str = _opt("imagenet", "imagenet: the standard ResNet stem; small: without its max-pool "
                                 "(default: %(default)s)", choices=("imagenet", "small"))
    freeze_epochs: int = _opt(0, "epochs with the backbone frozen before fine-tuning it (pretrained starts)")
    warmup_epochs: float = _opt(1.0, "epochs of linear LR warm-up before the cosine decay (default: %(default)s)")
    label_smoothing: float = _opt(0.1, "label smoothing of the cross-entropy (default: %(default)s)")
    class_weighting: str = _opt("sqrt", "loss weight per class: none, sqrt (1/sqrt(freq)) or inverse (1/freq) "
                                        "(default: %(default)s)", choices=("none", "sqrt", "inverse"))
    val_fraction: float = _opt(0.1, "share of each source's groups held out to choose the epoch "
                                    "(default: %(default)s)")
    device: str = _opt("auto", "auto | cpu | cuda | cuda:N (default: %(default)s)")
    seed: int = _opt(0, "seed of the validation carve, shuffling and augmentation (default: %(default)s)")
    resume: bool = _opt(False, "continue the run in --out where it stopped", cli="train")
    amp: bool = _opt(True, "train in fp32 (default: bf16/fp16 autocast on CUDA and on a CPU with bfloat16 in hardware, "
                                "AVX512_BF16 or AMX; fp32 on other CPUs, where bf16 is emulated and slower)", flag="--no-amp")
    max_images: int = _opt(0, "use at most N training images (smoke runs)", metavar="N")
    log_every: int = _opt(50, "training steps between progress lines in train.log (default: %(default)s)",
                          cli="train")
    keep_epochs: bool = _opt(False, "also keep every epoch's weights as epoch_NNN.* (for fer-video average)",
                             cli="train")
    face_frame: str = _opt("auto", "fer2013: every source warped into FER2013's face frame and inference crops "
                                   "aligned on MTCNN's landmarks to it; none: box crops; auto: the --weights "
                                   "checkpoint's frame, fer2013 from none/imagenet (default: %(default)s)",
                           choices=("auto", "none", "fer2013"))
    augment: str = _opt("video", "video: geometry, occlusion, blur, down-and-up scaling, JPEG, light and gamma; "
                                 "basic: geometry and occlusion only (default: %(default)s)", choices=("video", "basic"))
    epoch_size: int = _opt(0, "images drawn per epoch across the sources (default: all training images)",
                           metavar="N")
    calibrate: bool = _opt(True, "do not fit a softmax temperature on the validation carve at the end",
                           flag="--no-calibrate")


def add_recipe_options(parser, *, train: bool) -> None:
    """Add one option per TrainArgs field (not ``data``/``out``): type from the default,
    bools as store_true (default False) or a ``--no-...`` store_false (default True)."""
    from dataclasses import MISSING, fields

    for f in fields(TrainArgs):
        if f.default is MISSING:
            continue
        meta = f.metadata
        where = meta.get("cli", "recipe")
        if where == "none" or (where == "train" and not train):
            continue
        flag = meta.get("flag", "--" + f.name.replace("_", "-"))
        kw: dict = {"dest": f.name, "help": meta.get("help")}
        if isinstance(f.default, bool):
            kw["action"] = "store_false" if f.default else "store_true"
        else:
            kw.update(type=type(f.default), default=f.default)
            for k in ("choices", "metavar"):
                if k in meta:
                    kw[k] = list(meta[k]) if k == "choices" else meta[k]
        parser.add_argument(flag, **kw)


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
