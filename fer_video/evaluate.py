"""Evaluation of a checkpoint on a labelled face set, and subject-grouped cross-validation.

Outputs (``--out DIR``): ``metrics.json``, ``confusion.csv`` (rows = true class, columns =
predicted class, counts) and ``confusion.html`` (a self-contained heat-map table).
"""
from __future__ import annotations

import html
import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from .atomic import atomic_write_text
from .checkpoint import checkpoint_paths, default_model_path, file_sha256, load_checkpoint
from .data import FaceDataset, group_kfold, grouped_split, load_dataset
from .errors import SetupError, UsageError
from .predict import resolve_precision, temperature_for
from .train import (TrainArgs, carve_run_data, confusion_matrix, expected_calibration_error,
                    metrics_from_confusion, pick_device, predict_logits, predict_probs, prepare_dataset,
                    probs_from_logits, train)


def evaluate_probs(probs: np.ndarray, data: FaceDataset, model_classes: list[str]) -> dict:
    """Metrics for model probabilities on a dataset whose classes may differ from the model's.

    Only images whose class the model knows are scored ("shared classes"). ``accuracy`` takes
    the argmax over the shared classes only (a model class the data lacks, e.g. neutral on
    CK+, cannot be predicted); ``accuracy_all_classes`` takes the argmax over every model
    class, counting predictions of a class the data lacks as errors. When the classes are the
    same, both are equal. ``ece``: expected calibration error (15 bins) of the probabilities
    over the shared classes, renormalised to sum to 1.
    """
    shared = [c for c in model_classes if c in data.classes]
    if not shared:
        raise UsageError(f"the model's classes {model_classes} and the data's {data.classes} share none")
    left_out_data = [c for c in data.classes if c not in shared]
    left_out_model = [c for c in model_classes if c not in shared]
    data_to_shared = {data.classes.index(c): i for i, c in enumerate(shared)}
    keep = np.array([lbl in data_to_shared for lbl in data.labels], dtype=bool)
    y = np.array([data_to_shared[lbl] for lbl in data.labels[keep]], dtype=np.int64)
    cols = [model_classes.index(c) for c in shared]
    p = probs[keep]
    pred_shared = p[:, cols].argmax(1)
    m = metrics_from_confusion(confusion_matrix(y, pred_shared, len(shared)), shared)
    p_shared = p[:, cols] / np.clip(p[:, cols].sum(1, keepdims=True), 1e-12, None)
    pred_all = p.argmax(1)
    model_to_shared = {model_classes.index(c): i for i, c in enumerate(shared)}
    correct_all = np.array([model_to_shared.get(int(q), -1) == t for q, t in zip(pred_all, y)])
    m.update(
        accuracy_all_classes=float(correct_all.mean()) if len(y) else 0.0,
        classes=shared,
        confusion=confusion_matrix(y, pred_shared, len(shared)).tolist(),
        left_out_data_classes=left_out_data,
        left_out_model_classes=left_out_model,
        ece=expected_calibration_error(p_shared, y) if len(y) else 0.0,
        images_scored=int(keep.sum()),
        images_left_out=int((~keep).sum()),
    )
    return m


def _resolve_model(model: str | None) -> str:
    path = model or str(default_model_path())
    weights, cfg = checkpoint_paths(path)
    if not weights.is_file() or not cfg.is_file():
        raise SetupError(f"model checkpoint not found: {weights} (+ {cfg.name})")
    return str(weights)


def checkpoint_val_split(config, data_path: str | None) -> FaceDataset:
    """The validation carve that the checkpoint's recipe (``val_fraction``, ``seed``, its
    sources) makes of ``data_path``'s train split (``None``: the recipe's own ``data``): the
    images that picked its epoch, when ``data_path`` is the data it was trained on (checked
    by the carve's size). Settings such as test-time augmentation are chosen here, never on
    a test split."""
    from .recipe import recipe_args

    recipe = dict(config.recipe)
    if not recipe:
        raise UsageError("--split val: the checkpoint records no training recipe")
    data = recipe.get("data") if data_path is None else str(data_path)
    args = recipe_args(recipe, data=data, out="")
    _, val = carve_run_data(args)
    expected = config.data.get("val_images")
    if expected is None or expected != len(val):
        raise UsageError(f"--split val: {data} is not the data this checkpoint was trained on "
                         f"(its recipe's validation carve has {len(val)} images, the checkpoint's had {expected})")
    return val


def evaluate_model(model_path: str | None, data_path: str | None, split: str = "test", device: str = "auto",
                   tta: str = "none", batch_size: int = 256, precision: str = "auto") -> dict:
    """Evaluate a checkpoint on ``split`` ("test", "train", "all", or "val": the checkpoint's
    own validation carve) of a dataset. FER2013's test split also gets ``clean_accuracy``
    (without the images that duplicate train images) and the accuracy per Kaggle usage
    (PublicTest, PrivateTest)."""
    path = _resolve_model(model_path)
    dev = pick_device(device)
    model, config = load_checkpoint(path, dev)
    try:
        precision = resolve_precision(precision, dev)
        if precision == "int8":
            from .int8 import require_ranges

            require_ranges(config, path)
    except ValueError as exc:           # Int8Unavailable is one
        raise UsageError(str(exc)) from None
    if split == "val":
        data = checkpoint_val_split(config, data_path)
    else:
        try:
            data = load_dataset(data_path, split)
        except UsageError:
            if split != "test":
                raise
            data = load_dataset(data_path, "all")   # image folders have no test split: score everything
            split = "all"
    if split != "val":              # the val carve comes prepared; other splits in the model's frame
        data = prepare_dataset(data, config)
    from .int8 import Int8Unavailable

    try:
        logits = predict_logits(model, data.images, config, dev, batch_size=batch_size, tta=tta, precision=precision)
    except Int8Unavailable as exc:
        raise SetupError(str(exc)) from None
    temperature = temperature_for(config, precision)
    probs = probs_from_logits(logits, temperature)
    recipe_data = config.recipe.get("data") or []
    shown = str(data_path) if data_path is not None else \
        (recipe_data if isinstance(recipe_data, str) else " + ".join(map(str, recipe_data)))
    result = {"model": path, "model_sha256": file_sha256(path), "data": shown, "split": split,
              "tta": tta, "tta_flip": tta == "flip", "precision": precision, "temperature": temperature,
              **evaluate_probs(probs, data, config.classes)}
    result["probabilities"] = {"classes": list(config.classes), "labels": [data.classes[i] for i in data.labels],
                               "probs": probs}
    # The same probabilities before calibration, for the ECE before/after table.
    if temperature != 1.0:
        raw = probs_from_logits(logits, 1.0)
        result["ece_uncalibrated"] = evaluate_probs(raw, data, config.classes)["ece"]
    else:
        raw = probs
    fer_folder = None if data_path is None else Path(data_path) if Path(data_path).is_dir() else Path(data_path).parent
    if fer_folder is not None and split in ("test", "train") and "ferplus_majority" not in data.extra \
            and (fer_folder / "ferplus.npz").is_file() and (fer_folder / f"{split}.npz").is_file():
        from .data import ferplus_majority, ferplus_votes

        votes = ferplus_votes(fer_folder, split, len(data))
        data.extra["ferplus_majority"] = ferplus_majority(votes, data.classes)
    if "ferplus_majority" in data.extra:
        maj = np.asarray(data.extra["ferplus_majority"])
        has = maj >= 0
        fp = FaceDataset(data.images[has], maj[has], list(data.classes), data.groups[has], data.source)
        m_fp = evaluate_probs(probs[has], fp, config.classes)
        result.update(ferplus_accuracy=m_fp["accuracy"], ferplus_macro_f1=m_fp["macro_f1"], ferplus_n=m_fp["n"],
                      ferplus_left_out=int((~has).sum()), ferplus_ece=m_fp["ece"],
                      ferplus_ece_uncalibrated=evaluate_probs(raw[has], fp, config.classes)["ece"])
    if split == "test" and "in_train" in data.extra:
        clean = ~data.extra["in_train"].astype(bool)
        m_clean = evaluate_probs(probs[clean], data.subset(np.flatnonzero(clean)), config.classes)
        result["clean_accuracy"] = m_clean["accuracy"]
        result["clean_macro_f1"] = m_clean["macro_f1"]
        result["clean_n"] = m_clean["n"]
    if split == "test" and "usage" in data.extra:
        usage = np.asarray(data.extra["usage"]).astype(str)
        result["accuracy_by_usage"] = {}
        for u in sorted(set(usage.tolist())):
            idx = np.flatnonzero(usage == u)
            m_u = evaluate_probs(probs[idx], data.subset(idx), config.classes)
            result["accuracy_by_usage"][u] = {"accuracy": m_u["accuracy"], "n": m_u["n"]}
    return result


def cross_validate(args: TrainArgs, folds: int, out_dir: str | Path, log=print) -> dict:
    """Subject-grouped K-fold CV of a training recipe: per fold, train (picking the epoch on a
    grouped validation carve of the training folds) and score the held-out fold."""
    data = load_dataset(args.data, "all" if Path(args.data).is_dir() and not (Path(args.data) / "train.npz").exists()
                        else "train")
    out = Path(out_dir)
    fold_idx = group_kfold(data.groups, data.labels, folds, args.seed)
    results = []
    for f, test_idx in enumerate(fold_idx):
        fold_dir = out / f"fold{f + 1:02d}"
        done = fold_dir / "fold_metrics.json"
        if done.is_file():
            results.append(json.loads(done.read_text()))
            log(f"fold {f + 1}/{folds}: done before, accuracy {results[-1]['accuracy']:.4f}")
            continue
        train_idx = np.setdiff1d(np.arange(len(data)), test_idx)
        tr = data.subset(train_idx)
        keep, held = grouped_split(tr.groups, tr.labels, args.val_fraction, args.seed + f)
        fold_args = replace(args, out=str(fold_dir), resume=(fold_dir / "train_state.pt").is_file())
        train(fold_args, tr.subset(keep), tr.subset(held))
        dev = pick_device(args.device)
        model, config = load_checkpoint(fold_dir / "best", dev)
        test = data.subset(test_idx)
        m = evaluate_probs(predict_probs(model, test.images, config, dev), test, config.classes)
        m["fold"] = f + 1
        m["test_subjects"] = int(len(np.unique(test.groups)))
        atomic_write_text(done, json.dumps(m, indent=2) + "\n")
        results.append(m)
        log(f"fold {f + 1}/{folds}: accuracy {m['accuracy']:.4f} macro-F1 {m['macro_f1']:.4f} (n={m['n']})")
    accs = np.array([r["accuracy"] for r in results])
    f1s = np.array([r["macro_f1"] for r in results])
    summary = {"folds": folds, "data": args.data, "grouped_by": data.grouped_by,
               "recipe": {k: v for k, v in asdict(args).items() if k not in ("out", "resume")},
               "accuracy_mean": float(accs.mean()), "accuracy_std": float(accs.std(ddof=1)) if folds > 1 else 0.0,
               "macro_f1_mean": float(f1s.mean()), "macro_f1_std": float(f1s.std(ddof=1)) if folds > 1 else 0.0,
               "per_fold": [{"fold": r["fold"], "accuracy": r["accuracy"], "macro_f1": r["macro_f1"], "n": r["n"]}
                            for r in results]}
    return summary


def write_outputs(result: dict, out_dir: str | Path) -> list[Path]:
    """metrics.json, confusion.csv and confusion.html (when a confusion matrix is present)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "metrics.json"]
    preds = result.get("probabilities")
    result = {k: v for k, v in result.items() if k != "probabilities"}
    atomic_write_text(written[0], json.dumps(result, indent=2) + "\n")
    if preds is not None:
        lines = ["index,label," + ",".join(preds["classes"])]
        lines += [f"{i},{lbl}," + ",".join(f"{v:.6f}" for v in row)
                  for i, (lbl, row) in enumerate(zip(preds["labels"], preds["probs"]))]
        atomic_write_text(out / "predictions.csv", "\n".join(lines) + "\n")
        written.append(out / "predictions.csv")
    if "confusion" in result:
        classes, cm = result["classes"], np.array(result["confusion"])
        lines = ["true\\pred," + ",".join(classes)]
        lines += [f"{c}," + ",".join(str(int(v)) for v in row) for c, row in zip(classes, cm)]
        atomic_write_text(out / "confusion.csv", "\n".join(lines) + "\n")
        atomic_write_text(out / "confusion.html", confusion_html(classes, cm, result))
        written += [out / "confusion.csv", out / "confusion.html"]
    return written


def confusion_html(classes: list[str], cm: np.ndarray, result: dict) -> str:
    """Self-contained heat map: cell shade = share of the true class (row-normalised)."""
    rows = cm.sum(1, keepdims=True).clip(min=1)
    share = cm / rows
    head = "".join(f"<th>{html.escape(c)}</th>" for c in classes)
    body = []
    for c, counts, sh in zip(classes, cm, share):
        cells = "".join(
            f'<td style="background:rgba(37,99,235,{s:.3f});color:{"#fff" if s > .5 else "#111"}">'
            f"{int(n)}<br><small>{s:.0%}</small></td>" for n, s in zip(counts, sh))
        body.append(f"<tr><th>{html.escape(c)}</th>{cells}</tr>")
    title = f"accuracy {result.get('accuracy', 0):.4f} · macro-F1 {result.get('macro_f1', 0):.4f} · n={result.get('n', 0)}"
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Confusion matrix</title>
<style>body{{font:14px system-ui,sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.4em .7em;text-align:center}}</style></head><body>
<h1>Confusion matrix</h1><p>{html.escape(title)}</p><p>Rows: true class; columns: predicted class;
cell: count and share of the row.</p><table><tr><th>true \\ pred</th>{head}</tr>{''.join(body)}</table>
</body></html>"""
