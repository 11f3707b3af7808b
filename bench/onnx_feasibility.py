#!/usr/bin/env python3
"""Would a torch-free inference path pay? The shipped classifier through ONNX Runtime,
beside torch, on this machine (issue 12's start-up: ``import torch`` alone is over the
1.5 s budget). Not a project dependency: run it with onnxruntime and onnx importable,
for example from a scratch folder::

    pip install --target /tmp/ortpkgs onnxruntime==1.32.0 onnx onnxscript
    rm -rf /tmp/ortpkgs/numpy*            # keep the venv's numpy
    PYTHONPATH=/tmp/ortpkgs python bench/onnx_feasibility.py

Prints: ``import onnxruntime`` and ``import torch`` in fresh processes (median of 3),
the ONNX session's creation, and ms per 48-px crop (one thread, best of 5) at batch 32
and 8 for torch fp32, torch's bf16 network (``predict.inference_form``) and ONNX Runtime
fp32, with the largest logit difference of ONNX Runtime from torch fp32.
"""
from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _import_s(module: str) -> float:
    ts = []
    for _ in range(3):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", f"import {module}"], check=True)
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def _per_crop(fn, x, n: int) -> float:
    fn(x[:n])
    ts = []
    for _ in range(5):
        t = time.perf_counter()
        fn(x[:n])
        ts.append(time.perf_counter() - t)
    return min(ts) / n * 1000


def main() -> int:
    try:
        import onnx  # noqa: F401
        import onnxruntime as ort
    except ImportError as exc:
        print(f"onnx_feasibility: needs onnxruntime and onnx ({exc}); see the docstring", file=sys.stderr)
        return 2
    import numpy as np
    import torch

    from fer_video.classify import EmotionClassifier
    from fer_video.predict import inference_form

    torch.set_num_threads(1)
    print(f"fresh process, median of 3: import onnxruntime {_import_s('onnxruntime'):.2f} s, "
          f"import torch {_import_s('torch'):.2f} s")
    model = EmotionClassifier(None, device="cpu", precision="fp32").load().model
    x = torch.randn(32, 3, 48, 48)
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "emotion.onnx")
        torch.onnx.export(model, (x,), path, input_names=["x"], output_names=["logits"],
                          dynamic_axes={"x": {0: "n"}}, dynamo=False, opset_version=17)
        so = ort.SessionOptions()
        so.intra_op_num_threads = so.inter_op_num_threads = 1
        t = time.perf_counter()
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        print(f"ONNX Runtime session created in {time.perf_counter() - t:.2f} s "
              f"({Path(path).stat().st_size / 1e6:.0f} MB fp32 model)")
    form = inference_form(model, "bf16")
    xl = x.contiguous(memory_format=torch.channels_last)
    xb = xl.to(torch.bfloat16)
    xn = x.numpy()
    with torch.no_grad():
        arms = {"torch fp32": lambda v: model(xl[:len(v)]),
                "torch bf16 network": lambda v: form(xb[:len(v)]),
                "onnxruntime fp32": lambda v: sess.run(None, {"x": xn[:len(v)]})}
        for n in (32, 8):
            row = ", ".join(f"{name} {_per_crop(fn, xn, n):.2f}" for name, fn in arms.items())
            print(f"ms per crop at batch {n}: {row}")
        diff = np.abs(sess.run(None, {"x": xn})[0] - model(x).numpy()).max()
    print(f"largest logit difference, onnxruntime vs torch fp32: {diff:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
