"""The probe: check an input and describe it (``VideoInfo``), and the stream helpers the
sampler (:mod:`fer_video.decode`) shares with it: the video stream, the decoder set-up, the
first frame, the rotation, a still's pixels (Pillow). Raises ``InputError`` with a one-line
reason for anything a user can get wrong (see :func:`probe`); opening the file and the
reasons it cannot be opened are :mod:`fer_video.input_file`'s.
"""
from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path
from typing import Optional

import numpy as np

from .errors import InputError
from .input_file import check_file, container_kind, ffmpeg_message, ffmpeg_url, import_av, open_container
from .media import IMAGE_EXTENSIONS  # stills go to Pillow, the rest to FFmpeg (one table)
from .records import VideoInfo

# Pillow format name -> the FFmpeg codec name, so stills and videos name codecs alike.
_PIL_CODECS = {"JPEG": "mjpeg", "MPO": "mjpeg", "PNG": "png", "BMP": "bmp", "WEBP": "webp",
               "TIFF": "tiff", "GIF": "gif", "PPM": "ppm"}
# EXIF orientation -> clockwise rotation needed to show the image upright (mirrored ones
# 2/4/5/7 also flip; ImageOps.exif_transpose does both).
_EXIF_ROTATION = {1: 0, 2: 0, 3: 180, 4: 180, 5: 90, 6: 90, 7: 270, 8: 270}


def probe(path) -> VideoInfo:
    """Check that ``path`` is a readable video (or still image) and describe it.

    Decodes the first video frame: that proves the stream can be decoded and gives the
    display rotation (PyAV exposes the display matrix on frames, not on streams). A video
    stream of exactly one frame (a one-frame GIF) is a still image (``is_image``, duration
    and fps 0; :func:`_one_frame`), so it gets the image defaults, like a PNG.

    Raises ``InputError`` for: a missing path or a directory, anything but a regular file
    (a FIFO, device or socket, a broken or looping symbolic link), a zero-byte file, a file that
    is not a recognised video/image (e.g. text named ``.mp4``), a corrupt or truncated
    container, a file with no video stream (audio only; cover art does not count), or a
    video stream of which not one frame can be decoded.
    """
    p = check_file(path)
    if p.suffix.lower() in IMAGE_EXTENSIONS:
        return _probe_image(p)
    av = import_av()
    container = open_container(p, av)
    try:
        return _probe_video(p, container, av)
    except (InputError, MemoryError):
        raise
    except Exception:     # PyAV tripping over malformed data (e.g. a stream with no codec)
        raise InputError(p, f"{container_kind(p)}: its video stream cannot be read") from None
    finally:
        container.close()


def _probe_video(p: Path, container, av) -> VideoInfo:
    """``probe`` of an opened container (closed by the caller)."""
    if _is_image_format(container):
        return _probe_image(p)
    stream = video_stream(p, container)
    first = first_frame(p, container, stream, av)
    rotation = _rotation_cw(first)
    w, h = first.width, first.height
    if rotation in (90, 270):
        w, h = h, w
    still = _one_frame(p, container, stream, av)
    return VideoInfo(
        path=str(p),
        size_bytes=p.stat().st_size,
        container=container.format.name,
        codec=_codec_name(stream),
        width=int(w),
        height=int(h),
        rotation=rotation,
        fps=0.0 if still else _average_fps(stream),
        duration_s=0.0 if still else _duration_s(stream, container),
        is_image=still,
    )


def _one_frame(p: Path, container, stream, av) -> bool:
    """Whether the video stream holds exactly one frame (a one-frame GIF, a video of one
    frame): such an input is a still image, like a PNG, not a one-frame video.

    Counted by demuxing a second handle on the file (no decoding), up to the second
    packet, unless the container already says there are more (``stream.frames`` > 1).
    A stream of one packet that its container declares longer than that frame by more than
    the sampler's truncation slack is a video cut short, not a still: it stays a video so
    that sampling reports it truncated. Anything unreadable here: not a still (the
    sampler then reports what is wrong)."""
    if stream.frames and stream.frames > 1:
        return False
    try:
        handle = av.open(ffmpeg_url(p), metadata_errors="ignore")
    except Exception:
        return False
    try:
        video = [s for s in handle.streams if s.index == stream.index][0]
        tb = video.time_base or Fraction(1, 1_000_000)
        packets = []
        for packet in demux_packets(handle, video):
            if packet.size == 0 or packet.is_discard:   # an empty packet; preroll
                continue
            packets.append(packet)
            if len(packets) > 1:
                return False
        if len(packets) != 1:
            return False
        declared = declared_video_duration(video, tb)
        if declared is None and container.duration and len(container.streams) == 1:
            declared = container.duration / 1_000_000   # AV_TIME_BASE
        if declared is None:
            return True
        pkt = packets[0]
        origin = video.start_time if video.start_time is not None else (pkt.pts or 0)
        end = float(((pkt.pts if pkt.pts is not None else origin) - origin
                     + (pkt.duration or 0)) * tb)
        nominal = 1.0 / _average_fps(video) if _average_fps(video) > 0 else 0.04
        return declared - end <= max(1.0, 0.05 * declared, 10 * nominal)
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception:
        return False
    finally:
        handle.close()


def _is_image_format(container) -> bool:
    """FFmpeg opened a still image (e.g. a PNG with a video extension)."""
    name = container.format.name
    return name == "image2" or (name.endswith("_pipe") and name != "gif_pipe")


def video_stream(p: Path, container):
    """The first real video stream; cover art (attached pictures) does not count."""
    import av
    streams = [s for s in container.streams.video
               if not (s.disposition & av.stream.Disposition.attached_pic)]
    if streams:
        return streams[0]
    audio = [_codec_name(s) for s in container.streams.audio if s.codec_context]
    if audio:
        art = " with cover art" if container.streams.video else ""
        return _raise(p, f"no video stream (audio-only file{art}: {', '.join(audio)})")
    return _raise(p, "no video stream in the file")


def _codec_name(stream) -> str:
    """The codec's canonical name ("mp3", "h264"), not the decoder's ("mp3float"); "unknown"
    for a stream FFmpeg has no decoder for (no codec context)."""
    ctx = stream.codec_context
    if ctx is None:
        return "unknown"
    return getattr(ctx.codec, "canonical_name", None) or ctx.name or "unknown"


def _raise(p, reason):
    raise InputError(p, reason)


# Why the project never iterates ``container.demux()`` / ``container.decode()`` to its end:
# PyAV 18.1 (av/container/input.py) allocates its table of included streams with the
# stream count when demuxing starts. A container that adds a stream mid-file (FLV, MPEG-TS:
# FFmpeg's AVFMTCTX_NOHEADER) has more streams by the end of the file, and PyAV's final loop,
# which yields one empty "flush" packet per included stream, reads that table past its end: a
# heap byte left there by an earlier allocation. Non-zero, it raises IndexError; zero, not.
# So the same damaged FLV (fuzz seed 13, case05155) failed in one process and was ok in a
# --jobs 2 worker. That loop runs in stream-index order and every stream we ask for was there
# at the start, so stopping at the first flush packet never reaches the out-of-range entries.
def demux_packets(container, *streams):
    """The packets ``container.demux(*streams)`` reads from the file, in file order, without
    the empty flush packets PyAV appends after the last one (see above): the same packets
    whatever the process's heap holds."""
    packets = container.demux(*streams)
    try:
        for packet in packets:
            if packet.size == 0 and packet.pts is None and packet.dts is None and packet.pos is None:
                return      # PyAV's end-of-file flush packets start here; nothing is read after
            yield packet
    finally:
        packets.close()


def decode_frames(container, stream):
    """Every frame of ``stream``: its packets decoded in file order (:func:`demux_packets`),
    then the decoder drained. The frames ``container.decode(stream)`` yields, deterministically."""
    for packet in demux_packets(container, stream):
        yield from stream.decode(packet)
    yield from stream.decode(None)


# FFmpeg decoding threads per stream: one, in every mode (in-process, --jobs N workers, Ray
# tasks; ``threads.ThreadPlan.decode_threads``), and not a setting: it shapes results. With
# frame threading, a damaged stream's error concealment (which reference a broken frame is
# patched from) and the point where errors surface depend on the number of threads, so a
# corrupt clip decoded to other pixels (and other faces) with --jobs 1 than in a one-core
# worker. Measured on a 1080p H.264 clip: one thread decodes ~150 frames/s, far faster than
# detection, so nothing waits for it. The probe always decodes its first frame with one.
def configure_decoder(stream, threads: int = 1) -> None:
    """Decode ``stream`` the one way every mode does (``threads`` FFmpeg threads, one in
    every mode; no frame threads)."""
    stream.thread_type = "SLICE"
    stream.codec_context.thread_count = int(threads)


def first_frame(p: Path, container, stream, av):
    configure_decoder(stream)
    try:
        for frame in decode_frames(container, stream):
            return frame
    except av.error.FFmpegError as e:
        raise InputError(p, f"video stream cannot be decoded ({_codec_name(stream)}): "
                            f"{ffmpeg_message(e)}") from None
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception:     # PyAV failing on malformed data (e.g. a stream the header lacked)
        raise InputError(p, f"{container_kind(p)}: no decodable video frame") from None
    raise InputError(p, "no decodable video frame (file truncated or corrupt)")


def _rotation_cw(frame) -> int:
    """Clockwise degrees (0/90/180/270) the stored frame must turn to be shown upright.

    PyAV's ``VideoFrame.rotation`` is the display matrix's counter-clockwise angle in
    [-180, 180] (FFmpeg's ``av_display_rotation_get``); a phone's portrait clip reads -90.
    """
    ccw = getattr(frame, "rotation", 0) or 0
    return int(round(-ccw / 90.0)) % 4 * 90


def _average_fps(stream) -> float:
    for rate in (stream.average_rate, stream.guessed_rate):
        if rate:
            return float(rate)
    return 0.0


def _duration_s(stream, container) -> float:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / 1_000_000  # AV_TIME_BASE
    if stream.frames and stream.average_rate:
        return float(stream.frames / stream.average_rate)
    return 0.0


def _probe_image(p: Path) -> VideoInfo:
    img, fmt, rotation = _read_image(p, load=True)   # decoding proves the data is whole
    w, h = img.size
    if rotation in (90, 270):
        w, h = h, w
    return VideoInfo(path=str(p), size_bytes=p.stat().st_size, container="image",
                     codec=_PIL_CODECS.get(fmt, fmt.lower()), width=w, height=h,
                     rotation=rotation, fps=0.0, duration_s=0.0, is_image=True)


def _read_image(p: Path, load: bool):
    from PIL import Image, UnidentifiedImageError
    try:
        img = Image.open(p)
        fmt = img.format or "image"
        orientation = img.getexif().get(0x0112, 1)
        if load:
            img.load()
    except UnidentifiedImageError:
        raise InputError(p, "not an image Pillow can read (unknown format or corrupt)") from None
    except Image.DecompressionBombError as e:
        raise InputError(p, f"image too large to analyse safely: {e}") from None
    except (OSError, SyntaxError, ValueError) as e:  # truncated/damaged image data
        raise InputError(p, f"corrupt or truncated image: {e}") from None
    return img, fmt, _EXIF_ROTATION.get(orientation, 0)


def image_rgb(p: Path) -> np.ndarray:
    from PIL import ImageOps
    img, _, _ = _read_image(p, load=True)
    try:
        img = ImageOps.exif_transpose(img)
        return np.array(img.convert("RGB"))   # a writeable copy, like video frames
    except (OSError, ValueError) as e:
        raise InputError(p, f"corrupt or truncated image: {e}") from None


def declared_video_duration(stream, tb) -> Optional[float]:
    """Seconds the video stream says it lasts (its own duration or DURATION tag), or None."""
    if stream.duration and tb:
        return float(stream.duration * tb)
    tag = {k.upper(): v for k, v in (stream.metadata or {}).items()}.get("DURATION")
    if tag:
        try:
            h, m, sec = str(tag).strip().split(":")
            value = int(h) * 3600 + int(m) * 60 + float(sec)
        except ValueError:
            return None
        return value if math.isfinite(value) and value > 0 else None
    return None


__all__ = ["configure_decoder", "declared_video_duration", "decode_frames", "demux_packets",
           "first_frame", "image_rgb", "probe", "video_stream"]
