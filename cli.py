#!/usr/bin/env python3
"""Run fer-video from a checkout without installing: ``python cli.py analyze movie.mp4``.

The installed command ``fer-video`` calls the same ``fer_video.cli.run``.
"""
from fer_video.cli import run

if __name__ == "__main__":
    raise SystemExit(run())
