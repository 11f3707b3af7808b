"""`fer-video train` and `fer-video evaluate` sub-commands (registered by fer_video.cli)."""
from __future__ import annotations


def register(subparsers) -> None:
    """Add the `train` and `evaluate` sub-parsers; each sets ``func(args) -> exit code``."""
    return None
