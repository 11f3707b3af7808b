"""The sampler: read a video (or a still image) and hand out RGB frames at a chosen rate.

``probe(path)`` checks an input and describes it (``VideoInfo``); ``sample_frames(...)``
streams ``SampledFrame`` records from it. Both raise ``InputError`` with a one-line reason
for anything a user can get wrong (missing, empty, not a video, truncated, corrupt, no
video stream). Decoding is PyAV (FFmpeg); stills go through Pillow.

Conventions (see ``records.py``): ``time_s`` is the frame's presentation time in seconds
from the stream's first frame (its ``start_time``); ``frame_index`` is the 0-based position
of the frame among all decoded frames in presentation order; images are upright (the
container's display rotation is applied) HxWx3 uint8 RGB.
"""
from __future__ import annotations

import errno
import math
import os
import stat
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from .errors import InputError
from .media import IMAGE_EXTENSIONS  # stills go to Pillow, the rest to FFmpeg (one table)
from .records import SampledFrame, VideoInfo

# Pillow format name -> the FFmpeg codec name, so stills and videos name codecs alike.
_PIL_CODECS = {"JPEG": "mjpeg", "MPO": "mjpeg", "PNG": "png", "BMP": "bmp", "WEBP": "webp",
               "TIFF": "tiff", "GIF": "gif", "PPM": "ppm"}
# EXIF orientation -> clockwise rotation needed to show the image upright (mirrored ones
# 2/4/5/7 also flip; ImageOps.exif_transpose does both).
_EXIF_ROTATION = {1: 0, 2: 0, 3: 180, 4: 180, 5: 90, 6: 90, 7: 270, 8: 270}

_EPS = 1e-6          # seconds: float slack when comparing frame times with sampling targets


# FFmpeg decoding threads per stream: one, in every mode (in-process, --jobs N workers, Ray
# tasks; ``threads.ThreadPlan.decode_threads``), and not a setting: it shapes results. With
# frame threading, a damaged stream's error concealment (which reference a broken frame is
# patched from) and the point where errors surface depend on the number of threads, so a
# corrupt clip decoded to other pixels (and other faces) with --jobs 1 than in a one-core
# worker. Measured on a 1080p H.264 clip: one thread decodes ~150 frames/s, far faster than
# detection, so nothing waits for it. The probe always decodes its first frame with one.


# ----------------------------------------------------------------------------- probe

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
    p = _check_file(path)
    if p.suffix.lower() in IMAGE_EXTENSIONS:
        return _probe_image(p)
    av = _import_av()
    container = _open_container(p, av)
    try:
        return _probe_video(p, container, av)
    except (InputError, MemoryError):
        raise
    except Exception:     # PyAV tripping over malformed data (e.g. a stream with no codec)
        raise InputError(p, f"{_container_kind(p)}: its video stream cannot be read") from None
    finally:
        container.close()


def _probe_video(p: Path, container, av) -> VideoInfo:
    """``probe`` of an opened container (closed by the caller)."""
    if _is_image_format(container):
        return _probe_image(p)
    stream = _video_stream(p, container)
    first = _first_frame(p, container, stream, av)
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
        for packet in handle.demux(video):
            if packet.size == 0 or packet.is_discard:   # the final flush packet; preroll
                continue
            packets.append(packet)
            if len(packets) > 1:
                return False
        if len(packets) != 1:
            return False
        declared = _declared_video_duration(video, tb)
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


def _check_file(path) -> Path:
    """``path`` as a Path if it names a non-empty regular file this process can read.

    Only regular files are opened (a symbolic link counts as its target): a FIFO would
    block ``open()`` until someone writes to it, a device or socket is not a video, and
    a directory only looks like one by its name. The file is opened non-blocking and
    checked again on the open descriptor, so a FIFO put in its place meanwhile cannot
    hang the run either. Every refusal is an ``InputError`` with a one-line reason.
    """
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        if os.path.islink(p):
            raise InputError(p, f"broken symbolic link: its target {os.readlink(p)} "
                                "does not exist") from None
        raise InputError(p, "file not found") from None
    except PermissionError:
        raise InputError(p, "permission denied") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise InputError(p, "symbolic link loop: the link leads back to itself") from None
        raise InputError(p, f"cannot read file: {e.strerror or e}") from None
    _check_regular(p, st)        # before opening: opening a FIFO or a device is not harmless
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except PermissionError:
        raise InputError(p, "permission denied") from None
    except OSError as e:
        raise InputError(p, f"cannot read file: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    _check_regular(p, st)
    if st.st_size == 0:
        raise InputError(p, "empty file (0 bytes)")
    return p


def _check_regular(p: Path, st: os.stat_result) -> None:
    if stat.S_ISDIR(st.st_mode):
        raise InputError(p, "is a directory, not a video file")
    if not stat.S_ISREG(st.st_mode):
        raise InputError(p, f"not a regular file: {_file_kind(st.st_mode)}")


def _file_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "an unknown kind of file"


def _import_av():
    try:
        import av
    except ImportError as e:  # a dependency of the package: only a broken install lacks it
        from .errors import SetupError
        raise SetupError(f"PyAV is not installed ({e}); run: pip install 'av>=12'") from None
    return av


def ffmpeg_url(p) -> str:
    """The name to hand FFmpeg for the local file ``p``: ``"file:"`` + its absolute path.

    FFmpeg reads a name as ``protocol:rest`` when what precedes the first ``:`` looks like a
    protocol, so a file named ``2024-01-01T10:30:00.mp4`` fails ("Protocol not found") and
    one named ``file:clip.mp4`` or ``http:x.mp4`` would open another file or the network.
    The ``file:`` protocol takes the rest verbatim, and an absolute path starts with ``/``:
    whatever the name, FFmpeg opens exactly this file.
    """
    return "file:" + os.path.abspath(os.fspath(p))


def _open_container(p: Path, av):
    try:
        return av.open(ffmpeg_url(p), metadata_errors="ignore")
    except av.error.EOFError:
        raise InputError(p, "truncated file: it ends inside the container header") from None
    except av.error.InvalidDataError:
        raise InputError(p, _why_unreadable(p)) from None
    except av.error.FFmpegError as e:
        raise InputError(p, f"cannot open as a video: {_ffmpeg_message(e)}") from None
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception:     # PyAV itself failing on a malformed header
        raise InputError(p, _why_unreadable(p)) from None


def _container_kind(p: Path) -> str:
    """"corrupt <kind> container", the kind read from the file's first bytes."""
    try:
        with open(p, "rb") as f:
            head = f.read(16)
    except OSError:
        head = b""
    for magic, at, kind in ((b"ftyp", 4, "MP4/MOV"), (b"\x1aE\xdf\xa3", 0, "Matroska/WebM"),
                            (b"RIFF", 0, "RIFF (AVI)"), (b"FLV", 0, "FLV"),
                            (b"\x00\x00\x01\xba", 0, "MPEG-PS"), (b"OggS", 0, "Ogg")):
        if head[at:at + len(magic)] == magic:
            return f"corrupt {kind} container"
    return "corrupt container"


def _why_unreadable(p: Path) -> str:
    """A specific reason for a file FFmpeg cannot even open, from its first bytes."""
    with open(p, "rb") as f:
        head = f.read(4096)
    if head[4:8] == b"ftyp":
        return "corrupt or truncated MP4/MOV file (its index, the 'moov' box, is missing or damaged)"
    if head[:4] == b"\x1aE\xdf\xa3":
        return "corrupt or truncated Matroska/WebM file"
    if head[:4] == b"RIFF":
        return "corrupt or truncated RIFF (AVI/WAV) file"
    if _looks_like_text(head):
        return "not a video: the file contains text"
    return "not a video file FFmpeg recognises (unknown format, or corrupt)"


def _looks_like_text(head: bytes) -> bool:
    if not head or b"\x00" in head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        try:
            text = head[:-3].decode("utf-8")   # a multi-byte character cut at the end
        except UnicodeDecodeError:
            return False
    printable = sum(ch.isprintable() or ch in "\r\n\t" for ch in text)
    return printable >= 0.95 * len(text)


def _ffmpeg_message(e) -> str:
    return getattr(e, "strerror", None) or str(e)


def _is_image_format(container) -> bool:
    """FFmpeg opened a still image (e.g. a PNG with a video extension)."""
    name = container.format.name
    return name == "image2" or (name.endswith("_pipe") and name != "gif_pipe")


def _video_stream(p: Path, container):
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


def _configure_decoder(stream, threads: int = 1) -> None:
    """Decode ``stream`` the one way every mode does (``threads`` FFmpeg threads, one in
    every mode; no frame threads)."""
    stream.thread_type = "SLICE"
    stream.codec_context.thread_count = int(threads)


def _first_frame(p: Path, container, stream, av):
    _configure_decoder(stream)
    try:
        for frame in container.decode(stream):
            return frame
    except av.error.FFmpegError as e:
        raise InputError(p, f"video stream cannot be decoded ({_codec_name(stream)}): "
                            f"{_ffmpeg_message(e)}") from None
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception:     # PyAV failing on malformed data (e.g. a stream the header lacked)
        raise InputError(p, f"{_container_kind(p)}: no decodable video frame") from None
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


def _image_rgb(p: Path) -> np.ndarray:
    from PIL import ImageOps
    img, _, _ = _read_image(p, load=True)
    try:
        img = ImageOps.exif_transpose(img)
        return np.array(img.convert("RGB"))   # a writeable copy, like video frames
    except (OSError, ValueError) as e:
        raise InputError(p, f"corrupt or truncated image: {e}") from None


# ----------------------------------------------------------------------------- sample

def sample_frames(path, fps: Optional[float] = 5.0, start: float = 0.0,
                  end: Optional[float] = None, info: Optional[VideoInfo] = None,
                  threads: int = 1) -> Iterator[SampledFrame]:
    """Stream the frames of ``path`` sampled at ``fps`` per second, from ``start`` to ``end``.

    Sampling is by presentation time: the targets are ``start, start + 1/fps, ...``; each
    target takes the first decoded frame whose time is >= the target, and a frame that
    passes several targets (a gap in variable-frame-rate video) is emitted once, the next
    target being the first one after it. So VFR input is sampled evenly in time and no
    frame is emitted twice. ``fps=None`` or ``0`` emits every frame. ``end`` is exclusive
    (frames at ``time_s >= end`` are not emitted); ``None`` means the end of the stream.

    Memory stays flat however long the video: one frame is decoded at a time and only the
    sampled ones are converted to RGB (and rotated upright). Decoding uses one FFmpeg thread
    in every mode (``threads``, from the ``ThreadPlan``: 1), so a damaged stream yields the
    same frames whatever the number of workers.

    ``start > 0`` seeks to the key frame before ``start`` instead of decoding everything
    before it. ``frame_index`` stays exact: before seeking, the packets up to ``start`` are
    demuxed (cheap, no decoding) and counted, one frame per packet. Should a container's
    packets lack timestamps, the sampler decodes from the beginning instead (exact, slower).

    Argument and probe errors are raised when this function is called (it is not itself a
    generator); decoding errors are raised by the iterator:

    * if the stream breaks in the middle (FFmpeg reports invalid data), or the file ends
      well before the duration its container declares (truncated download), the iterator
      raises ``InputError`` *after* having yielded the frames it could decode. The error's
      reason names the time reached; ``err.time_reached_s`` (seconds, or None if nothing
      was decoded) and ``err.frames_decoded`` carry it for the caller, who decides whether
      to keep the partial result.
    * if not one frame can be decoded, ``InputError`` is raised before anything is yielded.

    Raises ``ValueError`` for a negative ``fps`` or ``start``, or ``end <= start``.
    """
    if fps is not None and (not math.isfinite(fps) or fps < 0):
        raise ValueError(f"fps must be a positive number, 0 or None (every frame), not {fps!r}")
    if start is None:
        start = 0.0
    if not math.isfinite(start) or start < 0:
        raise ValueError(f"start must be >= 0 seconds, not {start!r}")
    if end is not None and not end > start:
        raise ValueError(f"end ({end!r} s) must be after start ({start!r} s)")
    if info is None:
        info = probe(path)
    p = Path(path)
    if info.is_image and info.container == "image":
        return _sample_image(p, start, end)
    if info.is_image:       # one frame that FFmpeg decodes (a one-frame GIF)
        return _sample_one_frame(p, start, threads)
    return _sample_video(p, info, float(fps or 0.0), float(start), end, threads)


def _sample_image(p: Path, start: float, end: Optional[float]) -> Iterator[SampledFrame]:
    if start <= _EPS:   # a still is one frame at t = 0
        yield SampledFrame(frame_index=0, time_s=0.0, image=_image_rgb(p))


def _sample_one_frame(p: Path, start: float, threads: int = 1) -> Iterator[SampledFrame]:
    """The one frame of a one-frame video stream (``probe`` made it a still), decoded by
    FFmpeg as a video's frames are, at t = 0 like any still."""
    if start > _EPS:
        return
    av = _import_av()
    container = _open_container(p, av)
    try:
        stream = _video_stream(p, container)
        _configure_decoder(stream, threads)
        frame = _first_frame(p, container, stream, av)
        image = _to_rgb(frame, av.video.reformatter.VideoReformatter())
        del frame
    finally:
        container.close()
    yield SampledFrame(frame_index=0, time_s=0.0, image=image)


def _sample_video(p: Path, info: VideoInfo, fps: float, start: float,
                  end: Optional[float], threads: int = 1) -> Iterator[SampledFrame]:
    av = _import_av()
    origin = None       # pts of the stream's first frame, in time_base units
    index = 0           # frame_index of the next frame at or after `start`
    seek_to = None
    if start > 0:
        counted = _count_frames_before(p, start, av)
        if counted is not None:
            index, origin, seek_to = counted
    container = _open_container(p, av)
    try:
        stream = _video_stream(p, container)
        tb = stream.time_base or Fraction(1, 1_000_000)
        if origin is None:
            origin = stream.start_time
        seeked = False
        if seek_to is not None:
            try:
                container.seek(seek_to, stream=stream, backward=True, any_frame=False)
                seeked = True
            except av.error.FFmpegError:   # cannot seek: decode from the beginning
                container.close()
                container = _open_container(p, av)
                stream = _video_stream(p, container)
                index = 0
        if not seeked:
            index = 0
        _configure_decoder(stream, threads)
        step = 1.0 / fps if fps > 0 else 0.0
        nominal = 1.0 / info.fps if info.fps > 0 else 0.04

        next_k = 0                          # index of the next sampling target
        last_time: Optional[float] = None   # time of the last frame at or after `start`
        prev_t: Optional[float] = None      # time of the last decoded frame
        decoded = 0                         # frames decoded (since the seek, if any)
        reached_eof = True
        reformatter = av.video.reformatter.VideoReformatter()
        frames = container.decode(stream)
        while True:
            try:
                frame = next(frames)
            except StopIteration:
                break
            except av.error.FFmpegError as e:
                if _no_packet_left(container, stream):     # it broke on the file's last bytes:
                    _check_complete(p, container, stream, tb, last_time, decoded, nominal,
                                    start, av)               # truncated, if it ends early
                _stream_broken(p, last_time, decoded,
                               f"the video stream is corrupt ({_ffmpeg_message(e)})")
            except (MemoryError, KeyboardInterrupt):
                raise
            except Exception:   # PyAV failing on malformed data, e.g. a stream appearing
                _stream_broken(p, last_time, decoded,   # mid-file that the header lacked
                               f"{_container_kind(p)} (its data cannot be demuxed)")
            decoded += 1
            pts = frame.pts if frame.pts is not None else frame.dts
            if origin is None:
                origin = pts if pts is not None else 0
            if pts is None:   # no timestamp at all: extrapolate at the nominal rate
                t = (prev_t + nominal) if prev_t is not None else 0.0
            else:
                t = float((pts - origin) * tb)
            prev_t = t
            if t < start - _EPS:
                if not seeked:
                    index += 1    # decoding from the beginning: earlier frames count
                continue          # after a seek they were counted by demuxing
            if end is not None and t >= end - _EPS:
                reached_eof = False
                break
            frame_index = index
            index += 1
            last_time = t
            if step:
                if t < start + next_k * step - _EPS:
                    continue
                next_k = int(math.floor((t - start + _EPS) / step)) + 1
            image = _to_rgb(frame, reformatter)
            del frame   # hold no decoder buffer while the consumer works
            yield SampledFrame(frame_index=frame_index, time_s=t, image=image)
            del image
        if decoded == 0 and not seeked:
            _stream_broken(p, None, 0, "no decodable video frame (file truncated or corrupt)")
        if reached_eof:
            _check_complete(p, container, stream, tb, last_time, decoded, nominal, start, av)
    finally:
        container.close()


def _stream_broken(p, last_time, decoded, reason, say_where=True):
    if not say_where or (decoded == 0 and last_time is None):
        err = InputError(p, reason)
    else:
        at = f"{last_time:.2f} s" if last_time is not None else "the start"
        err = InputError(p, f"{reason}; decoding stopped at {at}")
    err.time_reached_s = last_time
    err.frames_decoded = decoded
    raise err


def _check_complete(p, container, stream, tb, last_time, decoded, nominal, start, av):
    """Catch a file cut short (interrupted download or copy): FFmpeg just stops at EOF.

    Whatever the container, the video is truncated when it ends well before what the
    container says (the slack: the largest of 1 s, 5% and ten frames). What it says is, in
    order: the video stream's own declared duration (MP4/MOV indexes, AVI), the video
    track's ``DURATION`` tag (Matroska/WebM write one per track, in the header), or the
    container's duration. A container duration may include a longer audio track, so when
    the file has other streams it counts only if no stream's data reaches it either (a
    demuxing pass over the packets, no decoding: only done when the video ends early).
    """
    reached = last_time if last_time is not None else start
    end = reached + nominal                       # seconds of video decoded, from its start

    def slack(expected: float) -> float:
        return max(1.0, 0.05 * expected, 10 * nominal)

    expected = _declared_video_duration(stream, tb)
    if expected is None and container.duration and container.duration > 0:
        expected = container.duration / 1_000_000   # AV_TIME_BASE
        if expected > start and expected - end > slack(expected) and len(container.streams) > 1:
            data_end = _data_end_s(p, av, stream, reached)
            if data_end is None or expected - data_end <= slack(expected):
                return                               # another stream goes on: not truncated
    if expected is None:
        return
    if expected > start and expected - end > slack(expected):
        _stream_broken(p, last_time, decoded,
                       f"the file is truncated: the video stops at {reached:.2f} s "
                       f"of {expected:.2f} s", say_where=False)


def _no_packet_left(container, stream) -> bool:
    """Whether the file holds no further packet of ``stream`` (a decoding error on the last
    bytes of a file cut short, rather than damage in the middle)."""
    try:
        for packet in container.demux(stream):
            if packet.size:
                return False
    except Exception:
        return False
    return True


def _declared_video_duration(stream, tb) -> Optional[float]:
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


def _data_end_s(p: Path, av, video, reached: float) -> Optional[float]:
    """How far (seconds from the video stream's start) the file's data reaches in any
    stream: the end of its last packet, demuxed (not decoded) from shortly before
    ``reached``. None when it cannot be read (the caller then does not call it truncated)."""
    try:
        container = av.open(ffmpeg_url(p), metadata_errors="ignore")
    except Exception:
        return None
    try:
        origin_s = 0.0
        vs = [s for s in container.streams if s.index == video.index]
        if vs and vs[0].start_time is not None and vs[0].time_base:
            origin_s = float(vs[0].start_time * vs[0].time_base)
        try:
            container.seek(max(0, int((origin_s + reached - 2.0) * 1_000_000)), backward=True)
        except Exception:
            pass
        end = None
        for packet in container.demux():
            if packet.pts is None or not packet.stream.time_base:
                continue
            t = float((packet.pts + (packet.duration or 0)) * packet.stream.time_base) - origin_s
            end = t if end is None else max(end, t)
        return end
    except Exception:
        return None
    finally:
        container.close()


def _count_frames_before(p: Path, start: float, av):
    """Demux (no decoding) a second handle on the file to count frames shown before ``start``.

    Returns ``(count, origin_pts, seek_pts)``, or None when packets lack timestamps (the
    count would be a guess) or the file cannot be demuxed that far (the caller then
    decodes from the beginning, which also reports any corruption). Stops reading at the
    first packet whose dts reaches ``start``: every later packet is presented later still.
    """
    try:
        container = av.open(ffmpeg_url(p), metadata_errors="ignore")
    except av.error.FFmpegError:
        return None
    try:
        stream = _video_stream(p, container)
        tb = stream.time_base
        origin = stream.start_time
        if not tb:
            return None
        count = 0
        for packet in container.demux(stream):
            if packet.size == 0 and packet.pts is None:   # the demuxer's final flush packet
                continue
            if packet.is_discard:                        # edit-list preroll: never shown
                continue
            if packet.pts is None:
                return None
            if origin is None:
                origin = packet.pts   # first packet = key frame: no frame is shown earlier
            if float((packet.pts - origin) * tb) < start - _EPS:
                count += 1
            if packet.dts is not None and float((packet.dts - origin) * tb) >= start - _EPS:
                break
        if origin is None:
            return None
        return count, origin, origin + int(math.ceil((start - _EPS) / tb))
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception:     # FFmpeg or PyAV failing on the data: decode from the start instead
        return None
    finally:
        container.close()


def _to_rgb(frame, reformatter) -> np.ndarray:
    """HxWx3 uint8 RGB, turned upright per the display matrix."""
    rgb = reformatter.reformat(frame, format="rgb24").to_ndarray()
    k = (getattr(frame, "rotation", 0) or 0) // 90 % 4   # counter-clockwise quarter turns
    if k:
        rgb = np.ascontiguousarray(np.rot90(rgb, k))
    return rgb


__all__ = ["probe", "sample_frames", "IMAGE_EXTENSIONS"]
