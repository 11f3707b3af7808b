"""`fer-video train`, `evaluate` and `average` sub-commands (registered by fer_video.cli)."""
from __future__ import annotations

import argparse
import json
from dataclasses import fields
from pathlib import Path

from .errors import EXIT_OK
from .recipe import PRECISIONS, TTA_MODES

TRAIN_EPILOG = """examples:
  fer-video train --data ../shared/datasets/fer2013 --out runs/fer2013 --epochs 30
  fer-video train --data ../shared/datasets/ckplus48 --out runs/ckplus \\
      --weights runs/fer2013/best.safetensors --freeze-epochs 2 --epochs 20 --lr 1e-3
  fer-video train --out runs/fer2013 --resume          # continue an interrupted run

  fer-video train --data ../shared/datasets/fer2013,labels=ferplus --data ../shared/datasets/rafdb \\
      --weights fer_video/models/fer2013_resnet50.safetensors --out runs/mix --epochs 8

DATASET: a folder with one sub-folder per class (optional MANIFEST.csv with a `subject`
column for grouped splits, or a `split` column for fixed train/test splits such as RAF-DB's),
a folder with FER2013 train.npz/test.npz, or Kaggle's fer2013.csv. Several --data sources
train together: ",labels=ferplus" takes FER2013's FER+ votes as soft targets, ",ferplus=F"
blends a share F of them into the original labels (same images and carve), ",weight=W"
sets a source's share of each epoch's draws (default: in proportion to its size). Each
source keeps its own grouped validation carve; validation accuracy is their mean.
The best epoch has the highest validation accuracy (ties: the lower validation loss), on a
validation split carved from the training data (grouped by subject, or by duplicate image),
never on a test split.
"""

EVAL_EPILOG = """examples:
  fer-video evaluate --data ../shared/datasets/fer2013            # the shipped model, FER2013 test
  fer-video evaluate --model runs/x/best.safetensors --data ../shared/datasets/ckplus48 --out eval/
  fer-video evaluate --data ../shared/datasets/ckplus48 --folds 10 --weights runs/fer2013/best.safetensors \\
      --epochs 20 --out cv/ckplus_pretrained       # subject-grouped 10-fold cross-validation of a recipe

FER2013 test results print `accuracy: X` (all 7,178 test images), `clean accuracy: X`
(without the test images that are pixel-identical to a train image) and the accuracy on
each Kaggle part of the test split (PublicTest, PrivateTest; published figures often use one).
  fer-video evaluate --model runs/x/best.safetensors --data ../shared/datasets/fer2013 --split val --tta tencrop
scores the checkpoint's own validation carve: choose --tta there, not on the test split.
"""


AVERAGE_DESCRIPTION = """Average the weights of a run's last K epochs (kept by train --keep-epochs),
recompute batch-norm statistics on the run's training images, and score each K on the run's
validation carve (never a test split). Writes RUN/avg_lastK.* per K, RUN/averaged.* (the K
with the best validation accuracy, ties: lower loss) and RUN/average.json."""

AVERAGE_EPILOG = """examples:
  fer-video train --data ../shared/datasets/fer2013 --out runs/fer2013 --epochs 40 --keep-epochs
  fer-video average runs/fer2013 --last 5 10 20
  fer-video evaluate --model runs/fer2013/averaged.safetensors --data ../shared/datasets/fer2013
"""


def _add_recipe_args(p: argparse.ArgumentParser, *, require_data: bool, many: bool = False) -> None:
    """--data, then one option per recipe field (fer_video.recipe.TrainArgs: written once there)."""
    from .recipe import add_recipe_options

    if many:
        p.add_argument("--data", action="append", metavar="PATH[,labels=ferplus|both][,ferplus=F][,weight=W]",
                       help="a training source (repeat for several; see below)")
    else:
        p.add_argument("--data", required=require_data, help="dataset path (see below)")
    add_recipe_options(p, train=many)


def _train_args(ns: argparse.Namespace, out: str):
    from .recipe import TrainArgs

    names = {f.name for f in fields(TrainArgs)}
    kw = {k: v for k, v in vars(ns).items() if k in names and v is not None}
    kw["out"] = out
    return TrainArgs(**kw)


def _run_train(ns: argparse.Namespace) -> int:
    from .errors import UsageError
    from .train import train

    if ns.resume and not ns.data:
        saved = Path(ns.out) / "args.json"
        if not saved.is_file():
            raise UsageError(f"--resume: no run to resume in {ns.out}")
        ns.data = json.loads(saved.read_text())["data"]
    if not ns.data:
        raise UsageError("--data is required")
    args = _train_args(ns, ns.out)
    args.resume = ns.resume
    best = train(args)
    print(f"best epoch {best['epoch']}: val accuracy {best.get('val_acc', float('nan')):.4f}; "
          f"checkpoint {Path(ns.out) / 'best.safetensors'}")
    return EXIT_OK


def _run_evaluate(ns: argparse.Namespace) -> int:
    from .errors import UsageError
    from .evaluate import cross_validate, evaluate_model, write_outputs

    if ns.folds and (ns.tta != "none" or ns.tta_flip or ns.split != "test"):
        raise UsageError("--tta and --split apply to scoring one checkpoint, not to --folds "
                         "(each fold scores its held-out subjects without test-time augmentation)")
    if not ns.data and (ns.folds or ns.split != "val"):
        raise UsageError("--data is required (with --split val it may be left out: the checkpoint's "
                         "validation carve of the sources its recipe names)")
    if ns.folds:
        args = _train_args(ns, ns.out or "runs/cv")
        if ns.model and args.weights == "none":
            args.weights = ns.model
        summary = cross_validate(args, ns.folds, ns.out or "runs/cv")
        print(f"{ns.folds}-fold cross-validation (grouped by {summary['grouped_by']}): "
              f"accuracy {summary['accuracy_mean']:.4f} ± {summary['accuracy_std']:.4f}, "
              f"macro-F1 {summary['macro_f1_mean']:.4f} ± {summary['macro_f1_std']:.4f}")
        write_outputs(summary, ns.out or "runs/cv")
        return EXIT_OK
    tta = "flip" if ns.tta_flip else ns.tta
    result = evaluate_model(ns.model, ns.data, split=ns.split, device=ns.device, tta=tta, precision=ns.precision)
    print(f"model: {result['model']}")
    print(f"precision: {result['precision']}")
    print(f"data: {result['data']} ({result['split']}, {result['images_scored']} images scored)")
    if result["left_out_data_classes"] or result["left_out_model_classes"]:
        print(f"shared classes: {', '.join(result['classes'])}; left out: data {result['left_out_data_classes']}, "
              f"model {result['left_out_model_classes']} ({result['images_left_out']} images skipped)")
    print(f"accuracy: {result['accuracy']:.4f}")
    if "clean_accuracy" in result:
        print(f"clean accuracy: {result['clean_accuracy']:.4f} (n={result['clean_n']})")
    if "accuracy_by_usage" in result:
        print("accuracy by usage: " + ", ".join(f"{u} {v['accuracy']:.4f} (n={v['n']})"
                                                for u, v in result["accuracy_by_usage"].items()))
    if "ferplus_accuracy" in result:
        print(f"ferplus accuracy: {result['ferplus_accuracy']:.4f} (n={result['ferplus_n']}; "
              f"{result['ferplus_left_out']} images without a clear FER+ majority among these classes left out)")
    print(f"macro-F1: {result['macro_f1']:.4f}")
    cal = (f" (uncalibrated {result['ece_uncalibrated']:.4f}; temperature {result['temperature']:.3f})"
           if "ece_uncalibrated" in result else " (temperature 1: uncalibrated)")
    print(f"ECE: {result['ece']:.4f}{cal}")
    if "ferplus_ece" in result:
        print(f"ferplus ECE: {result['ferplus_ece']:.4f} (uncalibrated {result['ferplus_ece_uncalibrated']:.4f})")
    for c, pc in result["per_class"].items():
        print(f"  {c:<10} precision {pc['precision']:.4f} recall {pc['recall']:.4f} (n={pc['support']})")
    if ns.out:
        for p in write_outputs(result, ns.out):
            print(f"wrote {p}")
    return EXIT_OK


def _run_average(ns: argparse.Namespace) -> int:
    from .average import average_run

    summary = average_run(ns.run, ns.last, bn_images=ns.bn_images, device=ns.device)
    chosen, single = summary["chosen"], summary["best_single_epoch"]
    print(f"chosen: the mean of epochs {chosen['epochs'][0]}-{chosen['epochs'][-1]} (last {chosen['last']}), "
          f"val accuracy {chosen['val_acc']:.4f} "
          f"(the run's best single epoch: {single.get('val_acc', float('nan')):.4f}, epoch {single.get('epoch', '?')}); "
          f"checkpoint {Path(ns.run) / 'averaged.safetensors'}")
    return EXIT_OK


def _run_calibrate(ns: argparse.Namespace) -> int:
    from .checkpoint import load_config
    from .evaluate import _resolve_model, checkpoint_val_split
    from .train import calibrate_checkpoint, int8_sentence, pick_device

    path = _resolve_model(ns.model)
    val = checkpoint_val_split(load_config(path), ns.data)
    cal = calibrate_checkpoint(path, val, pick_device(ns.device))
    print(f"temperature {cal['temperature']:.4f} on {cal['val_images']} validation images: "
          f"ECE {cal['ece_before']:.4f} -> {cal['ece_after']:.4f}, NLL {cal['nll_before']:.4f} -> {cal['nll_after']:.4f}"
          f"{int8_sentence(cal)}; written to {Path(path).with_suffix('.json')}")
    return EXIT_OK


def register(subparsers) -> None:
    """Add the `train`, `evaluate` and `average` sub-parsers; each sets ``func(args) -> exit code``."""
    fmt = argparse.RawDescriptionHelpFormatter
    t = subparsers.add_parser("train", help="fine-tune (or train) the ResNet50 emotion classifier",
                              description="Train the emotion classifier; a checkpoint every epoch, resumable.",
                              epilog=TRAIN_EPILOG, formatter_class=fmt)
    _add_recipe_args(t, require_data=False, many=True)
    t.add_argument("--out", required=True, help="run directory (log, metrics, checkpoints)")
    t.set_defaults(func=_run_train)

    a = subparsers.add_parser("average", help="average the weights of a run's last epochs (checkpoint averaging)",
                              description=AVERAGE_DESCRIPTION, epilog=AVERAGE_EPILOG, formatter_class=fmt)
    a.add_argument("run", metavar="RUN", help="a run folder made by fer-video train --keep-epochs")
    a.add_argument("--last", type=int, nargs="+", default=[5, 10], metavar="K",
                   help="average the last K kept epochs; several K are compared (default: 5 10)")
    a.add_argument("--bn-images", type=int, default=8192, metavar="N",
                   help="training images used to recompute batch-norm statistics (default: %(default)s; 0: all)")
    a.add_argument("--device", default="auto", help="auto | cpu | cuda (default: %(default)s)")
    a.set_defaults(func=_run_average)

    c = subparsers.add_parser("calibrate", help="fit a checkpoint's softmax temperature and int8 ranges on its "
                                                "validation carve",
                              description="Fit the temperature T of softmax(logits / T) that minimises the "
                                          "cross-entropy on the checkpoint's own validation carve (never a test "
                                          "split), measure the int8 activation ranges that --precision int8 "
                                          "needs on up to 1024 of its images (and compare int8 with fp32 on the "
                                          "rest), and store both in the checkpoint's JSON (train does this at "
                                          "the end).")
    c.add_argument("--model", required=True, help="checkpoint (.safetensors/.json or run folder)")
    c.add_argument("--data", help="the data it was trained on (default: the sources its recipe names)")
    c.add_argument("--device", default="auto", help="auto | cpu | cuda (default: %(default)s)")
    c.set_defaults(func=_run_calibrate)

    e = subparsers.add_parser("evaluate", help="score a checkpoint on a labelled face set, or cross-validate",
                              description="Accuracy, macro-F1, per-class precision/recall and the confusion matrix.",
                              epilog=EVAL_EPILOG, formatter_class=fmt)
    e.add_argument("--model", help="checkpoint (.safetensors/.json or run folder); default: the shipped model")
    e.add_argument("--out", help="write metrics.json, confusion.csv and confusion.html here")
    e.add_argument("--split", default="test", choices=["test", "train", "all", "val"],
                   help="val: the validation carve of --data that the checkpoint's recipe makes (the images "
                        "that chose its epoch; for choosing settings such as --tta) (default: %(default)s)")
    e.add_argument("--tta", default="none", choices=list(TTA_MODES),
                   help="test-time augmentation: average the softmax over the image and its mirror (flip) or "
                        "over 5 crops of 11/12 of the side and their mirrors (tencrop) (default: %(default)s)")
    e.add_argument("--tta-flip", action="store_true", help="same as --tta flip")
    e.add_argument("--precision", default="auto", choices=list(PRECISIONS),
                   help="the classifier's arithmetic, as in analyze: auto takes bf16 on a CPU with native "
                        "bfloat16, else fp32; int8 needs a calibrated checkpoint (default: %(default)s)")
    e.add_argument("--folds", type=int, default=0,
                   help="K: subject-grouped K-fold cross-validation of the training recipe below")
    _add_recipe_args(e, require_data=False)     # checked in _run_evaluate: --split val may omit it
    e.set_defaults(func=_run_evaluate)
