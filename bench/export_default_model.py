#!/usr/bin/env python3
"""Ship a trained run as the default model: fp16 safetensors + JSON config in fer_video/models/.

The test-split figures (from `fer-video evaluate ... --out RUN/eval_test`) are copied into
the config's `metrics`, next to the validation figures that chose the epoch.

    python bench/export_default_model.py RUN_DIR [--checkpoint best|averaged] [--name fer2013_resnet50]
        [--table TABLE.json]

``--table`` copies the test figures of ``bench/accuracy_table.py --json`` (its row for this
checkpoint) into ``metrics["public_test"]``.

Test figures are read from RUN/eval_test and RUN/eval_test_tta for `best` (written by the
training scripts), and from RUN/eval_test_NAME[_tta] for any checkpoint NAME
(bench/average_and_score.sh writes those) when present, and the test figure of the TTA mode
that bench/choose_tta.sh chose on validation (RUN/tta_NAME/test_MODE) when present.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--checkpoint", default="best", help="which checkpoint of the run (default: best)")
    ap.add_argument("--name", default="fer2013_resnet50")
    ap.add_argument("--table", type=Path, help="bench/accuracy_table.py --json output for this checkpoint")
    a = ap.parse_args()
    import torch

    from fer_video.checkpoint import load_checkpoint, save_checkpoint

    model, config = load_checkpoint(a.run / a.checkpoint)
    for key, subs in (("test", ("eval_test", f"eval_test_{a.checkpoint}")),
                      ("test_tta_flip", ("eval_test_tta", f"eval_test_{a.checkpoint}_tta"))):
        f = a.run / subs[1] / "metrics.json"
        if not f.is_file() and a.checkpoint == "best":
            f = a.run / subs[0] / "metrics.json"
        if f.is_file():
            m = json.loads(f.read_text())
            config.metrics[key] = {k: m[k] for k in ("accuracy", "clean_accuracy", "macro_f1", "clean_macro_f1",
                                                       "n", "clean_n") if k in m}
    # the test-time augmentation chosen on validation by bench/choose_tta.sh, when it ran
    for f in sorted((a.run / f"tta_{a.checkpoint}").glob("test_*/metrics.json")):
        m = json.loads(f.read_text())
        config.metrics[f"test_tta_{f.parent.name[len('test_'):]}_chosen_on_val"] = {
            k: m[k] for k in ("accuracy", "clean_accuracy", "macro_f1", "clean_macro_f1", "n", "clean_n") if k in m}
    # recipe fields that TrainArgs no longer has (runs started before they were removed)
    from dataclasses import fields

    from fer_video.recipe import TrainArgs
    known = {f.name for f in fields(TrainArgs)} | {"start"}
    config.recipe = {k: v for k, v in config.recipe.items() if k in known}
    # the recipe the run started with: before session 7, a resumed run wrote some fields
    # (backbone_lr_mult among them) with their defaults into later checkpoints' configs,
    # while training itself went on with the saved optimizer groups
    args_file = a.run / "args.json"
    if args_file.is_file():
        started = json.loads(args_file.read_text())
        config.recipe.update({k: v for k, v in started.items() if k in config.recipe and k != "start"})
    names = {"fer2013": "FER2013 (Kaggle ICML 2013 challenge), original labels",
             "fer2013+ferplus": "FER2013 images with the FER+ crowd votes (Barsoum et al. 2016) as soft labels",
             "fer2013+both": "FER2013 images, targets halfway between the original labels and the FER+ votes",
             "rafdb": "RAF-DB basic (Li, Deng and Du, CVPR 2017), official train split"}
    licences = {"fer2013": "FER2013: research / non-commercial use only",
                "fer2013+ferplus": "FER2013 images: research / non-commercial use only; FER+ label file: MIT",
                "fer2013+both": "FER2013 images: research / non-commercial use only; FER+ label file: MIT",
                "rafdb": "RAF-DB: non-commercial research only, not redistributable"}
    sources = [s["name"] for s in config.data.get("sources", [])] or ["fer2013"]
    config.data["name"] = "; ".join(names.get(n, n) for n in sources) + " (each minus a 10% validation carve)"
    config.data["licence"] = "research / non-commercial use only (" + "; ".join(licences.get(n, n) for n in sources) + ")"
    if a.table:
        rows = json.loads(a.table.read_text())
        row = next((r for r in rows if Path(r["model"]).resolve() == (a.run / f"{a.checkpoint}.safetensors").resolve()),
                   rows[0] if len(rows) == 1 else None)
        if row is None:
            sys.exit(f"{a.table}: no row for {a.run / a.checkpoint}")
        config.metrics["public_test"] = {k: v for k, v in row.items() if k != "model"}
    w, c = save_checkpoint(model, config, REPO / "fer_video" / "models" / a.name, dtype=torch.float16)
    print(f"wrote {w} ({w.stat().st_size / 1e6:.1f} MB) and {c}")
    print(json.dumps(config.metrics, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
