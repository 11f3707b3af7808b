"""The benchmark scripts under bench/ stay runnable: shell syntax, --help, and the CV
comparison's arithmetic on hand-made summaries."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHELL = sorted((REPO / "bench").glob("*.sh"))
PYTHON = sorted((REPO / "bench").glob("*.py"))


@pytest.mark.parametrize("script", SHELL, ids=[p.name for p in SHELL])
def test_shell_scripts_parse(script):
    r = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("script", PYTHON, ids=[p.name for p in PYTHON])
def test_python_scripts_answer_help(script):
    r = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage:")


def _cv_summary(folder: Path, accs: list[float], seed: int = 0, head: str = "seed") -> Path:
    folder.mkdir(parents=True)
    per_fold = [{"fold": i + 1, "accuracy": a, "macro_f1": a, "n": 10} for i, a in enumerate(accs)]
    (folder / "metrics.json").write_text(json.dumps({
        "folds": len(accs), "data": "/x/ckplus48", "recipe": {"seed": seed, "head": head, "weights": "none"},
        "accuracy_mean": sum(accs) / len(accs), "accuracy_std": 0.0,
        "macro_f1_mean": 0.0, "macro_f1_std": 0.0, "per_fold": per_fold}))
    return folder


def test_compare_cv_pairs_folds(tmp_path):
    a = _cv_summary(tmp_path / "cv" / "a", [0.8, 0.9, 1.0])
    b = _cv_summary(tmp_path / "cv" / "b", [0.9, 0.9, 0.7], head="linear")
    r = subprocess.run([sys.executable, str(REPO / "bench" / "compare_cv.py"), str(a), str(b)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    # differences +0.1, 0, -0.3: mean -0.0667, sample std 0.2082
    assert "cv/b - cv/a: -0.0667 ± 0.2082 per fold; better on 1, equal on 1, worse on 1 of 3 folds" in r.stdout
    assert "cv/a: accuracy 0.9000 ± 0.1000" in r.stdout


def test_compare_cv_refuses_other_folds(tmp_path):
    a = _cv_summary(tmp_path / "a", [0.8, 0.9, 1.0])
    b = _cv_summary(tmp_path / "b", [0.8, 0.9, 1.0], seed=1)
    r = subprocess.run([sys.executable, str(REPO / "bench" / "compare_cv.py"), str(a), str(b)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "not the same folds" in r.stderr
