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
from .checkpoint import ModelConfig, checkpoint_paths, file_sha256, load_checkpoint, save_checkpoint
from .data import FaceDataset, grouped_split, load_dataset
from .errors import SetupError, UsageError
from .model import EmotionNet, WeightsUnavailable, build_model, load_imagenet_backbone
from .preprocess import to_tensor, tta_views
from .recipe import TrainArgs  # also re-exported: fer_video.train.TrainArgs

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
def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Batched augmentation of normalised images (N,C,H,W), done as one affine warp.

    Random scale 0.9-1.1 (crop), rotation within +-10 degrees, shift within +-8%, horizontal
    flip with p=0.5, then random erasing (p=0.5, 2-20% of the area) — the same recipe for
    every image set, applied on the training device.
    """
    n = x.shape[0]
    dev = x.device
    u = lambda *s: torch.rand(*s, generator=gen).to(dev)  # noqa: E731
    angle = (u(n) * 2 - 1) * math.radians(10)
    scale = 0.9 + u(n) * 0.2
    flip = torch.where(u(n) < 0.5, -1.0, 1.0).to(dev)
    tx, ty = (u(n) * 2 - 1) * 0.08 * 2, (u(n) * 2 - 1) * 0.08 * 2
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1),
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


def resize_batch(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 N,H,W -> N,size,size (bilinear, via PIL for the same kernel as inference)."""
    if images.shape[1] == size and images.shape[2] == size:
        return images
    from PIL import Image

    return np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.BILINEAR)) for im in images])


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


@torch.no_grad()
def predict_probs(model: torch.nn.Module, images: np.ndarray, config: ModelConfig, device: torch.device,
                  batch_size: int = 256, tta: str = "none") -> np.ndarray:
    """Softmax probabilities (N x C, float64) for uint8 gray face crops already at any size;
    with ``tta``, the mean of the softmax outputs over ``tta_views``."""
    model.eval()
    images = resize_batch(images, config.input_size)
    out = []
    for i in range(0, len(images), batch_size):
        x = to_tensor(images[i:i + batch_size], config).to(device)
        views = tta_views(x, tta)
        p = sum(torch.softmax(model(v.contiguous(memory_format=torch.channels_last)).float(), 1) for v in views)
        out.append((p / len(views)).double().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, len(config.classes)))


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


def _class_weights(labels: np.ndarray, n: int, mode: str) -> torch.Tensor | None:
    if mode == "none":
        return None
    counts = np.bincount(labels, minlength=n).astype(float)
    counts = np.maximum(counts, 1)
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


def carve_run_data(args: TrainArgs) -> tuple[FaceDataset, FaceDataset]:
    """(training images, validation images) of a run: the grouped validation carve of the
    dataset's train split (``val_fraction``, ``seed``), then the ``max_images`` cap. The same
    recipe always gives the same carve, so tools that revisit a run (``average``) see exactly
    the images it trained and selected on."""
    full = load_dataset(args.data, "train")
    keep, held = grouped_split(full.groups, full.labels, args.val_fraction, args.seed)
    return _cap_train_images(full.subset(keep), args), full.subset(held)


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
        for f in fields(TrainArgs):
            if f.name not in _RUN_ONLY_FIELDS and f.name in saved and saved[f.name] != getattr(args, f.name):
                setattr(args, f.name, saved[f.name])
    elif state_path.exists():
        raise UsageError(f"{run_dir} already holds a run; use --resume to continue it or another --out")

    if train_set is None:
        train_set, val_set = carve_run_data(args)
    else:
        train_set = _cap_train_images(train_set, args)
    classes = train_set.classes
    config = ModelConfig(
        classes=list(classes), head=args.head, stem=args.stem, input_size=args.img_size,
        mean=[0.5] * 3, std=[0.25] * 3, version=__version__,
        data={"source": str(args.data), "train_images": len(train_set),
              "val_images": len(val_set) if val_set is not None else 0,
              "grouped_by": train_set.grouped_by, "class_counts": train_set.counts()},
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
    steps_per_epoch = max(1, math.ceil(len(train_set) / args.batch_size))
    total_steps = steps_per_epoch * args.epochs
    warmup = int(args.warmup_epochs * steps_per_epoch)
    weights = _class_weights(train_set.labels, len(classes), args.class_weighting)
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
                      f"classes {classes}, device {device}, start {start_info}")

    amp_dtype = torch.bfloat16 if device.type == "cpu" else (
        torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float16)
    train_images = resize_batch(train_set.images, args.img_size)
    train_labels = torch.as_tensor(train_set.labels)
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
        perm = torch.randperm(len(train_set), generator=gen)
        t0, loss_sum, correct, count = time.time(), 0.0, 0, 0
        for b in range(steps_per_epoch):
            step = epoch * steps_per_epoch + b
            lr = _lr_at(step, total_steps, warmup, args.lr)
            for g in opt.param_groups:
                g["lr"] = lr * g["lr_mult"]
            idx = perm[b * args.batch_size:(b + 1) * args.batch_size]
            if len(idx) < 2:
                continue
            x = to_tensor(train_images[idx.numpy()], config).to(device)
            x = augment(x, gen).contiguous(memory_format=torch.channels_last)
            y = train_labels[idx].to(device)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=args.amp):
                logits = model(x)
            loss = F.cross_entropy(logits.float(), y, weight=weights, label_smoothing=args.label_smoothing)
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
            probs = predict_probs(model, val_set.images, config, device)
            m = metrics_from_confusion(confusion_matrix(val_set.labels, probs.argmax(1), len(classes)), classes)
            record.update(val_acc=m["accuracy"], val_macro_f1=m["macro_f1"],
                          val_loss=_nll(probs, val_set.labels))
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
        _log(run_dir, f"epoch {epoch + 1}/{args.epochs} loss {record['train_loss']:.4f} "
                      f"train_acc {record['train_acc']:.4f} val_acc {record.get('val_acc', float('nan')):.4f} "
                      f"val_f1 {record.get('val_macro_f1', float('nan')):.4f} lr {lr:.2e} "
                      f"{record['epoch_s']:.0f}s ETA {eta / 60:.1f} min")
        if on_epoch:
            on_epoch(record)
    (run_dir / "best_epoch.json").write_text(json.dumps(best, indent=2) + "\n")
    return best


if __name__ == "__main__":  # pragma: no cover - `fer-video train` is the entry point
    sys.exit("use: fer-video train --help")
