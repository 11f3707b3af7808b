"""Checkpoint averaging: the uniform mean of the weights of a run's last K epochs.

Near the end of a run the epochs' weights scatter around a good region; their mean often
generalises better than any one of them (SWA, Izmailov et al. 2018). The batch-norm running
statistics of a mean of weights are not the mean of the statistics, so they are recomputed
on the run's own training images (``torch.optim.swa_utils.update_bn``, no augmentation).

Which K to keep is decided on the run's validation carve — the same images the run picked
its best epoch on — never on a test split. The run must have been trained with
``--keep-epochs`` (``epoch_NNN.*`` files in its folder) by ``fer-video train``, so that its
``args.json`` rebuilds its exact training and validation images.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import torch

from .atomic import atomic_write_text
from .checkpoint import ModelConfig, load_checkpoint, save_checkpoint
from .errors import UsageError
from .preprocess import to_tensor
from .recipe import TrainArgs
from .train import (_selection_key, calibrate_checkpoint, carve_run_data, int8_sentence, pick_device,
                    predict_probs, resize_batch, source_names, validation_metrics)

EPOCH_FILE = re.compile(r"epoch_(\d{3,})\.safetensors$")


def kept_epochs(run_dir: Path) -> dict[int, Path]:
    """{epoch number: weights path} of the per-epoch checkpoints a run kept."""
    return {int(m.group(1)): p for p in sorted(run_dir.glob("epoch_*.safetensors"))
            if (m := EPOCH_FILE.search(p.name)) and p.with_suffix(".json").is_file()}


def run_args(run_dir: Path) -> TrainArgs:
    saved = run_dir / "args.json"
    if not saved.is_file():
        raise UsageError(f"{run_dir}: not a training run (no args.json)")
    from .recipe import recipe_args

    return recipe_args(json.loads(saved.read_text()))


def mean_weights(paths: list[Path]) -> tuple[torch.nn.Module, ModelConfig]:
    """The network whose every floating-point tensor is the mean over ``paths`` (same config)."""
    model, config = load_checkpoint(paths[0])
    if len(paths) == 1:
        return model, config
    state = model.state_dict()
    acc = {k: v.clone().double() for k, v in state.items() if v.is_floating_point()}
    for p in paths[1:]:
        other, other_cfg = load_checkpoint(p)
        if (other_cfg.classes, other_cfg.head, other_cfg.stem, other_cfg.input_size) != \
                (config.classes, config.head, config.stem, config.input_size):
            raise UsageError(f"{p}: a different network from {paths[0]}; cannot average them")
        for k, v in other.state_dict().items():
            if k in acc:
                acc[k] += v.double()
    model.load_state_dict({**state, **{k: (v / len(paths)).to(state[k].dtype) for k, v in acc.items()}})
    return model, config


@torch.no_grad()
def recompute_bn(model: torch.nn.Module, images: np.ndarray, config: ModelConfig, device: torch.device,
                 batch_size: int = 256) -> None:
    """Batch-norm running statistics from ``images`` (uint8 faces), fp32, no augmentation."""
    from torch.optim.swa_utils import update_bn

    images = resize_batch(images, config.input_size)
    batches = (to_tensor(images[i:i + batch_size], config).to(device).contiguous(memory_format=torch.channels_last)
               for i in range(0, len(images), batch_size))
    model.to(device)
    update_bn(batches, model, device)
    model.eval()


def average_run(run_dir: str | Path, lasts: list[int], bn_images: int = 8192, device: str = "auto",
                log=print) -> dict:
    """Average the last K kept epochs for each K in ``lasts``; score each on the validation
    carve; write ``avg_lastK.*`` per K, ``averaged.*`` (the best by validation accuracy, then
    loss; with a temperature fitted on the same carve unless the run was trained with
    ``--no-calibrate``) and ``average.json``. Returns the summary written to ``average.json``."""
    run = Path(run_dir)
    if not run.is_dir():
        raise UsageError(f"run folder not found: {run}")
    args = run_args(run)
    epochs = kept_epochs(run)
    if not epochs:
        raise UsageError(f"{run}: no epoch_NNN.safetensors; train with --keep-epochs to keep every epoch")
    if not lasts or min(lasts) < 1:
        raise UsageError("--last takes whole numbers >= 1")
    dev = pick_device(device)
    train_set, val_set = carve_run_data(args)
    if not len(val_set):
        raise UsageError(f"{run}: the run has no validation images (val_fraction 0); nothing to choose K on")
    rng = np.random.default_rng(args.seed)
    bn_idx = np.sort(rng.permutation(len(train_set))[:bn_images]) if 0 < bn_images < len(train_set) \
        else np.arange(len(train_set))
    bn_set = train_set.images[bn_idx]
    numbers = sorted(epochs)
    results = []
    for k in sorted(set(lasts)):
        if k > len(numbers):
            log(f"last {k}: skipped, the run kept only {len(numbers)} epochs")
            continue
        chosen = numbers[-k:]
        model, config = mean_weights([epochs[e] for e in chosen])
        recompute_bn(model, bn_set, config, dev)
        probs = predict_probs(model, val_set.images, config, dev, temperature=1.0)
        record = {"last": k, "epochs": chosen, **validation_metrics(probs, val_set, source_names(args))}
        config.metrics = {"averaged_epochs": chosen, **{n: v for n, v in record.items() if n.startswith("val_")}}
        config.recipe = {**config.recipe, "averaged": {"epochs": chosen, "bn_images": int(len(bn_idx))}}
        save_checkpoint(model.cpu(), config, run / f"avg_last{k}")
        results.append(record)
        log(f"last {k} (epochs {chosen[0]}-{chosen[-1]}): val accuracy {record['val_acc']:.4f}, "
            f"macro-F1 {record['val_macro_f1']:.4f}, loss {record['val_loss']:.4f}")
    if not results:
        raise UsageError(f"{run}: every --last is larger than the {len(numbers)} kept epochs")
    best = max(results, key=_selection_key)
    save_checkpoint(*load_checkpoint(run / f"avg_last{best['last']}"), run / "averaged")
    calibration = None
    if args.calibrate:
        # An epoch's checkpoint carries no fitted temperature: without this, a shipped
        # average would print uncalibrated probabilities (train fits best.* the same way).
        calibration = calibrate_checkpoint(run / "averaged", val_set, dev)
        log(f"calibration of averaged on the validation carve: temperature "
            f"{calibration['temperature']:.3f}, ECE {calibration['ece_before']:.4f} -> "
            f"{calibration['ece_after']:.4f}, NLL {calibration['nll_before']:.4f} -> "
            f"{calibration['nll_after']:.4f}" + int8_sentence(calibration))
    best_epoch = json.loads((run / "best.json").read_text()).get("metrics", {}) if (run / "best.json").is_file() else {}
    summary = {"run": str(run), "kept_epochs": numbers, "bn_images": int(len(bn_idx)),
               "val_images": len(val_set), "results": results, "chosen": best,
               "best_single_epoch": best_epoch, "calibration": calibration}
    atomic_write_text(run / "average.json", json.dumps(summary, indent=2) + "\n")
    return summary
