"""Real analyses written to disk: the report JSON's ``detection`` counts (track-guided
detection, ``--keyframe-every``) and a one-frame GIF analysed as the still image it is."""
from __future__ import annotations

import json
from pathlib import Path

import av
import pytest

from fer_video import report_folder
from fer_video.decode import sample_frames
from fer_video.job import load_models
from fer_video.pipeline import analyze_video
from fer_video.report_html import detection_sentence

pytestmark = pytest.mark.slow


def _analyze(clip: Path, out: Path, settings) -> dict:
    """What ``fer-video analyze CLIP --out OUT`` writes for one input (the analysis, then
    report_folder's writer), as the report JSON read back."""
    detector, classifier = load_models(settings)
    result = analyze_video(clip, settings, detector=detector, classifier=classifier)
    report_folder.write(result, out / clip.stem, clip.stem)
    return json.loads((out / clip.stem / f"{clip.stem}.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("every", [5, 1])
def test_report_json_has_consistent_detection_counts(samples, settings_for, tmp_path, every):
    clip = samples / "pyfeat_single_face.mp4"
    obj = _analyze(clip, tmp_path, settings_for(keyframe_every=every))   # --keyframe-every
    det = obj["detection"]
    assert set(det) == {"keyframe_every", "sampled_frames", "keyframes", "roi_frames",
                        "shot_cuts", "lost_tracks", "window_searches"}
    sampled = len(list(sample_frames(clip, fps=obj["settings"]["fps"])))
    assert det["keyframe_every"] == obj["settings"]["keyframe_every"] == every
    assert det["sampled_frames"] == sampled == 12                 # 2.4 s at 5 fps
    assert det["keyframes"] + det["roi_frames"] == sampled
    assert 0 <= det["shot_cuts"] + det["lost_tracks"] <= det["keyframes"]
    # a region frame searched with P-net windows is still a region frame, or one lost after
    assert 0 <= det["window_searches"] <= det["roi_frames"] + det["lost_tracks"]
    if every == 1:
        assert det == {"keyframe_every": 1, "sampled_frames": sampled, "keyframes": sampled,
                       "roi_frames": 0, "shot_cuts": 0, "lost_tracks": 0,
                       "window_searches": 0}
    else:
        # keyframes are never more than 5 frames apart: at least 3 of 12 (0, 5, 10)
        assert det["keyframes"] >= -(-sampled // every) and det["roi_frames"] > 0
        assert det["shot_cuts"] == 0                  # one shot
    assert obj["n_faces"] == 1 and obj["faces"][0]["n_frames"] == sampled
    # The page says the same in words, with the busy time of every stage before it.
    html = (tmp_path / clip.stem / f"{clip.stem}.html").read_text(encoding="utf-8")
    assert f"Face search: {detection_sentence(det)}</p>" in html
    for stage in ("decode", "detect", "track", "classify", "aggregate"):
        assert f"<tr><td>{stage}</td><td class=\"num\">" in html, stage
    assert "<tr><td>report</td>" not in html      # still running when the page is written


def test_a_report_with_detection_counts_is_reused(samples, tmp_path, settings_for):
    clip = samples / "pyfeat_no_face.mp4"
    obj = _analyze(clip, tmp_path, settings_for(fps=1.0))
    assert obj["detection"]["sampled_frames"] == 4
    assert obj["reuse_key"]["results_version"] == report_folder.RESULTS_VERSION
    identity = report_folder.input_identity(clip)
    assert report_folder.reusable(obj, identity, settings_for(fps=1.0))


def _face_gif(samples: Path, path: Path, n: int) -> None:
    """A GIF written by Pillow from ``n`` frames (0.33 s apart) of the single-face clip."""
    frames = []
    with av.open(str(samples / "pyfeat_single_face.mp4")) as c:
        for i, frame in enumerate(c.decode(video=0)):
            if i % 10 == 0:
                frames.append(frame.to_image())
            if len(frames) == n:
                break
    frames[0].save(path, save_all=n > 1, append_images=frames[1:], duration=200, loop=0)


def test_one_frame_gif_of_a_face_finds_it_with_default_settings(samples, settings_for, tmp_path):
    """A one-frame GIF is a still: it gets the image defaults (--min-track 1), so its one
    face counts; before, it was a one-frame video whose face (one sample < 2) never did."""
    gif = tmp_path / "face.gif"
    _face_gif(samples, gif, 1)
    obj = _analyze(gif, tmp_path / "out", settings_for())
    assert obj["input"]["is_image"] is True and obj["input"]["duration_s"] == 0.0
    assert obj["input"]["container"] == "gif"
    assert obj["n_faces"] == 1
    face = obj["faces"][0]
    assert (face["first_seen_s"], face["last_seen_s"], face["n_frames"]) == (0.0, 0.0, 1)
    assert obj["detection"]["sampled_frames"] == 1 and obj["detection"]["keyframes"] == 1
    html = (tmp_path / "out" / "face" / "face.html").read_text(encoding="utf-8")
    assert "still image" in html and "<svg" in html


def test_animated_gif_of_a_face_is_a_video_of_all_its_frames(samples, settings_for, tmp_path):
    gif = tmp_path / "anim.gif"
    _face_gif(samples, gif, 4)
    obj = _analyze(gif, tmp_path / "out", settings_for())
    assert obj["input"]["is_image"] is False
    assert (obj["input"]["fps"], obj["input"]["duration_s"]) == (5.0, 0.8)
    assert obj["detection"]["sampled_frames"] == 4
    assert obj["n_faces"] == 1 and obj["faces"][0]["n_frames"] == 4
