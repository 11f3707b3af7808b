"""Checkpoint averaging (`fer-video average`): real CK+48 images, a real 2-epoch run."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import cpu_flags_show_bf16, missing_shared

from fer_video.average import average_run
from fer_video.errors import UsageError
from fer_video.evaluate import evaluate_model
from fer_video.checkpoint import load_checkpoint
from fer_video.preprocess import to_tensor
from fer_video.train import TrainArgs, carve_run_data, predict_probs, train

REPO = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def kept_run(shared_dir, tmp_path_factory) -> tuple[Path, TrainArgs]:
    data = shared_dir / "datasets" / "ckplus48"
    if not data.is_dir():
        missing_shared(f"CK+48 not found at {data}")
    run = tmp_path_factory.mktemp("avg") / "run"
    args = TrainArgs(data=str(data), out=str(run), epochs=2, batch_size=16, max_images=48, lr=1e-3,
                     head="seed", warmup_epochs=0, log_every=0, keep_epochs=True)
    train(args)
    return run, args


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "cli.py"), *args], capture_output=True, text=True,
                          cwd=REPO, env=os.environ, timeout=300)


def test_keep_epochs_keeps_every_epoch(kept_run):
    run, _ = kept_run
    assert sorted(p.name for p in run.glob("epoch_*")) == [
        "epoch_001.json", "epoch_001.safetensors", "epoch_002.json", "epoch_002.safetensors"]
    assert json.loads((run / "epoch_001.json").read_text())["metrics"]["epoch"] == 1
    # The last epoch's copy is the last checkpoint.
    assert (run / "epoch_002.safetensors").read_bytes() == (run / "last.safetensors").read_bytes()
    # Autocast (the default) runs only on a CPU with bf16 in hardware, read here from Linux's
    # CPU flags: where oneDNN only emulates bf16 (twice as slow) the run says it trains in fp32.
    native = cpu_flags_show_bf16()
    if native is not None:
        assert ("autocast off: this CPU has no bfloat16 in hardware" in
                (run / "train.log").read_text()) == (not native)


def test_average_is_the_mean_of_the_weights_with_batch_norm_recomputed(kept_run):
    run, args = kept_run
    summary = average_run(run, [1, 2], bn_images=0, device="cpu", log=lambda *_: None)
    e1, _ = load_checkpoint(run / "epoch_001")
    e2, _ = load_checkpoint(run / "epoch_002")
    avg1, _ = load_checkpoint(run / "avg_last1")
    avg2, cfg = load_checkpoint(run / "avg_last2")
    s1, s2 = e1.state_dict(), e2.state_dict()
    # Trainable weights: the plain mean (last 1 = the last epoch itself).
    for name, p in avg2.named_parameters():
        assert torch.allclose(p.double(), (s1[name].double() + s2[name].double()) / 2, atol=1e-6), name
    for name, p in avg1.named_parameters():
        assert torch.equal(p, s2[name]), name
    # Batch-norm statistics come from the run's own training images (one batch of all 48 here),
    # not from either epoch: the first BN layer's are conv1's per-channel mean and variance.
    train_set, val_set = carve_run_data(args)
    assert len(train_set) == 48 and summary["bn_images"] == 48
    with torch.no_grad():
        c = avg2.backbone[0](to_tensor(train_set.images, cfg))
    bn = avg2.backbone[1]
    assert torch.allclose(bn.running_mean, c.mean((0, 2, 3)), atol=1e-4)
    assert torch.allclose(bn.running_var, c.var((0, 2, 3), unbiased=True), rtol=1e-3, atol=1e-4)
    assert not torch.allclose(bn.running_mean, s2["backbone.1.running_mean"], atol=1e-4)
    # The recorded validation figures are those of the saved checkpoint on the run's validation carve.
    probs = predict_probs(avg2, val_set.images, cfg, CPU)
    by_k = {r["last"]: r for r in summary["results"]}
    assert by_k[2]["val_acc"] == pytest.approx(float((probs.argmax(1) == val_set.labels).mean()))
    assert cfg.metrics["val_acc"] == by_k[2]["val_acc"] and cfg.metrics["averaged_epochs"] == [1, 2]
    assert cfg.recipe["averaged"] == {"epochs": [1, 2], "bn_images": 48}
    # averaged.* is the K with the best validation accuracy (ties: the lower loss).
    chosen = max(summary["results"], key=lambda r: (r["val_acc"], -r["val_loss"]))
    assert summary["chosen"]["last"] == chosen["last"]
    averaged, _ = load_checkpoint(run / "averaged")
    ref, _ = load_checkpoint(run / f"avg_last{chosen['last']}")
    for (name, p), q in zip(averaged.state_dict().items(), ref.state_dict().values()):
        assert torch.equal(p, q), name
    saved = json.loads((run / "average.json").read_text())
    assert saved["chosen"]["last"] == chosen["last"]
    # averaged.* carries a temperature fitted on the validation carve, as train's best.* does;
    # the NLL is convex in 1/T, so the fitted T is no worse than T = 1 on that carve.
    cal = summary["calibration"]
    flat = lambda c: {k: v for k, v in c.items() if k != "int8"}   # noqa: E731  (approx: flat dicts only)
    assert flat(saved["calibration"]) == pytest.approx(flat(cal))
    assert saved["calibration"].get("int8") == cal.get("int8")      # int8 ranges' comparison, where it runs
    cfg_avg = json.loads((run / "averaged.json").read_text())
    assert cfg_avg["temperature"] == cal["temperature"] != 1.0
    assert cfg_avg["metrics"]["calibration"]["val_images"] == len(carve_run_data(args)[1])
    assert cal["nll_after"] <= cal["nll_before"] + 1e-9


def test_cli_average_prints_the_choice_and_rejects_runs_without_kept_epochs(kept_run, tmp_path):
    run, _ = kept_run
    r = _cli("average", str(run), "--last", "1", "5", "--bn-images", "16", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert "last 5: skipped, the run kept only 2 epochs" in r.stdout
    assert "chosen: the mean of epochs 2-2 (last 1), val accuracy" in r.stdout
    # A run without per-epoch checkpoints, and a folder that is not a run: one line, exit 2.
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "args.json").write_text((run / "args.json").read_text())
    for path, message in ((bare, "train with --keep-epochs"), (tmp_path / "nothing", "run folder not found")):
        r = _cli("average", str(path))
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1


def test_evaluate_split_val_is_the_run_own_validation_carve(kept_run, shared_dir):
    run, args = kept_run
    best = json.loads((run / "best.json").read_text())["metrics"]
    # fp32, as train's validation scores it (bf16 moves near-ties of this 48-image model)
    r = evaluate_model(str(run / "best.safetensors"), args.data, split="val", device="cpu", precision="fp32")
    _, val_set = carve_run_data(args)
    assert r["split"] == "val" and r["n"] == len(val_set) == json.loads((run / "best.json").read_text())["data"]["val_images"]
    assert r["accuracy"] == pytest.approx(best["val_acc"], abs=1e-9)
    # A checkpoint trained on other data: its recipe's carve of this data is not its validation set.
    fer = json.loads((REPO / "fer_video" / "models" / "fer2013_resnet50.json").read_text())
    assert fer["data"]["val_images"] != len(val_set)
    with pytest.raises(UsageError, match="not the data this checkpoint was trained on"):
        evaluate_model(None, args.data, split="val", device="cpu")


def test_evaluate_cli_val_split_with_tta(kept_run):
    run, args = kept_run
    r = _cli("evaluate", "--model", str(run / "best.safetensors"), "--data", args.data, "--split", "val",
             "--tta", "tencrop")
    assert r.returncode == 0, r.stderr
    assert "(val, " in r.stdout and "accuracy: " in r.stdout
    bad = _cli("evaluate", "--model", str(run / "best.safetensors"), "--data", args.data, "--tta", "sixcrop")
    assert bad.returncode == 2 and "invalid choice: 'sixcrop'" in bad.stderr
    cv = _cli("evaluate", "--data", args.data, "--folds", "2", "--tta", "flip", "--out", str(run.parent / "cv"))
    assert cv.returncode == 2 and len(cv.stderr.strip().splitlines()) == 1, cv.stderr
    assert "not to --folds" in cv.stderr and not (run.parent / "cv").exists()
    # --split val without --data: the carve of the sources the recipe names, the same images
    own = _cli("evaluate", "--model", str(run / "best.safetensors"), "--split", "val", "--tta", "tencrop")
    assert own.returncode == 0, own.stderr
    assert f"data: {args.data} (val, " in own.stdout
    assert [ln for ln in own.stdout.splitlines() if ln.startswith("accuracy: ")] == \
        [ln for ln in r.stdout.splitlines() if ln.startswith("accuracy: ")]
    missing = _cli("evaluate", "--model", str(run / "best.safetensors"))
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1
    assert "--data is required" in missing.stderr


def test_calibrate_cli_measures_int8_ranges_that_evaluate_then_runs_on(kept_run, shared_dir, tmp_path):
    """`fer-video calibrate` on a copy of a real run's epoch: the temperature and the int8
    ranges land in its JSON, and `evaluate --precision int8` runs on them."""
    import re
    import shutil

    from fer_video.int8 import int8_engine

    run, args = kept_run
    for ext in ("safetensors", "json"):
        shutil.copy(run / f"epoch_001.{ext}", tmp_path / f"e1.{ext}")
    r = _cli("calibrate", "--model", str(tmp_path / "e1.safetensors"), "--device", "cpu")
    assert r.returncode == 0, r.stderr
    saved = json.loads((tmp_path / "e1.json").read_text())
    n_val = len(carve_run_data(args)[1])
    assert re.search(rf"^temperature [0-9.]+ on {n_val} validation images: ECE ", r.stdout, re.M)
    assert saved["temperature"] == pytest.approx(saved["metrics"]["calibration"]["temperature"])
    if int8_engine() is None:
        assert "int8" not in r.stdout and not saved["int8"]
        return
    half = n_val // 2
    assert f"int8 ranges from {half} images" in r.stdout and f"of the other {n_val - half} " in r.stdout
    assert saved["int8"]["images"] == half and len(saved["int8"]["points"]) == 71
    e = _cli("evaluate", "--model", str(tmp_path / "e1.safetensors"), "--data", args.data, "--device", "cpu",
             "--precision", "int8")
    assert e.returncode == 0, e.stderr
    assert "precision: int8" in e.stdout and re.search(r"^accuracy: [0-9.]+$", e.stdout, re.M)
