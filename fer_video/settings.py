"""Analysis settings: one dataclass shared by the CLI, the Python API and the batch runner.

Every option is written once, here: a field's default, and in its ``metadata`` its
command-line flag, help, metavar, check and whether it changes results
(:func:`option`). :func:`add_settings_options` builds ``fer-video analyze``'s options from
the fields (as :func:`fer_video.recipe.add_recipe_options` does for training), the same
checks run on the CLI's values and on the Python API's (``Settings.validate``: a one-line
``UsageError``, exit code 2), and :data:`NOT_IN_RESULT` (the fields that change speed
only) is what the reuse rule ignores. Every field is recorded in each report's JSON
(``Settings.to_json``), so a report says how it was made.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from .errors import UsageError
from .recipe import BACKENDS, PRECISIONS, TTA_MODES

DEVICES = ("auto", "cpu", "cuda")


# ---------------------------------------------------------------- checks: value -> value, or ValueError

def _show(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else repr(v)


def _number(v: Any) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{v!r} is not a number") from None
    if not math.isfinite(x):
        raise ValueError(f"{v!r} is not a finite number")
    return x


def _positive(v: Any) -> float:
    x = _number(v)
    if x <= 0:
        raise ValueError(f"{_show(x)} (must be > 0)")
    return x


def _not_negative(v: Any) -> float:
    x = _number(v)
    if x < 0:
        raise ValueError(f"{_show(x)} (must be >= 0)")
    return x


def _fraction(v: Any) -> float:
    x = _number(v)
    if not 0.0 < x <= 1.0:
        raise ValueError(f"{_show(x)} (must be in (0, 1])")
    return x


def _count(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"{v!r} (must be an integer >= 1)")
    return v


def _device(v: Any) -> str:
    """auto, cpu, cuda or cuda:N: the spellings ``classify.resolve_device`` (the one device
    resolver, also train's and evaluate's) takes; whether CUDA is there is its check, at run time."""
    d = str(v).strip().lower()
    if d in DEVICES or (d.startswith("cuda:") and d[5:].isdigit()):
        return d
    raise ValueError(f"{v!r} (choose auto, cpu, cuda or cuda:N)")


def _one_of(choices: Sequence[str]) -> Callable[[Any], str]:
    def check(v: Any) -> str:
        if v not in choices:
            raise ValueError(f"{v!r} (choose one of {', '.join(choices)})")
        return v
    return check


def option(default: Any, help: Optional[str] = None, *, flag: Optional[str] = None,
           check: Optional[Callable[[Any], Any]] = None, affects_result: bool = True,
           group: Optional[str] = None, metavar: Optional[str] = None,
           choices: Optional[Sequence[str]] = None, type: Optional[type] = None):
    """A settings field and its analyze option. ``help`` None: not a command-line option
    (the Python API only). ``flag``: the option's name when not ``--field-name``;
    ``check``: value -> value, ``ValueError`` with the reason (also the CLI's type check;
    ``choices`` make one); ``affects_result=False``: the field changes speed only, so a
    report made with another value is still reused; ``group``: its ``--help`` section;
    ``type``: the CLI's parser when the default is None."""
    if choices is not None:
        check = _one_of(tuple(choices))
    meta = dict(help=help, flag=flag, check=check, affects_result=affects_result, group=group,
                metavar=metavar, choices=tuple(choices) if choices else None, type=type)
    return field(default=default, metadata=meta)


@dataclass
class Settings:
    fps: float = option(5.0, "frames analysed per second of video (default: 5)",
                        check=_positive, group="sampling")
    start: float = option(0.0, "start at this time in seconds (default: 0)", check=_not_negative,
                          group="sampling", metavar="S")
    end: Optional[float] = option(None, "stop at this time in seconds (default: the end)",
                                  check=_positive, group="sampling", metavar="S", type=float)
    stall_timeout: float = option(
        300.0, "fail an input when its decoding gives no frame for S seconds (a read blocked on a "
               "stalled mount, a decoder that does not return); the run goes on. Needs no worker "
               "processes, unlike --timeout (default: 300)",
        check=_positive, affects_result=False, group="sampling", metavar="S")
    min_face: int = option(20, "smallest face side in pixels to detect (default: 20)", check=_count,
                           group="faces", metavar="PX")
    det_threshold: float = option(0.9, "face detector confidence in (0, 1] (default: 0.9)",
                                  flag="--threshold", check=_fraction, group="faces", metavar="P")
    max_side: int = option(960, check=_count)    # frames larger are downscaled for detection
    batch_size: int = option(8, "frames per face-detection batch (default: 8)", check=_count,
                             affects_result=False, group="model and hardware", metavar="N")
    classify_batch_size: int = option(32, check=_count, affects_result=False)  # crops per batch
    device: str = option("auto", "auto | cpu | cuda | cuda:N; auto takes CUDA when present (default: auto)",
                         check=_device, metavar="DEVICE",
                         affects_result=False, group="model and hardware")
    # the model is compared by its weights' SHA-256, not by its path
    model: Optional[str] = option(None, "emotion checkpoint (.safetensors with its .json); default: "
                                        "the packaged model", affects_result=False,
                                  group="model and hardware", metavar="PATH", type=str)
    smoothing_window_s: float = option(
        1.0, "moving-average window in seconds for emotion timelines (default: 1; 0: off)",
        flag="--smoothing", check=_not_negative, group="timelines", metavar="S")
    min_segment_s: float = option(
        0.0, "merge emotion segments shorter than S seconds into neighbours (default: 0)",
        flag="--min-segment", check=_not_negative, group="timelines", metavar="S")
    min_track: Optional[int] = option(
        None, "ignore faces seen in fewer than N sampled frames (default: 2 for videos, 1 for images)",
        check=_count, group="faces", metavar="N", type=int)
    iou_threshold: float = option(0.3, check=_fraction)  # tracker: overlap to continue a face
    max_gap_s: float = option(1.0, check=_not_negative)  # tracker: a face may vanish this long
    tta: str = option("none", "test-time augmentation: each face's probabilities are the mean over "
                              "it and its mirror image (flip: 2x the classifier's work) or over ten "
                              "crops (tencrop: 10x) (default: none)", choices=TTA_MODES,
                      group="model and hardware")
    precision: str = option("auto", "arithmetic of the emotion classifier: bf16 halves its time on a "
                                    "CPU with native bfloat16 (AVX512_BF16 or AMX), doubles it on "
                                    "one that only emulates it (other AVX-512 CPUs), and moves a "
                                    "probability by at most ~0.01; int8 cuts it to about a quarter "
                                    "on x86 CPUs, top class the same as fp32's on ~98%% of faces "
                                    "(needs a checkpoint calibrated for it); fp32 gives the same "
                                    "figures on every machine; auto: bf16 where the CPU has it "
                                    "natively, else fp32 (default: auto)", choices=PRECISIONS,
                            group="model and hardware")
    backend: str = option("torch", "the runtime of the face detector and the emotion classifier: torch, "
                                   "or onnx (ONNX Runtime on the CPU, torch never imported: about 1.3 s "
                                   "quicker to start, detection ~1.2-1.3x slower, the classifier in "
                                   "fp32 (auto) or int8, --tta none or flip) (default: torch)", choices=BACKENDS,
                          group="model and hardware")
    keyframe_every: int = option(
        5, "track-guided detection: the whole frame is searched for faces on every N-th sampled "
           "frame (and the first, after a shot cut, when a face is lost); in between only around "
           "the faces already found, so a face that enters is found within N sampled frames. "
           "1: search every frame (default: 5)", check=_count, group="faces", metavar="N")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> "Settings":
        for f in fields(self):
            check, value = f.metadata.get("check"), getattr(self, f.name)
            if check is None or (value is None and f.default is None):
                continue
            try:
                setattr(self, f.name, check(value))
            except ValueError as exc:
                raise UsageError(f"invalid {label(f)}: {exc}") from None
        if self.end is not None and self.end <= self.start:
            raise UsageError(f"invalid end: {self.end:g} (must be after start {self.start:g})")
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


# Settings that change speed only: a report made with other values of these is reused
# (report_folder's reuse rule; the model is compared by its weights' SHA-256 there).
NOT_IN_RESULT = frozenset(f.name for f in fields(Settings) if not f.metadata["affects_result"])


def flag(f) -> str:
    """A field's command-line flag."""
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def label(f) -> str:
    """A field's name in messages: its flag without the dashes (``threshold``, ``min-face``),
    or the field's own name when it is not a command-line option."""
    return flag(f)[2:] if f.metadata.get("help") else f.name


def _cli_type(f):
    """The CLI's type check of a field: parse the text, then the field's check."""
    import argparse

    kind = f.metadata.get("type") or type(f.default)
    check = f.metadata.get("check")

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        try:
            return check(value) if check is not None else value
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = kind.__name__
    return parse


def add_settings_options(parser, groups: Sequence[str]) -> None:
    """Add one option per Settings field whose ``group`` is in ``groups``, grouped in that
    order, each with its flag, default, help, metavar and check (``dest``: the field)."""
    for name in groups:
        group = parser.add_argument_group(name)
        for f in fields(Settings):
            if f.metadata.get("help") and f.metadata.get("group") == name:
                group.add_argument(flag(f), **_cli_kwargs(f))


def _cli_kwargs(f) -> dict[str, Any]:
    """argparse's arguments for a field: dest, default, help, choices or type, metavar."""
    meta = f.metadata
    kw: dict[str, Any] = {"dest": f.name, "default": f.default, "help": meta["help"]}
    if meta.get("choices"):
        kw["choices"] = meta["choices"]
    elif meta.get("check") is not None or meta.get("type") not in (None, str):
        kw["type"] = _cli_type(f)
    if meta.get("metavar"):
        kw["metavar"] = meta["metavar"]
    return kw


def settings_from_args(args) -> Settings:
    """The Settings of parsed analyze options (every field that is an option)."""
    return Settings(**{f.name: getattr(args, f.name) for f in fields(Settings)
                       if f.metadata.get("help")})
