"""One report folder on disk: paths, completeness, writing, the reuse rule, summary rows."""
from __future__ import annotations

import json
import os

import pytest

from fer_video import report_folder as folder


def test_reports_without_a_reuse_key_are_redone(tmp_path, samples, settings_for):
    """A report made before reuse keys existed (or by another RESULTS_VERSION) is not reused."""
    from fer_video.checkpoint import checkpoint_paths, file_sha256

    clip = tmp_path / "clip.mp4"
    clip.write_bytes((samples / "pyfeat_no_face.mp4").read_bytes())
    settings = settings_for(fps=1.0)
    identity = folder.input_identity(clip, "clip.mp4")
    obj = {"settings": {**settings.to_json(), "sample_step_s": 1.0},
           "model": {"sha256": file_sha256(checkpoint_paths(settings.model_path())[0])}}
    assert not folder.reusable(obj, identity, settings)
    obj["reuse_key"] = {"results_version": folder.RESULTS_VERSION - 1, "input": identity}
    assert not folder.reusable(obj, identity, settings)
    obj["reuse_key"] = folder.reuse_key(identity)
    assert folder.reusable(obj, identity, settings)
    os.utime(clip, ns=(1, 1))
    assert not folder.reusable(obj, folder.input_identity(clip, "clip.mp4"), settings)


@pytest.mark.slow
def test_a_fresh_and_a_reused_report_give_the_same_summary_row(samples, settings_for, tmp_path):
    """summary_row makes both rows from the report's JSON: a resumed batch lists the same."""
    from fer_video.job import run_job

    settings = settings_for(fps=2.0)
    first = run_job(samples / "pyfeat_single_face.mp4", tmp_path, settings)
    assert not first.reused and first.row.status == "ok"
    second = run_job(samples / "pyfeat_single_face.mp4", tmp_path, settings)
    assert second.reused
    fresh, again = first.row, second.row
    keep = ("input", "status", "reason", "duration_s", "n_faces", "dominant", "report")
    assert [getattr(again, k) for k in keep] == [getattr(fresh, k) for k in keep]


def test_write_puts_the_json_last_and_is_complete_only_then(tmp_path):
    """A report folder is complete when its three files exist and the JSON parses."""
    paths = folder.output_paths(tmp_path, "clip")
    assert set(paths) == {"csv", "html", "json"}
    assert not folder.is_complete(tmp_path, "clip")
    paths["csv"].write_text("x")
    paths["html"].write_text("x")
    paths["json"].write_text("{not json")
    assert not folder.is_complete(tmp_path, "clip")
    paths["json"].write_text(json.dumps({}))
    assert folder.is_complete(tmp_path, "clip")


def test_failed_row_and_dominant_text():
    import time

    row = folder.failed_row("a.mp4", "corrupt", time.perf_counter())
    assert row.status == "failed" and row.reason == "corrupt" and row.wall_s >= 0
    assert folder.dominant_text([{"face_id": 2, "dominant_emotion": "sad"},
                                 {"face_id": 1, "dominant_emotion": "happy"}]) == "1:happy;2:sad"
    from fer_video.records import FaceSummary

    faces = [FaceSummary(face_id=i, first_seen_s=0.0, last_seen_s=1.0, n_frames=3,
                         dominant_emotion=e, mean_probs={e: 1.0}) for i, e in ((2, "sad"), (1, "happy"))]
    assert folder.dominant_text(faces) == "1:happy;2:sad"
