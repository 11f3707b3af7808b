"""The per-input job every executor runs: reuse a complete report, or analyse the input and
write its report folder; never raise for a bad input.

``run_job`` is the one job of every executor (:mod:`fer_video.executors`: in this process,
worker processes, Ray tasks), so their reports are the same; it returns a
:class:`JobResult`. Models are loaded lazily, once per process (``load_models``).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import FerVideoError, InputError, SetupError, UsageError
from .pipeline import ProgressFn, analyze_video
from .settings import Settings
from .threads import ThreadPlan, plan_threads

if TYPE_CHECKING:
    from .report import SummaryRow


@dataclass(frozen=True)
class JobResult:
    """What one input's job gives every executor: its summary.csv row and whether a
    complete report was reused (nothing analysed). A failure is ``row.status == "failed"``
    with ``row.reason``; an executor makes one for a dead or timed-out worker with
    :meth:`failed`."""
    row: "SummaryRow"
    reused: bool = False

    @property
    def ok(self) -> bool:
        return self.row.status == "ok"

    @classmethod
    def failed(cls, input_path: str, reason: str, t0: float) -> "JobResult":
        """A failed input (``t0``: ``time.perf_counter()`` when it began)."""
        from .report_folder import failed_row

        return cls(failed_row(input_path, reason, t0))


_DETECTORS: dict[tuple, Any] = {}
_CLASSIFIERS: dict[tuple, Any] = {}


def load_classifier(settings: Settings):
    """The classifier for these settings, built once per process and cached; lazy (its
    weights are read on first use), so its resolved ``precision`` and ``tta`` are known
    before any weight is (the reuse rule compares them: :func:`arithmetic`)."""
    if settings.backend == "onnx":
        return _onnx_classifier(settings)
    from .classify import EmotionClassifier, resolve_device

    device = resolve_device(settings.device)
    ckey = (str(settings.model_path().resolve()), device, settings.classify_batch_size, settings.tta,
            settings.precision)
    classifier = _CLASSIFIERS.get(ckey)
    if classifier is None:
        # lazy: the weights load in analyze_video's worker thread, overlapping the first frames
        classifier = _CLASSIFIERS[ckey] = EmotionClassifier(settings.model_path(), device=device,
                                                            batch_size=settings.classify_batch_size,
                                                            lazy=True, tta=settings.tta,
                                                            precision=settings.precision)
    return classifier


def arithmetic(settings: Settings) -> dict:
    """What these settings run as here: the report JSON's ``model.backend``, ``precision``
    (``auto`` resolved: bf16 on one CPU, fp32 on another) and ``tta``.

    Without importing torch where that is sure (a rerun that reuses every report took
    0.22 s, and 1.49 s when torch was imported to learn this; session 20): the ONNX
    backend's classifier is built without torch; a precision asked for is what runs; auto
    on the CPU is bf16 exactly where the CPU has bfloat16 in hardware, which Linux's CPU
    flags say (``predict.bf16_native`` reads the same from torch). Where a GPU may be used
    (``--device`` auto or cuda on a machine with an NVIDIA device node), the classifier
    is built (torch imported) and asked."""
    if settings.backend == "torch":
        fast = _torch_arithmetic_without_torch(settings)
        if fast is not None:
            return fast
    c = load_classifier(settings)
    return {"backend": c.backend, "precision": c.precision, "tta": c.tta}


def _torch_arithmetic_without_torch(settings: Settings) -> dict | None:
    if settings.device != "cpu" and (os.path.exists("/dev/nvidiactl") or os.path.exists("/dev/nvidia0")):
        return None
    precision = settings.precision
    if precision == "auto":
        from .threads import BF16_FLAGS, cpu_flags

        flags = cpu_flags()
        if flags is None:
            return None
        precision = "bf16" if flags & BF16_FLAGS else "fp32"
    return {"backend": "torch", "precision": precision, "tta": settings.tta}


def load_models(settings: Settings):
    """(detector, classifier) for these settings, built once per process and cached."""
    if settings.backend == "onnx":
        return _onnx_detector(settings), _onnx_classifier(settings)
    from .classify import resolve_device

    device = resolve_device(settings.device)
    classifier = load_classifier(settings)
    dkey = (device, settings.min_face, settings.det_threshold, settings.max_side, settings.batch_size)
    detector = _DETECTORS.get(dkey)
    if detector is None:
        try:
            from .detect import FaceDetector
        except ImportError as exc:
            raise SetupError(f"face detector unavailable: {exc} "
                             "(install it with: pip install --no-deps facenet-pytorch==2.6.0)") from None
        detector = _DETECTORS[dkey] = FaceDetector(device=device, min_face=settings.min_face,
                                                   threshold=settings.det_threshold,
                                                   max_side=settings.max_side,
                                                   batch_size=settings.batch_size)
    return detector, classifier


def _onnx_classifier(settings: Settings):
    """The classifier on ONNX Runtime (``classify_onnx``): CPU, fp32 or int8; options it
    does not run are a one-line ``UsageError``."""
    if settings.device not in ("auto", "cpu"):
        raise UsageError(f"--backend onnx runs on the CPU (not --device {settings.device}); use --backend torch")
    # auto is fp32 here: int8 is the faster arithmetic on ONNX Runtime too, but auto takes
    # the precision whose accuracy the docs stand behind (fer_video/int8.py, docs/benchmarks.md)
    precision = "fp32" if settings.precision == "auto" else settings.precision
    if precision not in ("fp32", "int8"):
        raise UsageError(f"--backend onnx computes in fp32 or int8 (not --precision {settings.precision}); "
                         "use --backend torch")
    from .classify_onnx import OnnxEmotionClassifier

    ckey = ("onnx", str(settings.model_path().resolve()), settings.classify_batch_size, settings.tta, precision)
    classifier = _CLASSIFIERS.get(ckey)
    if classifier is None:
        classifier = _CLASSIFIERS[ckey] = OnnxEmotionClassifier(settings.model_path(), lazy=True,
                                                                batch_size=settings.classify_batch_size,
                                                                tta=settings.tta, precision=precision)
    return classifier


def _onnx_detector(settings: Settings):
    """The MTCNN cascade on ONNX Runtime (``mtcnn_onnx``), built once per process."""
    from .mtcnn_onnx import OnnxFaceDetector

    dkey = ("onnx", settings.min_face, settings.det_threshold, settings.max_side, settings.batch_size)
    detector = _DETECTORS.get(dkey)
    if detector is None:
        detector = _DETECTORS[dkey] = OnnxFaceDetector(min_face=settings.min_face, threshold=settings.det_threshold,
                                                       max_side=settings.max_side, batch_size=settings.batch_size)
    return detector


def one_line(exc: BaseException | str) -> str:
    """An exception (or text) as one short line for a user."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def run_job(input_path: str | os.PathLike, out_root: str | os.PathLike, settings: Settings, *,
            out_subdir: str | None = None, overwrite: bool = False,
            progress: ProgressFn | None = None, rel_path: str | None = None,
            threads: ThreadPlan | None = None) -> JobResult:
    """Analyse one input into ``out_root/<out_subdir or stem>/``; return its
    :class:`JobResult`.

    Reuses (``reused=True``) an input whose report is already complete and
    :func:`fer_video.report_folder.reusable` (same file at ``rel_path``, its path relative
    to the batch root, same settings and model) unless ``overwrite``. A bad input gives
    ``status="failed"`` with the reason, a bug met on it a reason naming its crash log;
    set-up and usage errors (which would fail every input), KeyboardInterrupt and
    MemoryError propagate. ``threads``: this process's plan (default: all its cores),
    applied here before the models are used. Models are loaded once per process.
    """
    from . import report_folder as folder

    input_path = str(input_path)
    sub = out_subdir or folder.report_stem(Path(input_path).stem)
    out_dir = Path(out_root) / sub
    stem = Path(sub).name
    paths = folder.output_paths(out_dir, stem)
    report_rel = Path(sub, paths["html"].name).as_posix()
    identity = folder.input_identity(input_path, rel_path)  # before analysis: a later change redoes it
    if not overwrite and folder.is_complete(out_dir, stem):
        try:
            return JobResult(folder.reused_row(input_path, paths["json"], report_rel, settings,
                                               identity, arithmetic=lambda: arithmetic(settings)),
                             reused=True)
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            pass   # unreadable, or the input, settings, model or arithmetic changed: analyse again
    t0 = time.perf_counter()
    try:
        if os.environ.get("FER_VIDEO_TEST_INTERNAL_ERROR") == "job":   # tests/test_cli.py only
            raise IndexError("test hook: an unexpected internal error in one input's job")
        plan = threads if threads is not None else plan_threads()
        plan.apply(uses_torch=settings.backend == "torch")   # idempotent; here, where the analysis needs it
        detector, classifier = load_models(settings)
        result = analyze_video(input_path, settings, detector=detector, classifier=classifier,
                               progress=progress, threads=plan)
        obj = folder.write(result, out_dir, stem, identity=identity)
    except (SetupError, UsageError):
        raise
    except InputError as exc:
        return JobResult.failed(input_path, one_line(exc.reason), t0)
    except FerVideoError as exc:
        return JobResult.failed(input_path, one_line(exc), t0)
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as exc:   # a bug met on one input must not stop a batch: crash log
        from .crash import internal_error_line

        return JobResult.failed(input_path, internal_error_line(exc, f"analysing {input_path!r}"), t0)
    row = folder.summary_row(input_path, obj, report_rel)
    row.wall_s = result.wall_s
    return JobResult(row)
