"""The shared tables: media extensions (fer_video.media) and emotion spellings
(fer_video.labels). Discovery and the decoder read the one extension table, so a file a
folder batch lists is decoded the way its extension says: every image extension as a
still (Pillow), every video extension as a video (FFmpeg)."""
from __future__ import annotations

import ast
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from fer_video import batch, decode, media
from fer_video.labels import EMOTION_SYNONYMS, canonical_emotion
from fer_video.report import emotion_colors

PKG = Path(__file__).resolve().parents[1] / "fer_video"

# Pillow's writer for each image extension (the decoder must read what it writes).
PIL_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".jpe": "JPEG", ".png": "PNG", ".bmp": "BMP",
               ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF", ".pgm": "PPM", ".ppm": "PPM"}
# A codec FFmpeg's muxer for each video extension takes (default mpeg4); DV has its frame size.
VIDEO_CODECS = {".dv": "dvvideo", ".mxf": "dvvideo", ".f4v": "h264", ".flv": "h264",
                ".ogv": "libvpx", ".webm": "libvpx", ".y4m": "rawvideo"}


def _imports(module: str) -> set[str]:
    tree = ast.parse((PKG / f"{module}.py").read_text(encoding="utf-8"))
    return {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {
        a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}


def test_one_extension_table_used_by_discovery_and_the_decoder():
    assert media.MEDIA_EXTENSIONS == media.VIDEO_EXTENSIONS | media.IMAGE_EXTENSIONS
    assert not media.VIDEO_EXTENSIONS & media.IMAGE_EXTENSIONS
    assert all(e.startswith(".") and e == e.lower() for e in media.MEDIA_EXTENSIONS)
    assert batch.MEDIA_EXTENSIONS is media.MEDIA_EXTENSIONS
    assert batch.IMAGE_EXTENSIONS is media.IMAGE_EXTENSIONS is decode.IMAGE_EXTENSIONS
    assert set(PIL_FORMATS) == media.IMAGE_EXTENSIONS      # this test writes every one
    assert _imports("media") == {"__future__"} and _imports("labels") == {"__future__"}


def _write_image(path: Path, ext: str) -> None:
    img = Image.new("RGB", (40, 30), (200, 120, 40))
    (img.convert("L") if ext == ".pgm" else img).save(path, PIL_FORMATS[ext])


def _write_video(path: Path, ext: str, n: int = 4) -> None:
    if ext == ".gif":         # an animated GIF, as a browser shows one
        frames = [Image.new("RGB", (40, 30), (60 * i, 0, 0)) for i in range(n)]
        frames[0].save(path, save_all=True, append_images=frames[1:], duration=200, loop=0)
        return
    codec = VIDEO_CODECS.get(ext, "mpeg4")
    w, h = (720, 576) if codec == "dvvideo" else (64, 48)
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=25 if codec == "dvvideo" else 10)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for i in range(n):
            rgb = np.full((h, w, 3), 40 * i, np.uint8)
            for pkt in s.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)


def test_discovery_and_the_decoder_agree_on_every_extension(tmp_path):
    """A real file in each format of the table, named with each extension (upper case
    too): the folder batch lists every one, and the decoder reads an image extension as
    a still of one frame and a video extension as a video of all its frames."""
    src = tmp_path / "in"
    src.mkdir()
    for k, ext in enumerate(sorted(media.MEDIA_EXTENSIONS)):
        name = f"f{k:02d}{ext.upper() if k % 2 else ext}"
        (_write_image if ext in media.IMAGE_EXTENSIONS else _write_video)(src / name, ext)
    (src / "notes.txt").write_text("not media")
    (src / "clip.mp4.part").write_bytes(b"x")
    jobs, is_batch = batch.discover([src])
    assert is_batch
    assert sorted(Path(j.path).suffix.lower() for j in jobs) == sorted(media.MEDIA_EXTENSIONS)
    for job in jobs:
        ext = Path(job.path).suffix.lower()
        info = decode.probe(job.path)
        frames = list(decode.sample_frames(job.path, fps=None, info=info))
        if ext in media.IMAGE_EXTENSIONS:
            assert info.is_image and info.container == "image", (ext, info)
            assert len(frames) == 1 and frames[0].image.shape == (30, 40, 3), ext
        else:
            assert not info.is_image, (ext, info)
            assert len(frames) == 4, (ext, len(frames))


@pytest.mark.parametrize("spelling, name", [
    ("Anger", "angry"), (" happiness ", "happy"), ("JOY", "happy"), ("happy_face", "happy"),
    ("scared", "fear"), ("Fearful", "fear"), ("disgusted", "disgust"), ("sadness", "sad"),
    ("surprised", "surprise"), ("contempt", "contempt"), ("Neutral", "neutral"),
    ("calm", "calm"), ("Other Thing", "other thing")])
def test_one_emotion_spelling_table(spelling, name):
    assert canonical_emotion(spelling) == name


def test_the_table_maps_each_name_to_itself_and_the_report_colours_follow_it():
    names = set(EMOTION_SYNONYMS.values())
    assert names == {"angry", "contempt", "disgust", "fear", "happy", "neutral", "sad", "surprise"}
    assert all(EMOTION_SYNONYMS[n] == n for n in names)
    assert all(k == k.strip().lower() for k in EMOTION_SYNONYMS)
    usual = emotion_colors(sorted(names))
    for spelling, name in EMOTION_SYNONYMS.items():
        assert emotion_colors([spelling.title()])[spelling.title()] == usual[name], spelling
