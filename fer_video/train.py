"""Fine-tuning (or training from scratch) of the ResNet50 emotion classifier.

One run directory holds everything: ``train.log`` (human log), ``metrics.jsonl`` (one JSON
line per epoch), ``last.*`` and ``best.*`` checkpoints (safetensors + JSON config), with
``keep_epochs`` every epoch's ``epoch_NNN.*`` too, and ``train_state.pt`` (optimizer,
schedule and RNG state for ``--resume``). The best epoch is picked on a validation split
carved from the training data — never on a test split: highest accuracy, ties broken by the
lower loss (``_selection_key``).
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import asdict, fields
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from . import __version__
from .checkpoint import (CheckpointError, ModelConfig, checkpoint_paths, file_sha256, load_checkpoint, load_config,
                         save_checkpoint)
from .data import FER2013_FRAME, FaceDataset, grouped_split
from .errors import SetupError, UsageError
from .model import EmotionNet, WeightsUnavailable, build_model, load_imagenet_backbone
from .predict import predict_logits, predict_probs, probs_from_logits, resize_batch  # noqa: F401 (re-exported)
from .preprocess import to_tensor
from .recipe import TrainArgs  # also re-exported: fer_video.train.TrainArgs
from .sources import draw_weights, epoch_indices, load_sources, model_classes, source_specs, to_classes

# TrainArgs fields that say where and how a run executes, not what it trains: left out of a
# checkpoint's recipe, and the only ones a resumed run takes from the new command line.
_RUN_ONLY_FIELDS = ("out", "resume", "log_every", "device")


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda requested but no CUDA device is available")
    if name not in ("cpu", "cuda"):
        raise UsageError(f"--device must be auto, cpu or cuda (got {name!r})")
    return torch.device(name)


# ---------------------------------------------------------------- augmentation
def augment(x: torch.Tensor, gen: torch.Generator, roll_deg: float = 10.0, yaw: float = 0.0) -> torch.Tensor:
    """Batched augmentation of normalised images (N,C,H,W), done as one affine warp.

    Random scale 0.9-1.1 (crop), rotation within +-``roll_deg`` degrees, shift within +-8%,
    horizontal flip with p=0.5, with ``yaw`` > 0 a horizontal squeeze of the face to
    1-``yaw``..1 of its width (a head turned a little: the near half stays, the face narrows),
    then random erasing (p=0.5, 2-20% of the area: occlusion by hands, glasses, microphones)
    — the same recipe for every image set, applied on the training device. The "basic"
    recipe is the defaults (roll 10, no yaw); "video" uses roll 15 and yaw 0.25.
    """
    n = x.shape[0]
    dev = x.device
    u = lambda *s: torch.rand(*s, generator=gen).to(dev)  # noqa: E731
    angle = (u(n) * 2 - 1) * math.radians(roll_deg)
    scale = 0.9 + u(n) * 0.2
    flip = torch.where(u(n) < 0.5, -1.0, 1.0).to(dev)
    tx, ty = (u(n) * 2 - 1) * 0.08 * 2, (u(n) * 2 - 1) * 0.08 * 2
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    # grid_sample's theta maps output to input: dividing x by the squeeze narrows the face
    squeeze = (1 - yaw * u(n)) if yaw else torch.ones(n, device=dev)
    theta = torch.stack([torch.stack([cos * flip / squeeze, -sin / squeeze, tx], 1),
                         torch.stack([sin * flip, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    # Random erasing: one rectangle per selected image, filled with noise.
    h, w = x.shape[-2:]
    area = (0.02 + u(n) * 0.18) * h * w
    ratio = torch.exp((u(n) * 2 - 1) * math.log(3))
    eh = torch.sqrt(area * ratio).clamp(1, h).long()
    ew = torch.sqrt(area / ratio).clamp(1, w).long()
    y0 = (u(n) * (h - eh + 1).float()).long()
    x0 = (u(n) * (w - ew + 1).float()).long()
    ys = torch.arange(h, device=dev).view(1, h, 1)
    xs = torch.arange(w, device=dev).view(1, 1, w)
    mask = ((ys >= y0.view(-1, 1, 1)) & (ys < (y0 + eh).view(-1, 1, 1))
            & (xs >= x0.view(-1, 1, 1)) & (xs < (x0 + ew).view(-1, 1, 1)))
    mask &= (u(n) < 0.5).view(-1, 1, 1)
    noise = torch.randn(x.shape, generator=gen).to(dev)
    return torch.where(mask.unsqueeze(1), noise, x)


def degrade_u8(images: np.ndarray, rng: np.random.Generator, p_jpeg: float = 0.25) -> np.ndarray:
    """JPEG re-compression of uint8 gray images (N,H,W), each with probability ``p_jpeg``
    at a quality drawn from 15-60: the block artefacts of streamed and re-encoded video."""
    import io

    from PIL import Image

    out = images.copy()
    for i in np.flatnonzero(rng.random(len(images)) < p_jpeg):
        buf = io.BytesIO()
        Image.fromarray(images[i]).save(buf, format="JPEG", quality=int(rng.integers(15, 61)))
        buf.seek(0)
        with Image.open(buf) as im:
            out[i] = np.asarray(im.convert("L"))
    return out


def augment_video(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """What video does to faces, on images in [0, 1] (N,C,H,W), before normalisation:
    illumination (contrast 0.6-1.4, brightness +-0.15, p=0.5) and gamma (0.67-1.5, p=0.5);
    down-and-up scaling to 0.35, 0.5 or 0.7 of the side (bilinear, antialiased down, p=0.25
    in all: small, far faces); Gaussian blur (sigma 0.4-1.2 px, p=0.2: defocus, motion). Geometry (roll,
    yaw as a horizontal squeeze, zoom, shift, flip) and occlusion follow in ``augment``."""
    n, _, h, w = x.shape
    dev = x.device
    u = lambda *s: torch.rand(*s, generator=gen).to(dev)  # noqa: E731
    on = (u(n) < 0.5).view(-1, 1, 1, 1)
    contrast = (0.6 + 0.8 * u(n)).view(-1, 1, 1, 1)
    bright = ((u(n) * 2 - 1) * 0.15).view(-1, 1, 1, 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = torch.where(on, ((x - mean) * contrast + mean + bright).clamp(0, 1), x)
    on = (u(n) < 0.5).view(-1, 1, 1, 1)
    gamma = torch.exp((u(n) * 2 - 1) * math.log(1.5)).view(-1, 1, 1, 1)
    x = torch.where(on, x.clamp_min(1e-4) ** gamma, x)
    # down-and-up: three sizes, so each is one batched interpolate
    sel = u(n)
    for lo, hi, frac in ((0.0, 0.05, 0.35), (0.05, 0.15, 0.5), (0.15, 0.25, 0.7)):
        idx = torch.nonzero((sel >= lo) & (sel < hi)).flatten()
        if len(idx):
            small = F.interpolate(x[idx], size=(max(2, round(h * frac)), max(2, round(w * frac))),
                                  mode="bilinear", antialias=True, align_corners=False)
            x[idx] = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    # Gaussian blur with one sigma per image: a grouped 7x7 convolution
    on = torch.nonzero(u(n) < 0.2).flatten()
    if len(on):
        sigma = 0.4 + u(len(on)) * 0.8
        r = torch.arange(-3, 4, device=dev, dtype=x.dtype)
        k1 = torch.exp(-(r.view(1, -1) ** 2) / (2 * sigma.view(-1, 1) ** 2))
        k1 = k1 / k1.sum(1, keepdim=True)
        k2 = (k1.unsqueeze(2) * k1.unsqueeze(1)).unsqueeze(1)           # m,1,7,7
        sub = x[on]
        c = sub.shape[1]
        flat = F.pad(sub.reshape(1, -1, h, w), (3, 3, 3, 3), mode="replicate")
        x[on] = F.conv2d(flat, k2.repeat_interleave(c, 0), groups=len(on) * c).reshape(-1, c, h, w)
    return x


def normalise(x: torch.Tensor, config: ModelConfig) -> torch.Tensor:
    """[0, 1] images (N,1|3,H,W) -> the network's input (channels and mean/std of the config)."""
    if x.shape[1] == 1 and config.channels == 3:
        x = x.expand(-1, 3, -1, -1)
    mean = torch.tensor(config.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(config.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return ((x - mean) / std).contiguous()


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor | None = None,
                       label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy against target distributions (N x C rows summing to 1):
    ``sum_i sum_c w_c t'_ic (-log p_ic) / sum_i sum_c w_c t_ic`` with ``t' = (1 - e) t + e / C``.
    For one-hot targets this is exactly ``F.cross_entropy(logits, labels, weight,
    label_smoothing=e)`` (its weighted mean); for FER+ vote distributions each vote counts."""
    logp = F.log_softmax(logits.float(), dim=1)
    c = logits.shape[1]
    w = torch.ones(c, device=logits.device) if weight is None else weight.to(logits.device).float()
    t = targets.float()
    smoothed = t * (1 - label_smoothing) + label_smoothing / c
    num = -(smoothed * logp * w).sum()
    den = (t * w).sum().clamp_min(1e-12)
    return num / den


# ---------------------------------------------------------------- metrics
def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n: int) -> np.ndarray:
    cm = np.zeros((n, n), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def metrics_from_confusion(cm: np.ndarray, classes: list[str]) -> dict:
    """accuracy, macro-F1 (over classes present in y_true), per-class precision/recall/F1/support."""
    tp = np.diag(cm).astype(float)
    support = cm.sum(1).astype(float)
    predicted = cm.sum(0).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    present = support > 0
    total = cm.sum()
    return {
        "accuracy": float(tp.sum() / total) if total else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "n": int(total),
        "per_class": {c: {"precision": float(precision[i]), "recall": float(recall[i]),
                          "f1": float(f1[i]), "support": int(support[i])} for i, c in enumerate(classes)},
    }


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """ECE: the top-class confidence is binned into ``bins`` equal-width bins over [0, 1];
    ECE = sum over bins of (share of images in the bin) x |accuracy - mean confidence| in it."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    if not len(labels):
        return 0.0
    conf = probs.max(1)
    correct = (probs.argmax(1) == labels).astype(np.float64)
    which = np.minimum((conf * bins).astype(int), bins - 1)
    ece = 0.0
    for b in range(bins):
        m = which == b
        if m.any():
            ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(ece)


def soft_nll(probs: np.ndarray, targets: np.ndarray) -> float:
    """Mean cross-entropy of probabilities against target distributions (= NLL for one-hot)."""
    return float(-(np.asarray(targets) * np.log(np.clip(probs, 1e-12, None))).sum(1).mean())


def fit_temperature(logits: np.ndarray, targets: np.ndarray) -> float:
    """The softmax temperature T > 0 minimising the mean cross-entropy of softmax(logits / T)
    against ``targets`` (N x C distributions): golden-section search on log T in [1/20, 20]."""
    z = np.asarray(logits, dtype=np.float64)
    t = np.asarray(targets, dtype=np.float64)

    def loss(log_t: float) -> float:
        a = z / math.exp(log_t)
        a = a - a.max(1, keepdims=True)
        logp = a - np.log(np.exp(a).sum(1, keepdims=True))
        return float(-(t * logp).sum(1).mean())

    lo, hi = math.log(0.05), math.log(20.0)
    g = (math.sqrt(5) - 1) / 2
    c, d = hi - g * (hi - lo), lo + g * (hi - lo)
    fc, fd = loss(c), loss(d)
    for _ in range(80):
        if fc < fd:
            hi, d, fd = d, c, fc
            c = hi - g * (hi - lo)
            fc = loss(c)
        else:
            lo, c, fc = c, d, fd
            d = lo + g * (hi - lo)
            fd = loss(d)
    return float(math.exp((lo + hi) / 2))


# ---------------------------------------------------------------- training
def _log(run_dir: Path, msg: str, echo: bool = True) -> None:
    line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {msg}"
    if echo:
        print(line, flush=True)
    with open(run_dir / "train.log", "a") as f:
        f.write(line + "\n")


def _lr_at(step: int, total: int, warmup: int, base: float) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _class_weights(mass: np.ndarray, mode: str) -> torch.Tensor | None:
    """Per-class loss weights from each class's share of the training targets (image counts
    for hard labels, summed vote shares for soft ones)."""
    if mode == "none":
        return None
    counts = np.maximum(np.asarray(mass, dtype=float), 1)
    w = 1 / counts if mode == "inverse" else 1 / np.sqrt(counts)
    return torch.tensor(w / (w * counts).sum() * counts.sum(), dtype=torch.float32)


def _initial_model(args: TrainArgs, config: ModelConfig, device: torch.device) -> tuple[EmotionNet, dict]:
    """Build the network and load the starting weights named by --weights."""
    model = build_model(asdict(config))
    info: dict = {"weights": args.weights}
    if args.weights == "imagenet":
        try:
            load_imagenet_backbone(model)
        except WeightsUnavailable as exc:
            raise SetupError(str(exc)) from None
    elif args.weights != "none":
        src, src_cfg = load_checkpoint(args.weights)
        # The stems differ only in the max-pool (no weights), so a backbone moves between them;
        # anything else that does not fit is a usage error, not a traceback.
        try:
            model.backbone.load_state_dict(src.backbone.state_dict())
        except RuntimeError:
            raise UsageError(f"--weights {args.weights}: its backbone ({src_cfg.architecture}, stem "
                             f"{src_cfg.stem!r}) does not fit this run's (stem {config.stem!r})") from None
        info.update(source_stem=src_cfg.stem, source_classes=src_cfg.classes, source_sha256=file_sha256(checkpoint_paths(args.weights)[0]),
                    source_data=src_cfg.data.get("source"))
        # Same classes and head: keep the head too (continued training / fine-tuning on similar labels).
        if src_cfg.classes == config.classes and src_cfg.head == config.head \
                and src_cfg.input_size == config.input_size and src_cfg.stem == config.stem:
            model.head.load_state_dict(src.head.state_dict())
            info["head"] = "kept"
        else:
            info["head"] = "new"
    return model.to(device), info


def _cap_train_images(train_set: FaceDataset, args: TrainArgs) -> FaceDataset:
    if args.max_images and len(train_set) > args.max_images:
        idx = np.random.default_rng(args.seed).permutation(len(train_set))[: args.max_images]
        train_set = train_set.subset(np.sort(idx))
    return train_set


FACE_FRAMES = ("auto", "none", "fer2013")


def run_alignment(args: TrainArgs) -> dict:
    """The face frame a run trains in (``ModelConfig.alignment``): "none" -> {} (box crops),
    "fer2013" -> FER2013's frame (``data.FER2013_FRAME``), "auto" -> the frame of the
    ``--weights`` checkpoint (so a fine-tune keeps its start's frame; {} for checkpoints made
    before alignment existed), and FER2013's frame when starting from none/imagenet."""
    if args.face_frame == "none":
        return {}
    if args.face_frame == "fer2013":
        return dict(FER2013_FRAME)
    if args.face_frame != "auto":
        raise UsageError(f"--face-frame must be one of {', '.join(FACE_FRAMES)} (got {args.face_frame!r})")
    if args.weights in ("none", "imagenet"):
        return dict(FER2013_FRAME)
    try:
        return dict(load_config(args.weights).alignment)
    except CheckpointError as exc:
        raise UsageError(f"--weights {args.weights}: {exc}") from None


def _frame_config(args: TrainArgs, classes: list[str]) -> ModelConfig:
    return ModelConfig(classes=list(classes), input_size=args.img_size, alignment=run_alignment(args))


def prepare_dataset(d: FaceDataset, config: ModelConfig) -> FaceDataset:
    """``d`` with its images in ``config``'s face frame and input size (``face_frame``)."""
    from .face_frame import prepare_images

    want = dict(config.alignment) or None
    if d.images.shape[1:] == (config.input_size, config.input_size) and (not want or d.frame == want):
        return d
    out = d.subset(np.arange(len(d)))
    out.images = prepare_images(d, config)
    out.frame = want if want else d.frame
    return out


def concat_sets(parts: list[FaceDataset]) -> FaceDataset:
    """One dataset from prepared sources (same image size and classes); ``extra["source_id"]``
    says which part each image came from; group ids never collide across parts."""
    if len(parts) == 1:
        d = parts[0].subset(np.arange(len(parts[0])))
        d.extra = {**d.extra, "source_id": np.zeros(len(d), dtype=np.int64)}
        return d
    groups, off = [], 0
    for d in parts:
        groups.append(d.groups + off)
        off += int(d.groups.max()) + 1 if len(d) else 0
    soft = any(d.targets is not None for d in parts)
    return FaceDataset(
        np.concatenate([d.images for d in parts]), np.concatenate([d.labels for d in parts]),
        list(parts[0].classes), np.concatenate(groups), " + ".join(d.source for d in parts),
        "/".join(sorted({d.grouped_by for d in parts})),
        {"source_id": np.concatenate([np.full(len(d), k, dtype=np.int64) for k, d in enumerate(parts)])},
        np.concatenate([d.soft_targets() for d in parts]) if soft else None,
        parts[0].frame, " + ".join(d.name for d in parts))


def source_names(args: TrainArgs) -> list[str]:
    return [s.name for s in source_specs(args.data)]


def carve_run_data(args: TrainArgs) -> tuple[FaceDataset, FaceDataset]:
    """(training images, validation images) of a run: per source, the grouped validation
    carve of its train split (``val_fraction``, ``seed``), every source mapped onto the
    model's classes and brought into the run's face frame and input size, then the
    ``max_images`` cap on the training part. ``extra["source_id"]`` indexes ``args.data``.
    The same recipe always gives the same carve, so tools that revisit a run (``average``,
    ``evaluate --split val``) see exactly the images it trained and selected on."""
    specs = source_specs(args.data)
    sets = load_sources(specs, "train")
    classes = model_classes(sets)
    cfg = _frame_config(args, classes)
    trains, vals = [], []
    for d in sets:
        d = prepare_dataset(to_classes(d, classes), cfg)
        keep, held = grouped_split(d.groups, d.labels, args.val_fraction, args.seed)
        trains.append(d.subset(keep))
        vals.append(d.subset(held))
    return _cap_train_images(concat_sets(trains), args), concat_sets(vals)


def validation_metrics(probs: np.ndarray, val: FaceDataset, names: list[str]) -> dict:
    """``val_acc`` (the mean over sources of each source's accuracy, so a small source
    counts as much as a big one), ``val_loss`` (the mean over sources of the cross-entropy
    against the targets), ``val_macro_f1`` (all validation images pooled) and, with several
    sources, ``val_acc_<name>`` per source."""
    classes = val.classes
    sid = val.extra.get("source_id", np.zeros(len(val), dtype=np.int64))
    targets = val.soft_targets()
    accs, losses, out = [], [], {}
    for k, name in enumerate(names):
        m = sid == k
        if not m.any():
            continue
        acc = float((probs[m].argmax(1) == val.labels[m]).mean())
        accs.append(acc)
        losses.append(soft_nll(probs[m], targets[m]))
        if len(names) > 1:
            out[f"val_acc_{name}"] = acc
    pooled = metrics_from_confusion(confusion_matrix(val.labels, probs.argmax(1), len(classes)), classes)
    return {"val_acc": float(np.mean(accs)), "val_macro_f1": pooled["macro_f1"],
            "val_loss": float(np.mean(losses)), **out}


def _nll(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of the true class (plain: no class weights, no smoothing)."""
    p = probs[np.arange(len(labels)), np.asarray(labels)]
    return float(-np.log(np.clip(p, 1e-12, None)).mean())


def _selection_key(record: dict) -> tuple[float, float]:
    """How epochs are ranked: validation accuracy, then lower validation loss.

    A small validation split (CK+: ~80 images, ~10 subjects) often gives several epochs the
    same accuracy, 100% included; the loss breaks the tie instead of the earliest epoch
    winning. Without a validation split: lower training loss.
    """
    if "val_acc" in record:
        return (record["val_acc"], -record.get("val_loss", math.inf))
    return (-record["train_loss"], 0.0)


def _is_better(record: dict, best: dict) -> bool:
    return _selection_key(record) > _selection_key(best)


def train(args: TrainArgs, train_set: FaceDataset | None = None, val_set: FaceDataset | None = None,
          on_epoch: Callable[[dict], None] | None = None) -> dict:
    """Train; return the best epoch's record. Datasets may be passed in (cross-validation)."""
    run_dir = Path(args.out)
    run_dir.mkdir(parents=True, exist_ok=True)
    device = pick_device(args.device)
    torch.manual_seed(args.seed)

    state_path = run_dir / "train_state.pt"
    saved_args_path = run_dir / "args.json"
    if args.resume:
        if not state_path.is_file():
            raise UsageError(f"--resume: no train_state.pt in {run_dir}")
        saved = json.loads(saved_args_path.read_text())
        # A resumed run continues the whole recipe it started with (every field but where it
        # runs and how it logs): a field left out here would silently take its default again
        # in the configs written from then on, as backbone_lr_mult once did.
        from .recipe import LEGACY_DEFAULTS

        saved = {**LEGACY_DEFAULTS, **saved}     # runs made before a field existed
        for f in fields(TrainArgs):
            if f.name not in _RUN_ONLY_FIELDS and f.name in saved and saved[f.name] != getattr(args, f.name):
                setattr(args, f.name, saved[f.name])
    elif state_path.exists():
        raise UsageError(f"{run_dir} already holds a run; use --resume to continue it or another --out")

    names = source_names(args)
    if train_set is None:
        train_set, val_set = carve_run_data(args)
    else:
        # Sets passed in (cross-validation folds): bring them into the run's frame and size.
        cfg = _frame_config(args, train_set.classes)
        train_set = _cap_train_images(prepare_dataset(train_set, cfg), args)
        if val_set is not None:
            val_set = prepare_dataset(val_set, cfg)
        names = names[:1]
    classes = train_set.classes
    alignment = run_alignment(args)
    sid = train_set.extra.get("source_id", np.zeros(len(train_set), dtype=np.int64))
    sizes = [int((sid == k).sum()) for k in range(len(names))]
    specs = source_specs(args.data)[:len(names)]
    shares = draw_weights(specs, sizes)
    epoch_size = args.epoch_size or len(train_set)
    config = ModelConfig(
        classes=list(classes), head=args.head, stem=args.stem, input_size=args.img_size,
        mean=[0.5] * 3, std=[0.25] * 3, version=__version__, alignment=alignment,
        data={"source": str(args.data) if isinstance(args.data, str) else " + ".join(args.data),
              "train_images": len(train_set),
              "val_images": len(val_set) if val_set is not None else 0,
              "grouped_by": train_set.grouped_by, "class_counts": train_set.counts(),
              "sources": [{"name": n, "spec": sp.path, "labels": sp.labels, "train_images": size,
                           "share_of_draws": round(float(sh), 4)}
                          for n, sp, size, sh in zip(names, specs, sizes, shares)]},
        recipe={k: v for k, v in asdict(args).items() if k not in _RUN_ONLY_FIELDS},
    )
    model, start_info = _initial_model(args, config, device)
    config.recipe["start"] = start_info
    model = model.to(memory_format=torch.channels_last)
    pretrained = args.weights != "none"
    freeze_epochs = args.freeze_epochs if pretrained else 0

    head_params = list(model.head.parameters())
    backbone_params = list(model.backbone.parameters())
    bb_mult = args.backbone_lr_mult if pretrained else 1.0
    opt = torch.optim.AdamW([{"params": head_params, "lr_mult": 1.0},
                             {"params": backbone_params, "lr_mult": bb_mult}],
                            lr=args.lr, weight_decay=args.weight_decay)
    steps_per_epoch = max(1, math.ceil(epoch_size / args.batch_size))
    total_steps = steps_per_epoch * args.epochs
    warmup = int(args.warmup_epochs * steps_per_epoch)
    targets_all = train_set.soft_targets()
    weights = _class_weights(targets_all.sum(0), args.class_weighting)
    if weights is not None:
        weights = weights.to(device)

    start_epoch, best, history = 0, None, []
    if args.resume:
        st = torch.load(state_path, map_location="cpu", weights_only=True)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        start_epoch, best, history = st["epoch"], st["best"], st["history"]
        _log(run_dir, f"resumed at epoch {start_epoch + 1}/{args.epochs}")
    else:
        saved_args_path.write_text(json.dumps(asdict(args), indent=2) + "\n")
        _log(run_dir, f"train {len(train_set)} images, val {len(val_set) if val_set is not None else 0}, "
                      f"classes {classes}, device {device}, start {start_info}, "
                      f"sources {[(n, z, round(float(h), 3)) for n, z, h in zip(names, sizes, shares)]}, "
                      f"{epoch_size} draws per epoch, frame {alignment or 'box crop'}")

    amp_dtype = torch.bfloat16 if device.type == "cpu" else (
        torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float16)
    train_images = resize_batch(train_set.images, args.img_size)
    train_targets = torch.as_tensor(targets_all)
    train_labels = torch.as_tensor(train_set.labels)
    offsets = [int(np.argmax(sid == k)) if sizes[k] else 0 for k in range(len(names))]
    contiguous = all(np.all(sid[o:o + z] == k) for k, (o, z) in enumerate(zip(offsets, sizes)))
    video = args.augment == "video"
    if args.augment not in ("video", "basic"):
        raise UsageError(f"--augment must be video or basic (got {args.augment!r})")
    t_run = time.time()
    seen_in_run = 0
    for epoch in range(start_epoch, args.epochs):
        frozen = epoch < freeze_epochs
        for p in backbone_params:
            p.requires_grad_(not frozen)
        model.train()
        if frozen:
            model.backbone.eval()   # keep pretrained BN statistics while the backbone is frozen
        gen = torch.Generator().manual_seed(args.seed * 1000 + epoch)
        if len(names) == 1 and not args.epoch_size:
            perm = torch.randperm(len(train_set), generator=gen)     # one source: a plain shuffle
        else:
            if not contiguous:
                raise UsageError("training sets must be concatenated source by source")
            rng_e = np.random.default_rng(args.seed * 1000 + epoch)
            perm = torch.as_tensor(epoch_indices(offsets, sizes, shares, epoch_size, rng_e))
        rng_np = np.random.default_rng(args.seed * 7919 + epoch)
        t0, loss_sum, correct, count = time.time(), 0.0, 0, 0
        for b in range(steps_per_epoch):
            step = epoch * steps_per_epoch + b
            lr = _lr_at(step, total_steps, warmup, args.lr)
            for g in opt.param_groups:
                g["lr"] = lr * g["lr_mult"]
            idx = perm[b * args.batch_size:(b + 1) * args.batch_size]
            if len(idx) < 2:
                continue
            if video:
                u8 = degrade_u8(train_images[idx.numpy()], rng_np)
                x01 = torch.as_tensor(u8).unsqueeze(1).float().div_(255.0).to(device)
                x = normalise(augment_video(x01, gen), config)
                x = augment(x, gen, roll_deg=15.0, yaw=0.25)
            else:
                x = augment(to_tensor(train_images[idx.numpy()], config).to(device), gen)
            x = x.contiguous(memory_format=torch.channels_last)
            y = train_labels[idx].to(device)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=args.amp):
                logits = model(x)
            loss = soft_cross_entropy(logits.float(), train_targets[idx].to(device), weights, args.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.item() * len(idx)
            correct += int((logits.argmax(1) == y).sum())
            count += len(idx)
            seen_in_run += len(idx)
            if args.log_every and (b + 1) % args.log_every == 0:
                rate = seen_in_run / (time.time() - t_run)
                left = (total_steps - step - 1) * args.batch_size / max(rate, 1e-9)
                _log(run_dir, f"epoch {epoch + 1}/{args.epochs} step {b + 1}/{steps_per_epoch} "
                              f"loss {loss_sum / count:.4f} {rate:.0f} img/s ETA {left / 60:.1f} min",
                     echo=False)
        record = {"epoch": epoch + 1, "train_loss": loss_sum / max(count, 1),
                  "train_acc": correct / max(count, 1), "lr": lr, "frozen": frozen,
                  "epoch_s": round(time.time() - t0, 1)}
        if val_set is not None and len(val_set):
            probs = predict_probs(model, val_set.images, config, device, temperature=1.0)
            record.update(validation_metrics(probs, val_set, names))
        history.append(record)
        config.metrics = {"epoch": epoch + 1, **{k: v for k, v in record.items() if k.startswith("val_")}}
        save_checkpoint(model, config, run_dir / "last")
        if args.keep_epochs:   # for checkpoint averaging (fer-video average)
            save_checkpoint(model, config, run_dir / f"epoch_{epoch + 1:03d}")
        if best is None or _is_better(record, best):
            best = {"score": _selection_key(record), **record}
            save_checkpoint(model, config, run_dir / "best")
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch + 1,
                    "best": best, "history": history}, str(state_path) + ".tmp")
        os.replace(str(state_path) + ".tmp", state_path)
        with open(run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        eta = (args.epochs - epoch - 1) * record["epoch_s"]
        per_source = " ".join(f"{k[8:]} {v:.4f}" for k, v in record.items() if k.startswith("val_acc_"))
        _log(run_dir, f"epoch {epoch + 1}/{args.epochs} loss {record['train_loss']:.4f} "
                      f"train_acc {record['train_acc']:.4f} val_acc {record.get('val_acc', float('nan')):.4f} "
                      f"val_f1 {record.get('val_macro_f1', float('nan')):.4f} lr {lr:.2e} "
                      f"{record['epoch_s']:.0f}s ETA {eta / 60:.1f} min" + (f" ({per_source})" if per_source else ""))
        if on_epoch:
            on_epoch(record)
    if args.calibrate and val_set is not None and len(val_set) and best is not None:
        cal = calibrate_checkpoint(run_dir / "best", val_set, device)
        best = {**best, "temperature": cal["temperature"]}
        _log(run_dir, f"calibration on the validation carve: temperature {cal['temperature']:.3f}, "
                      f"ECE {cal['ece_before']:.4f} -> {cal['ece_after']:.4f}, "
                      f"NLL {cal['nll_before']:.4f} -> {cal['nll_after']:.4f}")
    (run_dir / "best_epoch.json").write_text(json.dumps(best, indent=2) + "\n")
    return best


def calibrate_checkpoint(path: str | Path, val_set: FaceDataset, device: torch.device | str = "cpu") -> dict:
    """Fit ``ModelConfig.temperature`` on ``val_set`` (images already in the model's frame and
    size, as ``carve_run_data`` gives them) and rewrite the checkpoint's config with it and
    with ``metrics["calibration"]``: temperature, ECE (15 bins) and NLL before and after."""
    dev = torch.device(device) if isinstance(device, str) else device
    model, config = load_checkpoint(path, dev)
    logits = predict_logits(model, val_set.images, config, dev)
    targets = val_set.soft_targets()
    t = fit_temperature(logits[0], targets)
    before, after = probs_from_logits(logits, 1.0), probs_from_logits(logits, t)
    cal = {"temperature": t, "val_images": len(val_set),
           "ece_before": expected_calibration_error(before, val_set.labels),
           "ece_after": expected_calibration_error(after, val_set.labels),
           "nll_before": soft_nll(before, targets), "nll_after": soft_nll(after, targets)}
    config.temperature = t
    config.metrics = {**config.metrics, "calibration": cal}
    from .atomic import atomic_write_text

    atomic_write_text(checkpoint_paths(path)[1], json.dumps(config.to_json(), indent=2) + "\n")
    return cal


if __name__ == "__main__":  # pragma: no cover - `fer-video train` is the entry point
    sys.exit("use: fer-video train --help")
