#!/usr/bin/env python3
"""Write a checkpoint's network as an ONNX graph without its weights (``<stem>.graph.onnx``
next to the checkpoint), for the torch-free classifier (``fer_video.classify_onnx``), which
fills the weights in from the checkpoint's own safetensors file at load time: the weights
stay in one file, and the graph is ~100 kB. Needs torch and onnx (the graph file does not):

    pip install --target /tmp/ortpkgs onnx
    PYTHONPATH=/tmp/ortpkgs python bench/export_classifier_onnx.py [fer_video/models/fer2013_resnet50.safetensors]

The exported network is the BatchNorm-folded one fp32 runs (``predict.fold_batchnorm``),
exported without constant folding so that every initializer keeps its parameter's name
(``backbone.0.weight``, ...); each is then marked as external data, which
``classify_onnx.folded_weights`` supplies. Printed: the file, its size, and the largest
logit difference of ONNX Runtime (with the supplied weights) from torch's folded network
on random input.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?", default=str(REPO / "fer_video" / "models" / "fer2013_resnet50.safetensors"))
    a = ap.parse_args()
    import numpy as np
    import onnx
    import torch

    from fer_video.checkpoint import checkpoint_paths, load_checkpoint
    from fer_video.classify_onnx import OnnxEmotionClassifier, graph_path
    from fer_video.predict import fold_batchnorm

    weights, _ = checkpoint_paths(Path(a.model))
    model, config = load_checkpoint(weights, "cpu")
    folded = fold_batchnorm(model).to(memory_format=torch.contiguous_format).eval()
    x = torch.randn(4, config.channels, config.input_size, config.input_size)
    out = graph_path(weights)
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        full = Path(tmp) / "full.onnx"
        torch.onnx.export(folded, (x,), str(full), input_names=["x"], output_names=["logits"],
                          dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}}, dynamo=False, opset_version=17,
                          do_constant_folding=False)
        proto = onnx.load(str(full))
        for init in proto.graph.initializer:
            init.ClearField("raw_data")
            for f in ("float_data", "int64_data", "int32_data", "double_data"):
                init.ClearField(f)
            init.data_location = onnx.TensorProto.EXTERNAL
            del init.external_data[:]
            entry = init.external_data.add()
            entry.key, entry.value = "location", "checkpoint.safetensors"
        onnx.save(proto, str(out))
        ref = folded(x).numpy()
    clf = OnnxEmotionClassifier(weights)
    got = clf.logits(x.numpy())
    print(f"{out}: {out.stat().st_size / 1e3:.0f} kB, {len(proto.graph.initializer)} initializers; "
          f"largest logit difference from torch's folded network {np.abs(got - ref).max():.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
