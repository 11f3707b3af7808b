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
fp32, with the largest logit difference of ONNX Runtime from torch fp32; then ms per call
(best of 20) of the detector's three networks, torch (channels-last, as the detector runs
them) against ONNX Runtime: P-net on a 306-px pyramid level (a 512-px keyframe's largest)
and on a 64- and a 30-px region window, R-net on 8 crops of 24 px, O-net on 8 of 48 px.
"""
from __future__ import annotations

import argparse
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
    argparse.ArgumentParser(description=__doc__.split("\n")[0]).parse_args()
    try:
        import onnx  # noqa: F401
        import onnxruntime as ort
    except ImportError as exc:
        print(f"onnx_feasibility: needs onnxruntime and onnx ({exc}); see the docstring", file=sys.stderr)
        return 2
    import numpy as np
    import torch

    from fer_video.classify import EmotionClassifier

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
        # ONNX Runtime's int8 (static QDQ, weights per channel): speed only, calibrated on
        # random crops here (its accuracy would need the checkpoint's validation carve)
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

        class _Random(CalibrationDataReader):
            def __init__(self):
                self.batches = iter([{"x": np.random.default_rng(i).standard_normal((8, 3, 48, 48), np.float32)}
                                     for i in range(8)])

            def get_next(self):
                return next(self.batches, None)

        q_path = str(Path(tmp) / "emotion_int8.onnx")
        quantize_static(path, q_path, _Random(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        sess8 = ort.InferenceSession(q_path, so, providers=["CPUExecutionProvider"])
    xl = x.contiguous(memory_format=torch.channels_last)
    xn = x.numpy()
    arms = {"torch fp32": lambda v: model(xl[:len(v)])}
    from fer_video.predict import bf16_runs

    if bf16_runs("cpu"):
        bf16 = EmotionClassifier(None, device="cpu", precision="bf16").load().model
        xb = xl.to(torch.bfloat16)
        arms["torch bf16 network"] = lambda v: bf16(xb[:len(v)])
    int8 = EmotionClassifier(None, device="cpu", precision="int8").load().model
    arms["torch int8"] = lambda v: int8(x[:len(v)])
    arms["onnxruntime fp32"] = lambda v: sess.run(None, {"x": xn[:len(v)]})
    arms["onnxruntime int8"] = lambda v: sess8.run(None, {"x": xn[:len(v)]})
    with torch.no_grad():
        for n in (32, 8):
            row = ", ".join(f"{name} {_per_crop(fn, xn, n):.2f}" for name, fn in arms.items())
            print(f"ms per crop at batch {n}: {row}")
        diff = np.abs(sess.run(None, {"x": xn})[0] - model(x).numpy()).max()
    print(f"largest logit difference, onnxruntime vs torch fp32: {diff:.2e}")
    _detector_nets(ort, so)
    return 0


def _detector_nets(ort, so) -> None:
    import copy

    import numpy as np
    import torch

    from fer_video.detect import FaceDetector

    det = FaceDetector(device="cpu")
    cases = {"P-net": (det._pnet, [(1, 3, 306, 306), (1, 3, 64, 64), (1, 3, 30, 30)], {2: "h", 3: "w"}),
             "R-net": (det._rnet, [(8, 3, 24, 24)], {0: "n"}),
             "O-net": (det._onet, [(8, 3, 48, 48)], {0: "n"})}
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        for name, (net, shapes, dynamic) in cases.items():
            exported = copy.deepcopy(net)
            if name == "P-net":     # its strided-maxima pool (out=) does not export; the same max
                exported.pool1 = torch.nn.MaxPool2d(2, 2, ceil_mode=True)
            path = str(Path(tmp) / f"{name}.onnx")
            with torch.no_grad():
                torch.onnx.export(exported, (torch.randn(*shapes[0]),), path, input_names=["x"],
                                  dynamic_axes={"x": dynamic}, dynamo=False, opset_version=17)
            sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
            for shape in shapes:
                xt = torch.randn(*shape).contiguous(memory_format=torch.channels_last)
                xn = xt.contiguous().numpy()
                ref = [o.numpy() for o in net(xt)]
                diff = max(float(np.abs(a - b).max()) for a, b in zip(sess.run(None, {"x": xn}), ref))
                print(f"{name} {shape}: torch {_per_call(lambda: net(xt)):.2f} ms, onnxruntime "
                      f"{_per_call(lambda: sess.run(None, {'x': xn})):.2f} ms (max diff {diff:.0e})")


def _per_call(fn) -> float:
    fn()
    ts = []
    for _ in range(20):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return min(ts) * 1000


if __name__ == "__main__":
    sys.exit(main())
