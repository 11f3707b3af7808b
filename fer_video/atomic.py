"""Atomic file output: write to a temporary sibling, fsync, then rename into place.

A crash or Ctrl-C leaves either the old file, no file, or a ``*.tmp`` leftover — never a
half-written file under the final name. Also how names are shown: :func:`visible_text`
(undecodable bytes, for files) and :func:`display_text` (also control and bidi characters,
for the terminal and HTML pages).
"""
from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` if the block succeeds."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def visible_text(text: str) -> str:
    """``text`` with every byte that is not UTF-8 shown as ``\\xNN``.

    Paths are kept as ``str`` the way ``os.fsdecode`` makes them: a name byte that is not
    UTF-8 (``b'clip_\\xff.mp4'``) becomes a lone surrogate (``'clip_\\udcff.mp4'``),
    which no UTF-8 file or terminal can take. Written or printed, it reads ``clip_\\xff.mp4``
    (four visible characters); valid text is unchanged.
    """
    if text.isascii():
        return text
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


# Characters that would make a name read as another one, or not show at all: the C0 and
# C1 controls (a line feed, an escape, ...), DEL, and the bidirectional marks, embeddings,
# overrides and isolates (U+202E RIGHT-TO-LEFT OVERRIDE shows "evil\u202egnp.mp4" as
# "evil4pm.png"), and the line and paragraph separators.
_HIDDEN_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029"
                           "\u202a-\u202e\u2066-\u2069]")


def display_text(text: str) -> str:
    """``text`` as a terminal line or an HTML page shows a name: :func:`fer_video.atomic.visible_text` (an
    undecodable byte as ``\\xNN``), and each control, bidirectional-formatting or
    line-separator character as a visible ``⟨U+XXXX⟩`` (``evil⟨U+202E⟩gnp.mp4``), so that
    what is shown is the name's characters in their order. Other text is unchanged."""
    return _HIDDEN_CHARS.sub(lambda m: f"⟨U+{ord(m.group()):04X}⟩", visible_text(text))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` as UTF-8, a name's undecodable bytes as ``\\xNN`` (:func:`visible_text`)."""
    atomic_write_bytes(path, visible_text(text).encode("utf-8"))
