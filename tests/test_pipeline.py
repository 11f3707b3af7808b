"""analyze_video end to end on real clips: real decoding, real MTCNN, a real checkpoint."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import fer_video
from fer_video.errors import InputError, UsageError
from fer_video.job import load_models
from fer_video.pipeline import STAGES, analyze_video
from fer_video.report_folder import is_complete, output_paths, write

from conftest import CLASSES, output_files

pytestmark = pytest.mark.slow


def _run(path, settings, out_dir=None, **kw):
    """analyze_video, and the report folder written into ``out_dir`` when it is given."""
    detector, classifier = load_models(settings)
    result = analyze_video(path, settings, detector=detector, classifier=classifier, **kw)
    assert result.outputs is None                 # the analysis writes nothing
    if out_dir is not None:
        write(result, out_dir, Path(path).stem)
    return result


@pytest.fixture(scope="module")
def single(samples, settings_for, tmp_path_factory):
    out = tmp_path_factory.mktemp("single")
    return _run(samples / "pyfeat_single_face.mp4", settings_for(fps=5.0), out_dir=out), out


def check_contract(result, out_dir=None):
    """The output contract of docs/outputs.md, for any result."""
    info = result.info
    df = result.frames()
    assert list(df.columns[:8]) == ["time_s", "frame_index", "face_id", "x1", "y1", "x2", "y2",
                                    "det_score"]
    assert list(df.columns[8:]) == CLASSES + ["emotion"]
    if len(df):
        np.testing.assert_allclose(df[CLASSES].sum(axis=1), 1.0, atol=1e-9)
        assert (df[CLASSES] >= 0).all().all()
        assert df["time_s"].is_monotonic_increasing
        assert df["time_s"].min() >= 0 and (info.duration_s == 0 or df["time_s"].max() <= info.duration_s)
        assert sorted(df["face_id"].unique()) == list(range(1, len(result.faces) + 1))
    for face in result.faces:
        assert face.n_frames == int((df["face_id"] == face.face_id).sum())
        assert face.dominant_emotion in CLASSES
        assert abs(sum(face.mean_probs.values()) - 1) < 1e-9
        for seg in face.segments:
            assert 0 <= seg.start_s <= seg.end_s <= max(info.duration_s, 0.0) + 1e-9
            assert seg.emotion in CLASSES
        assert result.thumbnails[face.face_id][:2] == b"\xff\xd8"      # JPEG
    # ids in order of first appearance
    firsts = [f.first_seen_s for f in result.faces]
    assert firsts == sorted(firsts)
    if out_dir is not None:
        paths = result.outputs
        assert set(paths) == set(output_paths(out_dir, "x"))
        csv = pd.read_csv(paths["csv"])
        assert list(csv.columns) == list(df.columns) and len(csv) == len(df)
        doc = json.loads(open(paths["json"]).read())
        assert doc["input"]["duration_s"] == pytest.approx(info.duration_s, abs=1e-6)
        assert doc["model"]["sha256"] == result.model["sha256"]
        assert doc["model"]["classes"] == CLASSES
        assert set(STAGES) <= set(doc["timings_s"])
        assert doc["settings"]["fps"] == result.settings.fps
        assert doc["settings"]["sample_step_s"] == pytest.approx(result.sample_step_s)
        assert doc["n_faces"] == len(result.faces) == len(doc["faces"])
        for k in ("torch", "fer_video", "av"):
            assert doc["versions"][k]
        html = open(paths["html"], encoding="utf-8").read()
        assert html.rstrip().endswith("</html>")
        assert not [p for p in output_files(out_dir) if p.name.endswith(".tmp")]


def test_single_face_clip(single):
    result, out = single
    assert len(result.faces) == 1
    assert result.info.duration_s == pytest.approx(2.43, abs=0.1)
    assert 10 <= result.n_samples <= 14          # 2.43 s at 5 fps
    assert result.faces[0].n_frames >= result.n_samples - 2
    assert result.sample_step_s == pytest.approx(0.2)
    check_contract(result, out)
    assert is_complete(out, "pyfeat_single_face")
    assert set(result.timings) >= set(STAGES) and all(v >= 0 for v in result.timings.values())


def test_no_face_is_a_valid_empty_result(samples, settings_for, tmp_path):
    result = _run(samples / "pyfeat_no_face.mp4", settings_for(fps=2.0), out_dir=tmp_path)
    assert result.faces == [] and result.predictions == [] and result.n_samples >= 7
    check_contract(result, tmp_path)
    doc = json.loads(open(result.outputs["json"]).read())
    assert doc["n_faces"] == 0 and doc["faces"] == []


def test_crowd_gives_several_faces(shared_video, settings_for):
    result = _run(shared_video("videos/facenet_crowd_1080p.mp4"), settings_for(fps=1.5))
    assert len(result.faces) >= 3
    check_contract(result)


def test_face_then_noface_vfr_hevc(shared_video, settings_for, tmp_path):
    result = _run(shared_video("videos/pyfeat_face_noface.mov"), settings_for(fps=2.0), out_dir=tmp_path)
    assert result.info.codec == "hevc"
    assert len(result.faces) >= 1
    assert min(f.first_seen_s for f in result.faces) < 1.0
    assert max(f.last_seen_s for f in result.faces) < 3.5     # the face leaves at ~2.4 s
    check_contract(result, tmp_path)


def test_crema_d_flv(shared_video, settings_for):
    result = _run(shared_video("videos/labelled/1001_DFA_ANG_XX.flv"), settings_for(fps=3.0))
    assert len(result.faces) == 1
    check_contract(result)


def test_still_image_is_a_one_frame_video(still_jpeg, settings_for, tmp_path):
    result = _run(still_jpeg, settings_for(), out_dir=tmp_path)
    assert result.info.is_image and result.n_samples == 1
    assert len(result.faces) == 1                       # min_track defaults to 1 for stills
    face = result.faces[0]
    assert face.first_seen_s == face.last_seen_s == 0.0
    assert [(s.start_s, s.end_s) for s in face.segments] == [(0.0, 0.0)]
    check_contract(result, tmp_path)


def test_window_and_min_track(samples, settings_for):
    result = _run(samples / "pyfeat_single_face.mp4", settings_for(fps=4.0, start=1.0, end=2.0))
    times = [p.time_s for p in result.predictions]
    assert times and 1.0 - 1e-6 <= min(times) and max(times) <= 2.0 + 1e-6
    for seg in result.faces[0].segments:
        assert seg.end_s <= 2.0 + 1e-9
    none = _run(samples / "pyfeat_single_face.mp4", settings_for(fps=2.0, min_track=100))
    assert none.faces == [] and none.predictions == []


def test_streams_in_bounded_batches(samples, settings_for):
    """Full-frame detection (keyframe_every 1) sees at most batch_size frames at a time; the
    classifier is batched."""
    settings = settings_for(fps=5.0, batch_size=3, classify_batch_size=4, keyframe_every=1)
    detector, classifier = load_models(settings)
    seen = []

    class Spy:
        def detect(self, images):
            seen.append(len(images))
            return detector.detect(images)

    result = analyze_video(samples / "pyfeat_single_face.mp4", settings, detector=Spy(),
                           classifier=classifier)
    assert max(seen) <= 3 and sum(seen) == result.n_samples
    assert classifier.batch_size == 4


def test_bad_input_raises_input_error(bad_inputs, settings_for):
    with pytest.raises(InputError) as e:
        _run(bad_inputs["text"], settings_for())
    assert "notes.mp4" in str(e.value) and "\n" not in str(e.value)


def test_python_api(samples, model_path, tmp_path):
    df, faces = fer_video.analyze(samples / "pyfeat_single_face.mp4", model=str(model_path),
                                  device="cpu", fps=2)
    assert isinstance(df, pd.DataFrame) and len(faces) == 1
    assert set(df["face_id"]) == {1}
    assert not list(tmp_path.iterdir())
    df2, _ = fer_video.analyze(samples / "pyfeat_single_face.mp4", model=str(model_path),
                               device="cpu", fps=2, out=tmp_path)
    assert is_complete(tmp_path / "pyfeat_single_face", "pyfeat_single_face")
    pd.testing.assert_frame_equal(df, df2)
    with pytest.raises(UsageError, match="unknown setting"):
        fer_video.analyze(samples / "pyfeat_single_face.mp4", colour="blue")
    with pytest.raises(UsageError, match="no such file"):
        fer_video.analyze(tmp_path / "missing.mp4", model=str(model_path))


def test_prefetch_keeps_order_propagates_errors_and_stops():
    from fer_video.pipeline_parts import Prefetch as _Prefetch

    def gen(n, fail_at=None):
        for i in range(n):
            if i == fail_at:
                raise InputError("x.mp4", "corrupt frame")
            yield i

    assert list(_Prefetch(gen(50), depth=3)) == list(range(50))
    got = []
    with pytest.raises(InputError, match="corrupt frame"):
        for item in _Prefetch(gen(10, fail_at=4), depth=2):
            got.append(item)
    assert got == [0, 1, 2, 3]
    closed = []

    def endless():
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.append(True)

    p = _Prefetch(endless(), depth=2)
    assert next(p) == 0
    p.close()
    assert closed == [True]               # the decoder was closed, the thread has ended


def test_decoding_that_blocks_raises_decode_stalled_and_no_prefetch_waits_to_be_asked():
    import threading

    from fer_video.pipeline_parts import DecodeStalled, NoPrefetch, Prefetch

    calls = []

    def blocks_after(n):
        for i in range(n):
            calls.append(i)
            yield i
        threading.Event().wait(3600)            # a read that never returns

    for make in (lambda it: Prefetch(it, depth=4, stall_s=0.5), lambda it: NoPrefetch(it, stall_s=0.5)):
        calls.clear()
        p = make(blocks_after(3))
        assert [next(p) for _ in range(3)] == [0, 1, 2]
        t0 = time.monotonic()
        with pytest.raises(DecodeStalled, match="no frame for 0.5 s"):
            next(p)
        assert 0.4 < time.monotonic() - t0 < 3
        p.close()                               # returns although the decoder is stuck
    # NoPrefetch decodes only when asked: never alongside the caller's work
    calls.clear()
    p = NoPrefetch(blocks_after(5), stall_s=5)
    time.sleep(0.3)
    assert calls == []
    assert next(p) == 0
    time.sleep(0.3)
    assert calls == [0]
    assert next(p) == 1 and calls == [0, 1]
    p.close()


def test_a_stalled_input_fails_in_one_line_and_the_batch_goes_on(tmp_path, samples, settings_for,
                                                                 monkeypatch, capsys):
    """Without --timeout (in this process, no worker to kill): the decoder of one real clip
    blocks after two frames; --stall-timeout 2 fails it, the next clip is analysed."""
    import csv

    from conftest import assert_no_traceback
    from fer_video.batch import run_batch

    d = tmp_path / "in"
    d.mkdir()
    for name in ("a_stalls.mp4", "b.mp4"):
        (d / name).write_bytes((samples / "pyfeat_single_face.mp4").read_bytes())
    monkeypatch.setenv("FER_VIDEO_TEST_DECODE_STALL", "a_stalls.mp4")
    t0 = time.monotonic()
    assert run_batch([d], settings_for(fps=1.0, stall_timeout=2.0), out_root=tmp_path / "out",
                     quiet=True) == 1
    assert time.monotonic() - t0 < 120
    assert_no_traceback(capsys.readouterr().err)
    rows = {Path(r["input"]).name: r for r in csv.DictReader(open(tmp_path / "out" / "summary.csv"))}
    assert rows["b.mp4"]["status"] == "ok" and rows["b.mp4"]["n_faces"] == "1"
    assert rows["a_stalls.mp4"]["status"] == "failed"
    assert rows["a_stalls.mp4"]["reason"].startswith("decoding stalled: no frame for 2 s after 1.00 s of video")
    assert not (tmp_path / "out" / "a_stalls" / "a_stalls.json").exists()


def test_every_thread_plan_gives_the_same_result(samples, settings_for):
    """Where the stages run (inline, a decode thread, detection and classification threads)
    changes nothing in the result."""
    from fer_video.threads import plan_threads

    settings = settings_for(fps=5.0, batch_size=3, classify_batch_size=4)
    results = [_run(samples / "pyfeat_single_face.mp4", settings, threads=plan_threads(cores, 1))
               for cores in (1, 2, 3, 16)]
    for r in results[1:]:
        assert r.predictions == results[0].predictions and r.faces == results[0].faces
        assert r.thumbnails == results[0].thumbnails


def test_a_batch_goes_after_16_frames_and_batching_changes_no_probability(samples, settings_for,
                                                                          monkeypatch):
    """One face a frame: classification batches go every ``_FLUSH_FRAMES`` frames (before
    they are full), and the probabilities are those of full batches (the bf16 network
    gives the same bits at any batch size; fp32, on a CPU without bf16, within 1e-6)."""
    from fer_video import pipeline
    from fer_video.threads import plan_threads

    settings = settings_for(fps=10.0, classify_batch_size=32)
    detector, classifier = load_models(settings)
    sizes: list[int] = []
    real = classifier.predict_crops

    def spy(crops):
        sizes.append(len(crops))
        return real(crops)

    monkeypatch.setattr(classifier, "predict_crops", spy)
    plan = plan_threads(2, 1)
    clip = samples / "pyfeat_single_face.mp4"
    by_frames = analyze_video(clip, settings, detector=detector, classifier=classifier, threads=plan)
    n = len(by_frames.predictions)
    assert n > pipeline._FLUSH_FRAMES and max(sizes) == pipeline._FLUSH_FRAMES, (n, sizes)
    sizes.clear()
    monkeypatch.setattr(pipeline, "_FLUSH_FRAMES", 0)
    full = analyze_video(clip, settings, detector=detector, classifier=classifier, threads=plan)
    assert sizes == [min(32, n - i) for i in range(0, n, 32)]
    a = np.array([p.probs for p in full.predictions])
    b = np.array([p.probs for p in by_frames.predictions])
    if classifier.precision == "bf16":
        assert np.array_equal(a, b)
    else:
        np.testing.assert_allclose(a, b, atol=1e-6)
