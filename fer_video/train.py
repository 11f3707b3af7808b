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

from . import __version__
from .augment import augment, augment_video, degrade_u8, normalise, soft_cross_entropy
from .checkpoint import ModelConfig, checkpoint_paths, file_sha256, load_checkpoint, save_checkpoint
from .data import FaceDataset
from .errors import SetupError, UsageError
# confusion_matrix, metrics_from_confusion, carve_run_data, prepare_dataset and TrainArgs are
# also imported from here by evaluate, average and the tests.
from .metrics import (confusion_matrix, expected_calibration_error, fit_temperature,  # noqa: F401
                      metrics_from_confusion, soft_nll)
from .model import EmotionNet, WeightsUnavailable, build_model, load_imagenet_backbone
from .predict import (bf16_native, fold_batchnorm, predict_logits, predict_probs, probs_from_logits,  # noqa: F401
                      resize_batch)
from .preprocess import to_tensor
from .recipe import TrainArgs
from .sources import (_cap_train_images, _frame_config, carve_run_data, draw_weights, epoch_indices,
                      prepare_dataset, run_alignment, source_names, source_specs, validation_metrics)

# TrainArgs fields that say where and how a run executes, not what it trains: left out of a
# checkpoint's recipe, and the only ones a resumed run takes from the new command line.
_RUN_ONLY_FIELDS = ("out", "resume", "log_every", "device")


def pick_device(name: str) -> torch.device:
    """The torch device for ``--device`` (auto, cpu, cuda, cuda:N): the one resolver that
    ``analyze`` uses too (``classify.resolve_device``); a CUDA device that is not there is a
    one-line UsageError."""
    from .classify import resolve_device

    return torch.device(resolve_device(name))


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
        # Same classes and head, and head tensors of the same shapes: keep the head too
        # (continued training / fine-tuning on similar labels). The seed head's shapes depend
        # on layer4's grid, not the input size itself: 48 and 64 px both give a 3x3 / 4x4 grid
        # pooled to 2x2 with the small stem, so a 48-px head carries over to 64 px.
        src_head, new_head = src.head.state_dict(), model.head.state_dict()
        if src_cfg.classes == config.classes and src_cfg.head == config.head \
                and all(src_head[k].shape == v.shape for k, v in new_head.items()):
            model.head.load_state_dict(src_head)
            info["head"] = "kept"
        else:
            info["head"] = "new"
    return model.to(device), info


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
    use_amp = bool(args.amp)
    if use_amp and device.type == "cpu":
        if not bf16_native(device):
            # Emulated bf16 halves the speed (12.7 against 24.0 img/s, predict.bf16_native).
            use_amp = False
            _log(run_dir, "autocast off: this CPU has no bfloat16 in hardware (AVX512_BF16 or AMX); "
                          "training in fp32, the faster arithmetic here")
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
            with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
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
                      f"NLL {cal['nll_before']:.4f} -> {cal['nll_after']:.4f}" + int8_sentence(cal))
    (run_dir / "best_epoch.json").write_text(json.dumps(best, indent=2) + "\n")
    return best


def fit_temperature_on(logits: np.ndarray, val_set: FaceDataset) -> dict:
    """The temperature fitted on ``logits`` (V x N x C; the first view) against ``val_set``'s
    targets, with ECE (15 bins) and NLL of the probabilities before (T = 1) and after it."""
    targets = val_set.soft_targets()
    t = fit_temperature(logits[0], targets)
    before, after = probs_from_logits(logits, 1.0), probs_from_logits(logits, t)
    return {"temperature": t,
            "ece_before": expected_calibration_error(before, val_set.labels),
            "ece_after": expected_calibration_error(after, val_set.labels),
            "nll_before": soft_nll(before, targets), "nll_after": soft_nll(after, targets)}


def int8_sentence(cal: dict) -> str:
    """'; int8: ...' for a log line, from ``calibrate_checkpoint``'s result ('' without int8)."""
    q = cal.get("int8")
    if not q:
        return ""
    text = (f"; int8 ranges from {q['calibration_images']} images, temperature {q['temperature']:.3f}, "
            f"ECE {q['ece_before']:.4f} -> {q['ece_after']:.4f}")
    if q.get("compared_images"):
        text += (f", top class as fp32's on {q['top_class_agreement']:.1%} of the other {q['compared_images']} "
                 f"(accuracy {q['accuracy_int8']:.4f} int8, {q['accuracy_fp32']:.4f} fp32)")
    return text


# Validation images the int8 activation ranges are measured on (the rest of the carve
# measures int8 against fp32). 512 and 1,024 gave the same top-class agreement with fp32 on
# held-out validation images (98%); HistogramObserver takes ~30 s per 512 on 2 cores.
INT8_IMAGES = 1024


def calibrate_int8_checkpoint(model: torch.nn.Module, config: ModelConfig, val_set: FaceDataset,
                              fp32_logits: np.ndarray) -> dict | None:
    """Set ``config.int8`` (fer_video/int8.py): activation ranges measured on up to
    ``INT8_IMAGES`` of ``val_set`` (half of it at most; a fixed draw) and int8's own
    temperature, fitted on all of ``val_set``'s int8 logits; return that temperature with
    int8's ECE before and after it, and how int8 compares with fp32 (``fp32_logits``: one
    view, the same images) on the images the ranges were not measured on: top-class
    agreement and accuracy of each. None (and ``config.int8`` left as it is) where torch has
    no x86 quantized engine."""
    from .int8 import calibrate_int8, int8_engine

    if int8_engine() is None or not len(val_set):
        return None
    order = np.random.default_rng(0).permutation(len(val_set))
    n_cal = max(1, min(INT8_IMAGES, len(val_set) // 2))
    cal_idx, rest = np.sort(order[:n_cal]), np.sort(order[n_cal:])
    cpu_model = model.to("cpu").float().eval()
    config.int8 = calibrate_int8(fold_batchnorm(cpu_model), resize_batch(val_set.images[cal_idx], config.input_size),
                                 config)
    out = {"calibration_images": int(n_cal), "compared_images": int(len(rest))}
    q_all = predict_logits(cpu_model, val_set.images, config, torch.device("cpu"), precision="int8")
    # int8's own temperature, fitted on the whole carve as fp32's is: with fp32's, the
    # shipped model's int8 ECE was 0.057 on FER2013's test split against fp32's 0.043
    fit = fit_temperature_on(q_all, val_set)
    config.int8["temperature"] = fit["temperature"]
    out.update({k: fit[k] for k in ("temperature", "ece_before", "ece_after")})
    if len(rest):
        q, f = q_all[0][rest], fp32_logits[rest]
        labels = val_set.labels[rest]
        out.update(top_class_agreement=float((q.argmax(1) == f.argmax(1)).mean()),
                   accuracy_int8=float((q.argmax(1) == labels).mean()),
                   accuracy_fp32=float((f.argmax(1) == labels).mean()))
    return out


def calibrate_checkpoint(path: str | Path, val_set: FaceDataset, device: torch.device | str = "cpu") -> dict:
    """Fit ``ModelConfig.temperature`` on ``val_set`` (images already in the model's frame and
    size, as ``carve_run_data`` gives them), measure the int8 activation ranges
    (:func:`calibrate_int8_checkpoint`), and rewrite the checkpoint's config with them and
    with ``metrics["calibration"]``: temperature, ECE (15 bins) and NLL before and after,
    and ``int8``: how int8 compares with fp32 on the validation images it was not
    calibrated on."""
    dev = torch.device(device) if isinstance(device, str) else device
    model, config = load_checkpoint(path, dev)
    logits = predict_logits(model, val_set.images, config, dev)
    fit = fit_temperature_on(logits, val_set)
    cal = {"temperature": fit["temperature"], "val_images": len(val_set),
           **{k: v for k, v in fit.items() if k != "temperature"}}
    config.temperature = fit["temperature"]
    int8 = calibrate_int8_checkpoint(model, config, val_set, logits[0])
    if int8 is not None:
        cal["int8"] = int8
    config.metrics = {**config.metrics, "calibration": cal}
    from .atomic import atomic_write_text

    atomic_write_text(checkpoint_paths(path)[1], json.dumps(config.to_json(), indent=2) + "\n")
    return cal


if __name__ == "__main__":  # pragma: no cover - `fer-video train` is the entry point
    sys.exit("use: fer-video train --help")
