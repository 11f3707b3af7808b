"""Opening one input file: only a non-empty regular file this process can read
(:func:`check_file`), handed to FFmpeg by a name it cannot take for a URL (:func:`ffmpeg_url`),
and when FFmpeg cannot open it, a one-line reason read from its first bytes (a truncated
MP4 index, text named ``.mp4``, a corrupt container of a named kind). Every refusal is an
``InputError``; used by :mod:`fer_video.probe` and :mod:`fer_video.decode`.
"""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from .errors import InputError


def check_file(path) -> Path:
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


def import_av():
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


def open_container(p: Path, av):
    try:
        return av.open(ffmpeg_url(p), metadata_errors="ignore")
    except av.error.EOFError:
        raise InputError(p, "truncated file: it ends inside the container header") from None
    except av.error.InvalidDataError:
        raise InputError(p, _why_unreadable(p)) from None
    except av.error.FFmpegError as e:
        raise InputError(p, f"cannot open as a video: {ffmpeg_message(e)}") from None
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception:     # PyAV itself failing on a malformed header
        raise InputError(p, _why_unreadable(p)) from None


def container_kind(p: Path) -> str:
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


def ffmpeg_message(e) -> str:
    return getattr(e, "strerror", None) or str(e)


__all__ = ["check_file", "container_kind", "ffmpeg_message", "ffmpeg_url", "import_av",
           "open_container"]
