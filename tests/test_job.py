"""The per-input job of every executor: reuse a complete report, else analyse and write it."""
from __future__ import annotations

import json
import pickle

import pytest

from fer_video.job import JobResult, run_job

pytestmark = pytest.mark.slow


def _run(*args, **kwargs):
    """run_job's JobResult as (row, reused)."""
    result = run_job(*args, **kwargs)
    assert isinstance(result, JobResult) and result.ok == (result.row.status == "ok")
    return result.row, result.reused


def test_run_job_skips_complete_and_is_picklable(samples, settings_for, tmp_path):
    settings = settings_for(fps=2.0)
    assert pickle.loads(pickle.dumps(settings)) == settings
    assert pickle.loads(pickle.dumps(run_job)) is run_job
    row, skipped = _run(samples / "pyfeat_single_face.mp4", tmp_path, settings)
    assert not skipped
    assert row.status == "ok" and row.n_faces == 1 and row.dominant.startswith("1:")
    assert row.report == "pyfeat_single_face/pyfeat_single_face.html"
    json_path = tmp_path / "pyfeat_single_face" / "pyfeat_single_face.json"
    before = json_path.stat().st_mtime_ns
    again, skipped = _run(samples / "pyfeat_single_face.mp4", tmp_path, settings)
    assert skipped and again.dominant == row.dominant and again.n_faces == 1
    assert json_path.stat().st_mtime_ns == before
    redo, skipped = _run(samples / "pyfeat_single_face.mp4", tmp_path, settings, overwrite=True)
    assert not skipped and json_path.stat().st_mtime_ns != before
    # a report made with other result settings, or another model, is redone, not reused
    _, skipped = _run(samples / "pyfeat_single_face.mp4", tmp_path, settings_for(fps=3.0))
    assert not skipped
    assert json.loads(json_path.read_text())["settings"]["fps"] == 3.0
    _, skipped = _run(samples / "pyfeat_single_face.mp4", tmp_path, settings_for(fps=3.0, batch_size=4))
    assert skipped   # batch sizes change speed, not results
    # test-time augmentation changes the probabilities: redone; a report from before the
    # setting existed (no "tta" in its settings) was made without it, so it is reused
    _, skipped = _run(samples / "pyfeat_single_face.mp4", tmp_path, settings_for(fps=3.0, tta="flip"))
    assert not skipped and json.loads(json_path.read_text())["settings"]["tta"] == "flip"
    _, skipped = _run(samples / "pyfeat_single_face.mp4", tmp_path, settings_for(fps=3.0))
    assert not skipped
    obj = json.loads(json_path.read_text())
    del obj["settings"]["tta"]
    json_path.write_text(json.dumps(obj))
    _, skipped = _run(samples / "pyfeat_single_face.mp4", tmp_path, settings_for(fps=3.0))
    assert skipped
    obj = json.loads(json_path.read_text())
    obj["model"]["sha256"] = "0" * 64
    json_path.write_text(json.dumps(obj))
    _, skipped = _run(samples / "pyfeat_single_face.mp4", tmp_path, settings_for(fps=3.0))
    assert not skipped and json.loads(json_path.read_text())["model"]["sha256"] != "0" * 64
    # another file under the same name is analysed again, not skipped
    other = tmp_path / "in" / "pyfeat_single_face.mp4"
    other.parent.mkdir()
    other.write_bytes((samples / "pyfeat_no_face.mp4").read_bytes())
    changed, skipped = _run(other, tmp_path, settings)
    assert not skipped and changed.n_faces == 0
    bad, _ = _run(samples / "nope.mp4", tmp_path, settings)
    assert bad.status == "failed" and bad.reason


def test_a_report_made_in_other_arithmetic_is_redone(samples, settings_for, tmp_path):
    """Settings match as written (`--precision auto`), but auto became another arithmetic
    on the machine that made the report (bf16 on one CPU, fp32 on another): redone. A
    report made before `model.backend` was recorded counts as torch."""
    from fer_video.job import arithmetic

    clip = samples / "pyfeat_single_face.mp4"
    settings = settings_for(fps=2.0)
    here = arithmetic(settings)
    assert here["backend"] == "torch" and here["precision"] in ("bf16", "fp32") and here["tta"] == "none"
    from fer_video.job import load_classifier

    c = load_classifier(settings)                     # what the classifier itself resolves
    assert here == {"backend": c.backend, "precision": c.precision, "tta": c.tta}
    _, skipped = _run(clip, tmp_path, settings)
    assert not skipped
    json_path = tmp_path / "pyfeat_single_face" / "pyfeat_single_face.json"
    obj = json.loads(json_path.read_text())
    assert {k: obj["model"][k] for k in here} == here
    del obj["model"]["backend"]
    json_path.write_text(json.dumps(obj))
    _, skipped = _run(clip, tmp_path, settings)
    assert skipped
    obj["model"]["precision"] = "fp32" if here["precision"] == "bf16" else "bf16"
    json_path.write_text(json.dumps(obj))
    _, skipped = _run(clip, tmp_path, settings)
    assert not skipped and json.loads(json_path.read_text())["model"]["precision"] == here["precision"]
    # the ONNX backend's auto is fp32 wherever it runs: its report is reused as made
    from fer_video.settings import Settings

    onnx = Settings(fps=2.0, backend="onnx")             # the shipped model, which has its graphs
    assert arithmetic(onnx) == {"backend": "onnx", "precision": "fp32", "tta": "none"}
    _, skipped = _run(clip, tmp_path, onnx)
    assert not skipped
    _, skipped = _run(clip, tmp_path, onnx)
    assert skipped


def test_a_rerun_that_reuses_its_report_never_imports_torch(samples, tmp_path):
    """Learning what `--precision auto` runs as here takes Linux's CPU flags, not torch: a
    rerun with nothing to do stays quick (0.22 s against 1.49 with torch imported)."""
    import subprocess
    import sys

    probe = ("import sys, atexit; atexit.register(lambda: print('torch imported:', 'torch' in sys.modules, "
             "file=sys.stderr)); sys.argv = ['fer-video'] + sys.argv[1:]; from fer_video.cli import run; run()")
    cmd = [sys.executable, "-c", probe, "analyze", str(samples / "pyfeat_single_face.mp4"), "--out", str(tmp_path), "--quiet"]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0 and first.stderr.strip().splitlines()[-1] == "torch imported: True", first.stderr
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert again.stderr.strip().splitlines()[-1] == "torch imported: False"
    report = json.loads(next(tmp_path.glob("*/*.json")).read_text())
    assert report["model"]["backend"] == "torch"
