"""Training and evaluation: real CK+48 images, real ResNet50, real checkpoints."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import missing_shared
import torch
import torch.nn.functional as F

from fer_video.checkpoint import ModelConfig, load_checkpoint, save_checkpoint
from fer_video.data import FaceDataset, group_kfold, grouped_split, load_dataset
from fer_video.evaluate import evaluate_model, evaluate_probs
from fer_video.model import build_model
from fer_video.preprocess import to_tensor
from fer_video.train import TrainArgs, confusion_matrix, metrics_from_confusion, predict_probs, train

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ckplus(shared_dir) -> FaceDataset:
    path = shared_dir / "datasets" / "ckplus48"
    if not path.is_dir():
        missing_shared(f"CK+48 not found at {path}")
    return load_dataset(path)


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "cli.py"), *args], capture_output=True, text=True,
                          cwd=REPO, env={**os.environ, **(env or {})}, timeout=300)


def _batch_loss(model, data: FaceDataset, config: ModelConfig) -> float:
    torch.manual_seed(123)
    model.train()   # batch statistics: comparable before and after a few steps
    with torch.no_grad():
        x = to_tensor(data.images, config)
        return float(F.cross_entropy(model(x), torch.as_tensor(data.labels)))


def test_loss_falls_in_one_short_epoch(ckplus, tmp_path):
    rng = np.random.default_rng(0)
    subset = ckplus.subset(np.sort(rng.choice(len(ckplus), 32, replace=False)))
    args = TrainArgs(data="ckplus48", out=str(tmp_path / "run"), epochs=1, batch_size=8, lr=1e-4,
                     head="linear", warmup_epochs=0, label_smoothing=0.0, class_weighting="none", log_every=0,
                     face_frame="none")
    # Start from the exact initial weights the run will build (same seed), to measure the drop.
    torch.manual_seed(args.seed)
    config = ModelConfig(classes=subset.classes, head="linear")
    before = _batch_loss(build_model(config.to_json()), subset, config)
    # One epoch of 4 steps over the same 32 images (augmented); then the loss on them must fall.
    best = train(args, subset, subset.subset(np.arange(8)))
    model, cfg = load_checkpoint(tmp_path / "run" / "last")
    after = _batch_loss(model, subset, cfg)
    assert after < before, (before, after)
    assert best["epoch"] == 1
    # A checkpoint, the metrics log and the resume state are written every epoch.
    run = tmp_path / "run"
    for name in ("last.safetensors", "last.json", "best.safetensors", "best.json", "metrics.jsonl",
                 "train.log", "train_state.pt"):
        assert (run / name).is_file(), name
    saved = json.loads((run / "best.json").read_text())
    assert saved["classes"] == subset.classes and saved["input_size"] == 48
    assert saved["recipe"]["epochs"] == 1 and "val_acc" in saved["metrics"]
    # The validation loss recorded is the plain mean -log p(true class) of the saved weights
    # (before calibration: the temperature is fitted after the last epoch).
    val = subset.subset(np.arange(8))
    model, cfg = load_checkpoint(run / "best")   # afresh: _batch_loss ran it in train mode
    assert cfg.temperature > 0 and "calibration" in saved["metrics"]
    # int8 ranges, measured on half the carve (4 images) and compared on the other half; the
    # linear head is dequantised before its pooling, so no point named "head.conv"
    from fer_video.int8 import int8_engine

    if int8_engine() is not None:
        q = saved["metrics"]["calibration"]["int8"]
        assert (q["calibration_images"], q["compared_images"]) == (4, 4)
        assert 0.0 <= q["top_class_agreement"] <= 1.0
        assert saved["int8"]["temperature"] == q["temperature"] > 0
        assert saved["int8"]["images"] == 4 and "head.conv" not in saved["int8"]["points"]
        assert len(saved["int8"]["points"]) == 1 + 1 + 16 * 4 + 4      # input, stem, blocks, downsamples
    probs = predict_probs(model, val.images, cfg, torch.device("cpu"), temperature=1.0)
    expected = float(F.nll_loss(torch.log(torch.as_tensor(probs)), torch.as_tensor(val.labels)))
    assert saved["metrics"]["val_loss"] == pytest.approx(expected, rel=1e-4)


def test_best_epoch_ties_on_accuracy_go_to_the_lower_loss():
    from fer_video.train import _is_better
    best = {"epoch": 2, "val_acc": 1.0, "val_loss": 0.40, "train_loss": 0.9}
    assert _is_better({"epoch": 8, "val_acc": 1.0, "val_loss": 0.15, "train_loss": 0.5}, best)
    assert not _is_better({"epoch": 8, "val_acc": 1.0, "val_loss": 0.55, "train_loss": 0.5}, best)
    # Accuracy comes first: a lower loss never beats a higher accuracy.
    assert not _is_better({"epoch": 9, "val_acc": 0.97, "val_loss": 0.01, "train_loss": 0.1}, best)
    assert _is_better({"epoch": 9, "val_acc": 0.99, "val_loss": 0.01, "train_loss": 0.1},
                      {"epoch": 3, "val_acc": 0.98, "val_loss": 0.90, "train_loss": 0.1})
    # A best epoch saved before losses were recorded (a resumed old run) loses a tie.
    assert _is_better({"epoch": 5, "val_acc": 0.9, "val_loss": 2.0, "train_loss": 1.0},
                      {"epoch": 4, "val_acc": 0.9, "train_loss": 1.0})
    # No validation split: the lower training loss.
    assert _is_better({"epoch": 2, "train_loss": 0.5}, {"epoch": 1, "train_loss": 0.7})


def test_resume_continues_an_interrupted_run(ckplus, tmp_path):
    subset = ckplus.subset(np.arange(0, 981, 40))
    out = tmp_path / "run"
    train(TrainArgs(data="x", out=str(out), epochs=1, batch_size=8, log_every=0,
                    backbone_lr_mult=0.5, label_smoothing=0.0, warmup_epochs=0.5), subset, subset)
    # Pretend the run was asked for 2 epochs and stopped after the first: --resume does epoch 2 only.
    saved = json.loads((out / "args.json").read_text())
    saved["epochs"] = 2
    (out / "args.json").write_text(json.dumps(saved))
    with pytest.raises(Exception, match="--resume"):
        train(TrainArgs(data="x", out=str(out), epochs=2, batch_size=8, log_every=0), subset, subset)
    train(TrainArgs(data="x", out=str(out), epochs=2, batch_size=8, log_every=0, resume=True), subset, subset)
    epochs = [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2]
    assert "resumed at epoch 2/2" in (out / "train.log").read_text()
    # ... with the whole recipe it started with, not the defaults of the resuming command
    recipe = json.loads((out / "last.json").read_text())["recipe"]
    assert (recipe["backbone_lr_mult"], recipe["label_smoothing"], recipe["warmup_epochs"]) == (0.5, 0.0, 0.5)


def test_checkpoint_round_trip_reproduces_predictions(ckplus, tmp_path):
    torch.manual_seed(1)
    config = ModelConfig(classes=ckplus.classes, head="linear")
    model = build_model(config.to_json()).eval()
    images = ckplus.images[:20]
    before = predict_probs(model, images, config, torch.device("cpu"))
    save_checkpoint(model, config, tmp_path / "m")
    loaded, cfg = load_checkpoint(tmp_path / "m.safetensors")
    after = predict_probs(loaded, images, cfg, torch.device("cpu"))
    assert np.array_equal(before, after)
    assert cfg.head == "linear" and cfg.classes == ckplus.classes
    # The shipped format is fp16: predictions stay close, and the file is half the size.
    save_checkpoint(model, config, tmp_path / "m16", dtype=torch.float16)
    half, _ = load_checkpoint(tmp_path / "m16")
    assert np.abs(predict_probs(half, images, cfg, torch.device("cpu")) - before).max() < 1e-2
    assert (tmp_path / "m16.safetensors").stat().st_size < 0.6 * (tmp_path / "m.safetensors").stat().st_size


def test_grouped_splits_never_share_a_subject(ckplus):
    assert ckplus.grouped_by == "subject"
    folds = group_kfold(ckplus.groups, ckplus.labels, 10, seed=0)
    assert sorted(np.concatenate(folds).tolist()) == list(range(len(ckplus)))
    subjects = [set(ckplus.groups[f].tolist()) for f in folds]
    for i in range(10):
        for j in range(i + 1, 10):
            assert not subjects[i] & subjects[j]
    keep, held = grouped_split(ckplus.groups, ckplus.labels, 0.2, seed=0)
    assert not set(ckplus.groups[keep]) & set(ckplus.groups[held])
    assert 0.1 < len(held) / len(ckplus) < 0.3


def test_metrics_match_a_hand_computed_confusion_matrix():
    y_true = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    y_pred = np.array([0, 1, 0, 1, 1, 2, 0, 2, 1])
    cm = confusion_matrix(y_true, y_pred, 3)
    assert cm.tolist() == [[2, 1, 0], [0, 2, 0], [1, 1, 2]]
    m = metrics_from_confusion(cm, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(6 / 9)
    # precision a=2/3, b=2/4, c=2/2; recall a=2/3, b=2/2, c=2/4
    f1 = [2 / 3, 2 * 0.5 * 1 / 1.5, 2 * 1 * 0.5 / 1.5]
    assert m["per_class"]["b"]["precision"] == pytest.approx(0.5)
    assert m["per_class"]["c"]["recall"] == pytest.approx(0.5)
    assert m["macro_f1"] == pytest.approx(np.mean(f1))


def test_evaluation_on_shared_classes_only():
    # Model knows neutral (not in the data); data has contempt (not in the model).
    model_classes = ["angry", "happy", "neutral"]
    data = FaceDataset(np.zeros((4, 48, 48), np.uint8), np.array([0, 1, 2, 1]), ["angry", "contempt", "happy"],
                       np.arange(4), "synthetic")
    probs = np.array([[.6, .1, .3], [.1, .1, .8], [.1, .3, .6], [.2, .7, .1]])
    m = evaluate_probs(probs, data, model_classes)
    assert m["classes"] == ["angry", "happy"]
    assert m["left_out_data_classes"] == ["contempt"] and m["left_out_model_classes"] == ["neutral"]
    assert m["images_scored"] == 2                 # the two contempt images are skipped
    assert m["accuracy"] == 1.0                     # argmax over angry/happy: both right
    assert m["accuracy_all_classes"] == 0.5         # image 3's argmax is neutral: wrong


def test_cli_evaluate_writes_metrics_and_confusion(ckplus, tmp_path, shared_dir):
    torch.manual_seed(0)
    config = ModelConfig(classes=["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"])
    save_checkpoint(build_model(config.to_json()).eval(), config, tmp_path / "m")
    r = _cli("evaluate", "--model", str(tmp_path / "m.safetensors"), "--data",
             str(shared_dir / "datasets" / "ckplus48"), "--out", str(tmp_path / "ev"))
    assert r.returncode == 0, r.stderr
    assert "accuracy: " in r.stdout and "left out" in r.stdout and "contempt" in r.stdout
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["images_scored"] == 981 - 54    # contempt images are not scored
    rows = (tmp_path / "ev" / "confusion.csv").read_text().splitlines()
    assert len(rows) == 1 + 6 and sum(int(v) for row in rows[1:] for v in row.split(",")[1:]) == 981 - 54
    assert "<table>" in (tmp_path / "ev" / "confusion.html").read_text()


def test_imagenet_weights_offline_give_a_clear_message(tmp_path, shared_dir):
    # No network and an empty torch hub cache: one line naming the file and where to put it.
    env = {"TORCH_HOME": str(tmp_path / "torch"), "https_proxy": "http://127.0.0.1:9",
           "HTTPS_PROXY": "http://127.0.0.1:9"}
    r = _cli("train", "--data", str(shared_dir / "datasets" / "ckplus48"), "--out", str(tmp_path / "run"),
             "--weights", "imagenet", "--epochs", "1", env=env)
    assert r.returncode == 3, r.stderr
    err = r.stderr.strip()
    assert "Traceback" not in r.stderr and len(err.splitlines()) == 1
    assert "resnet50-" in err and str(tmp_path / "torch" / "hub" / "checkpoints") in err


@pytest.mark.parametrize("kind", ["missing", "corrupt"])
def test_bad_dataset_path_gives_a_clear_error(tmp_path, kind):
    data = tmp_path / "data"
    if kind == "corrupt":
        (data / "happy").mkdir(parents=True)
        (data / "happy" / "a.png").write_text("not an image")
    r = _cli("train", "--data", str(data), "--out", str(tmp_path / "run"), "--epochs", "1")
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert str(data) in r.stderr


def test_fine_tune_from_our_checkpoint_keeps_the_frozen_backbone(ckplus, tmp_path):
    # A 7-class "pretrained" checkpoint with other classes than CK+: backbone reused, new head.
    torch.manual_seed(3)
    src_cfg = ModelConfig(classes=["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"])
    src = build_model(src_cfg.to_json()).eval()
    save_checkpoint(src, src_cfg, tmp_path / "pre")
    subset = ckplus.subset(np.arange(0, 981, 40))
    args = TrainArgs(data="x", out=str(tmp_path / "ft"), epochs=1, freeze_epochs=1, batch_size=8, log_every=0,
                     weights=str(tmp_path / "pre.safetensors"))
    train(args, subset, subset)
    tuned, cfg = load_checkpoint(tmp_path / "ft" / "last")
    assert cfg.classes == ckplus.classes and cfg.recipe["start"]["head"] == "new"
    # Frozen for the only epoch: every backbone weight and BN statistic is the source's.
    for (k, a), (_, b) in zip(src.backbone.state_dict().items(), tuned.backbone.state_dict().items()):
        assert torch.equal(a, b), k
    assert not torch.equal(src.head.fc.weight[:1, :5], tuned.head.fc.weight[:1, :5])


def test_backbone_moves_from_the_imagenet_stem_to_the_small_stem(tmp_path):
    """The stems differ only in the (weightless) stem max-pool: an imagenet-stem checkpoint
    starts a small-stem run with the same backbone weights and a new head (other grid)."""
    from fer_video.train import _initial_model

    classes = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
    torch.manual_seed(4)
    src_cfg = ModelConfig(classes=classes, stem="imagenet")
    src = build_model(src_cfg.to_json()).eval()
    save_checkpoint(src, src_cfg, tmp_path / "pre")
    args = TrainArgs(data="x", out=str(tmp_path / "o"), weights=str(tmp_path / "pre.safetensors"))
    model, info = _initial_model(args, ModelConfig(classes=classes, stem="small"), torch.device("cpu"))
    assert info["source_stem"] == "imagenet" and info["head"] == "new"
    for (k, a), (_, b) in zip(src.backbone.state_dict().items(), model.backbone.state_dict().items()):
        assert torch.equal(a, b), k


def test_a_48_px_head_carries_over_to_64_px_but_not_to_96(tmp_path):
    """The seed head's shapes follow layer4's grid pooled to 2x2, not the input size: with
    the small stem 48 px (3x3) and 64 px (4x4) both give 2x2, so a 48-px checkpoint starts a
    64-px run with its head; at 96 px (6x6 -> 3x3) the Linear has another shape: a new head."""
    from fer_video.train import _initial_model

    classes = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
    torch.manual_seed(5)
    src_cfg = ModelConfig(classes=classes, stem="small", input_size=48)
    src = build_model(src_cfg.to_json()).eval()
    save_checkpoint(src, src_cfg, tmp_path / "pre")
    args = TrainArgs(data="x", out=str(tmp_path / "o"), weights=str(tmp_path / "pre.safetensors"))
    model, info = _initial_model(args, ModelConfig(classes=classes, stem="small", input_size=64), torch.device("cpu"))
    assert info["head"] == "kept"
    assert torch.equal(model.head.fc.weight, src.head.fc.weight)
    _, info = _initial_model(args, ModelConfig(classes=classes, stem="small", input_size=96), torch.device("cpu"))
    assert info["head"] == "new"


# Kaggle's published coding of fer2013.csv's `emotion` column (written out here on its own,
# not taken from the loader, so a wrong mapping in the loader fails this test).
KAGGLE_CODES = {0: "angry", 1: "disgust", 2: "fear", 3: "happy", 4: "sad", 5: "surprise", 6: "neutral"}


def _write_kaggle_csv(path: Path, rows: list[tuple[int, np.ndarray, str]]) -> None:
    lines = ["emotion,pixels,Usage"]
    lines += [f"{code},{' '.join(map(str, img.ravel()))},{usage}" for code, img, usage in rows]
    path.write_text("\n".join(lines) + "\n")


def test_kaggle_csv_maps_its_emotion_codes_and_flags_test_images_seen_in_train(shared_dir, tmp_path):
    fer = shared_dir / "datasets" / "fer2013"
    if not (fer / "train.npz").is_file():
        missing_shared(f"FER2013 not found at {fer}")
    train_npz, test_npz = load_dataset(fer, "train"), load_dataset(fer, "test")
    code_of = {name: code for code, name in KAGGLE_CODES.items()}
    # two real images of every class from each split; the first test image repeats a train image
    # (the picked test images are not in train at all, by the npz's own flag)
    pick = lambda d, ok: [i for c in range(7) for i in np.flatnonzero((d.labels == c) & ok)[:2]]
    tr = pick(train_npz, np.ones(len(train_npz), bool))
    te = pick(test_npz, ~test_npz.extra["in_train"].astype(bool))
    rows = [(code_of[train_npz.classes[train_npz.labels[i]]], train_npz.images[i], "Training") for i in tr]
    rows.append((code_of["sad"], train_npz.images[tr[0]], "PublicTest"))
    rows += [(code_of[test_npz.classes[test_npz.labels[i]]], test_npz.images[i], "PrivateTest") for i in te]
    _write_kaggle_csv(tmp_path / "fer2013.csv", rows)

    train_csv = load_dataset(tmp_path, "train")
    assert train_csv.classes == train_npz.classes
    assert np.array_equal(train_csv.images, train_npz.images[tr])
    assert [train_csv.classes[l] for l in train_csv.labels] == [train_npz.classes[l] for l in train_npz.labels[tr]]
    test_csv = load_dataset(tmp_path / "fer2013.csv", "test")
    assert len(test_csv) == len(te) + 1
    assert test_csv.classes[test_csv.labels[0]] == "sad"
    assert [test_csv.classes[l] for l in test_csv.labels[1:]] == [test_npz.classes[l] for l in test_npz.labels[te]]
    # only the repeated image is flagged as seen in train
    assert test_csv.extra["in_train"].tolist() == [True] + [False] * len(te)
    assert test_csv.extra["usage"].tolist() == ["PublicTest"] + ["PrivateTest"] * len(te)
    # evaluate reports each Kaggle part of the test split; together they make the whole.
    r = evaluate_model(None, str(tmp_path / "fer2013.csv"), "test", device="cpu")
    parts = r["accuracy_by_usage"]
    assert {u: v["n"] for u, v in parts.items()} == {"PrivateTest": len(te), "PublicTest": 1}
    assert sum(v["accuracy"] * v["n"] for v in parts.values()) / r["n"] == pytest.approx(r["accuracy"])


@pytest.mark.parametrize("bad_row,message", [("7,{px},Training", "emotion '7'"),
                                             ("3,1 2 3,Training", "3 pixels")])
def test_bad_kaggle_csv_row_gives_a_one_line_error(tmp_path, bad_row, message):
    px = " ".join(["128"] * 48 * 48)
    (tmp_path / "fer2013.csv").write_text(f"emotion,pixels,Usage\n3,{px},Training\n{bad_row.format(px=px)}\n")
    r = _cli("train", "--data", str(tmp_path / "fer2013.csv"), "--out", str(tmp_path / "run"), "--epochs", "1")
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert message in r.stderr and "line 3" in r.stderr


def test_every_recipe_field_is_a_train_option_defined_once():
    """The train parser is built from TrainArgs: every field but data/out has its option, with
    the field's default, so the CLI cannot lag behind the recipe (--warmup-epochs once did)."""
    import argparse
    from dataclasses import MISSING, fields

    from fer_video import train_cli

    root = argparse.ArgumentParser()
    train_cli.register(root.add_subparsers())
    ns = root.parse_args(["train", "--out", "x", "--data", "d"])
    for f in fields(TrainArgs):
        if f.default is MISSING:
            continue
        assert hasattr(ns, f.name), f.name
        assert getattr(ns, f.name) == f.default, f.name
    ns = root.parse_args(["train", "--out", "x", "--data", "a", "--data", "b,labels=ferplus", "--warmup-epochs",
                          "0.5", "--no-calibrate", "--face-frame", "none"])
    assert ns.data == ["a", "b,labels=ferplus"] and ns.warmup_epochs == 0.5
    assert ns.calibrate is False and ns.face_frame == "none"
