#!/usr/bin/env python3
"""Write the three MTCNN networks as ONNX files for ONNX Runtime (``fer_video.mtcnn_onnx``),
from facenet-pytorch's bundled weights, with torch's exporter; needs torch (the files it
writes do not).

    pip install --target /tmp/ortpkgs onnx   # the exporter needs it; analyze does not
    PYTHONPATH=/tmp/ortpkgs python bench/export_mtcnn_onnx.py [--out fer_video/models/mtcnn]

P-net's 2x2 max-pool is exported as MaxPool (ceil mode): the same maxima as
``mtcnn.max_pool_2x2_ceil``. Inputs are NCHW float32 normalised as ``mtcnn.normalise``
does; P-net's batch, height and width and R/O-net's batch are dynamic. Printed: each
file's size and the largest difference of ONNX Runtime's outputs from torch's on random
inputs (tests/test_mtcnn_onnx.py checks the shipped files the same way).
"""
from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# name -> (example input shape, dynamic axes of the input, output names)
SPECS = {"pnet": ((1, 3, 64, 64), {0: "n", 2: "h", 3: "w"}, ["reg", "prob"]),
         "rnet": ((4, 3, 24, 24), {0: "n"}, ["reg", "prob"]),
         "onet": ((4, 3, 48, 48), {0: "n"}, ["reg", "marks", "prob"])}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "fer_video" / "models" / "mtcnn")
    a = ap.parse_args()
    import numpy as np
    import onnxruntime as ort
    import torch

    from fer_video.mtcnn import load_networks, weights_dir

    a.out.mkdir(parents=True, exist_ok=True)
    nets = dict(zip(SPECS, load_networks(weights_dir(), torch.device("cpu"))))
    for name, (shape, dynamic, outputs) in SPECS.items():
        net = copy.deepcopy(nets[name]).to(memory_format=torch.contiguous_format)
        if name == "pnet":
            net.pool1 = torch.nn.MaxPool2d(2, 2, ceil_mode=True)
        path = a.out / f"{name}.onnx"
        with torch.no_grad():
            torch.onnx.export(net, (torch.randn(*shape),), str(path), input_names=["x"], output_names=outputs,
                              dynamic_axes={"x": dynamic, **{o: {0: "n"} for o in outputs}},
                              dynamo=False, opset_version=17)
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        x = torch.randn(*((3, 3, 97, 131) if name == "pnet" else (5,) + shape[1:]))
        with torch.no_grad():
            ref = [t.numpy() for t in nets[name](x)]
        diff = max(float(np.abs(o - r).max()) for o, r in zip(sess.run(None, {"x": x.numpy()}), ref))
        print(f"{path}: {path.stat().st_size / 1e3:.0f} kB, largest difference from torch {diff:.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
