"""The sampler: read a video (or a still image) and hand out RGB frames at a chosen rate.

``probe(path)`` checks an input and describes it (``VideoInfo``); ``sample_frames(...)``
streams ``SampledFrame`` records from it. Both raise ``InputError`` with a one-line reason
for anything a user can get wrong (missing, empty, not a video, truncated, corrupt, no
video stream). Decoding is PyAV (FFmpeg); stills go through Pillow.

Conventions (see ``records.py``): ``time_s`` is the frame's presentation time in seconds
from the stream's first frame (its ``start_time``); ``frame_index`` is the 0-based position
of the frame among all decoded frames in presentation order; images are upright (the
container's display rotation is applied) HxWx3 uint8 RGB.

``probe`` and the stream helpers it shares with the sampler are in :mod:`fer_video.probe`
(re-exported here), the file checks and the reasons a file cannot be opened in
:mod:`fer_video.input_file`; this module samples frames and tells a stream cut short
(truncated) from one broken in the middle (corrupt). FFmpeg decodes with one thread per
stream in every mode: why, at :func:`fer_video.probe.configure_decoder`.
"""
from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from .errors import InputError
from .input_file import container_kind, ffmpeg_message, ffmpeg_url, import_av, open_container
from .media import IMAGE_EXTENSIONS  # re-exported: stills go to Pillow, the rest to FFmpeg
from .probe import (configure_decoder, declared_video_duration, decode_frames, demux_packets,
                    first_frame, image_rgb, probe, video_stream)
from .records import SampledFrame, VideoInfo

_EPS = 1e-6          # seconds: float slack when comparing frame times with sampling targets


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
        yield SampledFrame(frame_index=0, time_s=0.0, image=image_rgb(p))


def _sample_one_frame(p: Path, start: float, threads: int = 1) -> Iterator[SampledFrame]:
    """The one frame of a one-frame video stream (``probe`` made it a still), decoded by
    FFmpeg as a video's frames are, at t = 0 like any still."""
    if start > _EPS:
        return
    av = import_av()
    container = open_container(p, av)
    try:
        stream = video_stream(p, container)
        configure_decoder(stream, threads)
        frame = first_frame(p, container, stream, av)
        image = _to_rgb(frame, av.video.reformatter.VideoReformatter())
        del frame
    finally:
        container.close()
    yield SampledFrame(frame_index=0, time_s=0.0, image=image)


def _sample_video(p: Path, info: VideoInfo, fps: float, start: float,
                  end: Optional[float], threads: int = 1) -> Iterator[SampledFrame]:
    av = import_av()
    origin = None       # pts of the stream's first frame, in time_base units
    index = 0           # frame_index of the next frame at or after `start`
    seek_to = None
    if start > 0:
        counted = _count_frames_before(p, start, av)
        if counted is not None:
            index, origin, seek_to = counted
    container = open_container(p, av)
    try:
        stream = video_stream(p, container)
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
                container = open_container(p, av)
                stream = video_stream(p, container)
                index = 0
        if not seeked:
            index = 0
        configure_decoder(stream, threads)
        step = 1.0 / fps if fps > 0 else 0.0
        nominal = 1.0 / info.fps if info.fps > 0 else 0.04

        next_k = 0                          # index of the next sampling target
        last_time: Optional[float] = None   # time of the last frame at or after `start`
        prev_t: Optional[float] = None      # time of the last decoded frame
        decoded = 0                         # frames decoded (since the seek, if any)
        reached_eof = True
        reformatter = av.video.reformatter.VideoReformatter()
        frames = decode_frames(container, stream)
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
                               f"the video stream is corrupt ({ffmpeg_message(e)})")
            except (MemoryError, KeyboardInterrupt):
                raise
            except Exception:   # PyAV failing on malformed data, e.g. a stream appearing
                _stream_broken(p, last_time, decoded,   # mid-file that the header lacked
                               f"{container_kind(p)} (its data cannot be demuxed)")
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

    expected = declared_video_duration(stream, tb)
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
        for packet in demux_packets(container, stream):
            if packet.size:
                return False
    except Exception:
        return False
    return True


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
        for packet in demux_packets(container):
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
        stream = video_stream(p, container)
        tb = stream.time_base
        origin = stream.start_time
        if not tb:
            return None
        count = 0
        for packet in demux_packets(container, stream):
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
