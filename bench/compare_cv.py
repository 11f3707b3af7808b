#!/usr/bin/env python3
"""Side by side, fold by fold: cross-validation runs of `fer-video evaluate --folds K` on the
same folds (same data, K and --seed), e.g. the arms of bench/ckplus_cv.sh.

    python bench/compare_cv.py runs/ckplus_cv/pretrained runs/ckplus_cv/scratch runs/ckplus_cv/linear

Prints per-fold accuracy for each run, each run's mean ± std (sample std over folds), and for
every run after the first its paired difference from the first: mean ± std of the per-fold
differences and how many folds it won, tied and lost. Folds are paired by number, and the
script refuses runs whose folds cannot be the same ones.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def load(run: Path) -> dict:
    path = run / "metrics.json" if run.is_dir() else run
    m = json.loads(path.read_text())
    if "per_fold" not in m:
        sys.exit(f"{path}: not a cross-validation summary (no per_fold)")
    folder = run if run.is_dir() else run.parent
    m["name"] = f"{folder.parent.name}/{folder.name}"
    return m


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path, help="CV output folders (or their metrics.json)")
    runs = [load(r) for r in ap.parse_args().runs]
    first = runs[0]
    key = lambda m: (Path(m["data"]).name, m["folds"], m["recipe"].get("seed"), [f["n"] for f in m["per_fold"]])
    for m in runs[1:]:
        if key(m) != key(first):
            sys.exit(f"{m['name']}: not the same folds as {first['name']} (data, K, seed or fold sizes differ)")
    accs = [np.array([f["accuracy"] for f in m["per_fold"]]) for m in runs]
    width = max(10, *(len(m["name"]) for m in runs))
    print("fold   n  " + "  ".join(f"{m['name']:>{width}}" for m in runs))
    for i, f in enumerate(first["per_fold"]):
        print(f"{f['fold']:>4} {f['n']:>3}  " + "  ".join(f"{a[i]:>{width}.4f}" for a in accs))
    for m, a in zip(runs, accs):
        print(f"{m['name']}: accuracy {a.mean():.4f} ± {a.std(ddof=1):.4f}, macro-F1 "
              f"{m['macro_f1_mean']:.4f} ± {m['macro_f1_std']:.4f} (head {m['recipe']['head']}, "
              f"weights {Path(str(m['recipe']['weights'])).name})")
    for m, a in zip(runs[1:], accs[1:]):
        d = a - accs[0]
        print(f"{m['name']} - {first['name']}: {d.mean():+.4f} ± {d.std(ddof=1):.4f} per fold; "
              f"better on {int((d > 0).sum())}, equal on {int((d == 0).sum())}, worse on {int((d < 0).sum())} "
              f"of {len(d)} folds")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
