"""Analysis settings: one dataclass shared by the CLI, the Python API and the batch runner.

Every field is recorded in each report's JSON (``Settings.to_json``), so a report says how
it was made. Validation raises ``UsageError`` (exit code 2) with a one-line message.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Optional

from .errors import UsageError
from .recipe import TTA_MODES

DEVICES = ("auto", "cpu", "cuda")


@dataclass
class Settings:
    fps: float = 5.0                    # frames sampled per second of video
    start: float = 0.0                  # seconds: analyse from here ...
    end: Optional[float] = None         # ... to here (None: to the end)
    min_face: int = 20                  # smallest face side in pixels the detector looks for
    det_threshold: float = 0.9          # detector confidence needed to keep a face
    max_side: int = 960                 # frames larger than this are downscaled for detection
    batch_size: int = 8                 # frames per detection batch
    classify_batch_size: int = 32       # face crops per classifier batch
    device: str = "auto"                # auto | cpu | cuda
    model: Optional[str] = None         # checkpoint path; None: the packaged default model
    smoothing_window_s: float = 1.0     # moving-average window for the emotion timelines
    min_segment_s: float = 0.0          # shorter emotion runs are merged into their neighbours
    min_track: Optional[int] = None     # drop faces seen in fewer samples (None: 2 for videos, 1 for stills)
    iou_threshold: float = 0.3          # tracker: box overlap needed to continue a face
    max_gap_s: float = 1.0              # tracker: a face may vanish this long and keep its id
    tta: str = "none"                   # test-time augmentation per face: none | flip | tencrop
    keyframe_every: int = 5             # full-frame detection every N-th sampled frame (1: every frame)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> "Settings":
        def bad(name: str, why: str) -> UsageError:
            return UsageError(f"invalid {name}: {why}")

        def finite(name: str, value: Any) -> float:
            try:
                v = float(value)
            except (TypeError, ValueError):
                raise bad(name, f"{value!r} is not a number") from None
            if not math.isfinite(v):
                raise bad(name, f"{value!r} is not a finite number")
            return v

        self.fps = finite("fps", self.fps)
        if self.fps <= 0:
            raise bad("fps", f"{self.fps:g} (must be > 0)")
        self.start = finite("start", self.start)
        if self.start < 0:
            raise bad("start", f"{self.start:g} (must be >= 0)")
        if self.end is not None:
            self.end = finite("end", self.end)
            if self.end <= self.start:
                raise bad("end", f"{self.end:g} (must be after start {self.start:g})")
        for name in ("min_face", "max_side", "batch_size", "classify_batch_size", "keyframe_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise bad(name.replace("_", "-"), f"{value!r} (must be an integer >= 1)")
        self.det_threshold = finite("threshold", self.det_threshold)
        if not 0.0 < self.det_threshold <= 1.0:
            raise bad("threshold", f"{self.det_threshold:g} (must be in (0, 1])")
        if self.tta not in TTA_MODES:
            raise bad("tta", f"{self.tta!r} (choose one of {', '.join(TTA_MODES)})")
        if self.device not in DEVICES:
            raise bad("device", f"{self.device!r} (choose one of {', '.join(DEVICES)})")
        for name in ("smoothing_window_s", "min_segment_s", "max_gap_s"):
            v = finite(name, getattr(self, name))
            if v < 0:
                raise bad(name, f"{v:g} (must be >= 0)")
            setattr(self, name, v)
        self.iou_threshold = finite("iou_threshold", self.iou_threshold)
        if not 0.0 < self.iou_threshold <= 1.0:
            raise bad("iou_threshold", f"{self.iou_threshold:g} (must be in (0, 1])")
        if self.min_track is not None:
            if isinstance(self.min_track, bool) or not isinstance(self.min_track, int) or self.min_track < 1:
                raise bad("min-track", f"{self.min_track!r} (must be an integer >= 1)")
        if self.model is not None:
            self.model = str(self.model)
        return self

    def min_track_for(self, is_image: bool) -> int:
        if self.min_track is not None:
            return self.min_track
        return 1 if is_image else 2

    def model_path(self) -> Path:
        from .checkpoint import default_model_path

        return Path(self.model).expanduser() if self.model else default_model_path()

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["model"] = str(self.model_path())
        return d

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> "Settings":
        """Build from keyword arguments, rejecting unknown names with a UsageError."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise UsageError(f"unknown setting(s): {', '.join(unknown)} "
                             f"(known: {', '.join(sorted(known))})")
        return cls(**kwargs)
