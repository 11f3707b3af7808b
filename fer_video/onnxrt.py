"""ONNX Runtime for ``--backend onnx`` (``mtcnn_onnx``, ``classify_onnx``): the import, with a
one-line error where it is missing, and the session options both use."""
from __future__ import annotations

from .errors import SetupError


def import_onnxruntime():
    """The ``onnxruntime`` module, or a one-line ``SetupError`` saying how to install it."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise SetupError(f"--backend onnx needs ONNX Runtime ({exc}); install it with: pip install onnxruntime") from None
    return onnxruntime


def session_options(threads: int = 1):
    """``threads`` intra-op threads (the thread plan's one per worker), no inter-op pool, no
    spin-waiting (a spinning thread would take the other core from decoding or the other
    network), warnings off."""
    ort = import_onnxruntime()
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = int(threads)
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3
    return so
