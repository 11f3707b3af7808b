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

With ``--int8`` it also writes ``<stem>.int8.graph.onnx``: the int8 network of
``fer_video.int8_steps`` in QDQ form (uint8 activations at the checkpoint's calibrated
points, int8 weights per channel, int32 biases), its numbers external too
(``int8_steps.int8_initializers``). Printed: the share of random-input rows whose top class
is torch int8's, and the largest logit difference from it.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def external(init, onnx) -> None:
    """Mark an initializer as external data, its values dropped (the loader supplies them)."""
    init.ClearField("raw_data")
    for f in ("float_data", "int64_data", "int32_data", "double_data"):
        init.ClearField(f)
    init.data_location = onnx.TensorProto.EXTERNAL
    del init.external_data[:]
    entry = init.external_data.add()
    entry.key, entry.value = "location", "checkpoint.safetensors"


def int8_graph(values: dict, plan, input_size: int, channels: int, onnx):
    """The QDQ graph of ``plan`` (``int8_steps.Plan``); ``values`` gives each initializer's
    dtype and shape (``int8_steps.int8_initializers`` of the checkpoint)."""
    from onnx import helper

    from fer_video.int8_steps import AddRelu

    nodes, n = [], [0]

    def uid(stem: str) -> str:
        n[0] += 1
        return f"{stem}#{n[0]}"

    def dq(point: str) -> str:
        """A DequantizeLinear of the point's rounded tensor, one per consumer."""
        out = uid(point + ".dq")
        nodes.append(helper.make_node("DequantizeLinear", [point + ".q", f"q.{point}.s", f"q.{point}.z"], [out]))
        return out

    def q(x: str, point: str) -> None:
        nodes.append(helper.make_node("QuantizeLinear", [x, f"q.{point}.s", f"q.{point}.z"], [point + ".q"]))

    q("x", "input")
    for st in plan.steps:
        if isinstance(st, AddRelu):
            y = uid(st.point + ".sum")
            nodes.append(helper.make_node("Add", [dq(st.a), dq(st.b)], [y]))
            r = uid(st.point + ".relu")
            nodes.append(helper.make_node("Relu", [y], [r]))
            q(r, st.point)
            continue
        w, b = uid(st.key + ".w"), uid(st.key + ".b")
        nodes.append(helper.make_node("DequantizeLinear", [st.key + ".wq", st.key + ".ws", st.key + ".wz"], [w], axis=0))
        nodes.append(helper.make_node("DequantizeLinear", [st.key + ".bq", st.key + ".bs", st.key + ".bz"], [b], axis=0))
        k = values[st.key + ".wq"].shape[-1]
        y = uid(st.key + ".y")
        nodes.append(helper.make_node("Conv", [dq(st.source), w, b], [y], kernel_shape=[k, k],
                                      strides=[st.stride, st.stride], pads=[k // 2] * 4))
        if st.relu:
            r = uid(st.key + ".relu")
            nodes.append(helper.make_node("Relu", [y], [r]))
            y = r
        q(y, st.point)
        if st.point == "stem" and plan.stem_max_pool:
            # the max-pool works on the rounded stem output and keeps its point
            nodes[-1].output[0] = "stem.pre.q"
            d, m = uid("stem.pre.dq"), uid("stem.pool")
            nodes.append(helper.make_node("DequantizeLinear", ["stem.pre.q", "q.stem.s", "q.stem.z"], [d]))
            nodes.append(helper.make_node("MaxPool", [d], [m], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]))
            q(m, "stem")
    h = plan.head
    x = dq(h.source)
    if h.kind == "seed":
        p, bn = uid("head.pool"), uid("head.bn")
        nodes.append(helper.make_node("MaxPool", [x], [p], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1))
        nodes.append(helper.make_node("BatchNormalization", [p, "head.bn.weight", "head.bn.bias",
                                                             "head.bn.running_mean", "head.bn.running_var"], [bn]))
        x = bn
    else:
        p = uid("head.gap")
        nodes.append(helper.make_node("GlobalAveragePool", [x], [p]))
        x = p
    f = uid("head.flat")
    nodes.append(helper.make_node("Flatten", [x], [f], axis=1))
    nodes.append(helper.make_node("Gemm", [f, "head.fc.weight", "head.fc.bias"], ["logits"], transB=1))
    inits = []
    for name, v in values.items():
        t = onnx.TensorProto(name=name, data_type=helper.np_dtype_to_tensor_dtype(v.dtype), dims=list(v.shape))
        external(t, onnx)
        inits.append(t)
    classes = values["head.fc.bias"].shape[0]
    graph = helper.make_graph(nodes, "fer-video-int8",
                              [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", channels, input_size, input_size])],
                              [helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["n", classes])],
                              initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="fer-video")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?", default=str(REPO / "fer_video" / "models" / "fer2013_resnet50.safetensors"))
    ap.add_argument("--int8", action="store_true", help="also write the int8 QDQ graph")
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
            external(init, onnx)
        onnx.save(proto, str(out))
        ref = folded(x).numpy()
    clf = OnnxEmotionClassifier(weights)
    got = clf.logits(x.numpy())
    print(f"{out}: {out.stat().st_size / 1e3:.0f} kB, {len(proto.graph.initializer)} initializers; "
          f"largest logit difference from torch's folded network {np.abs(got - ref).max():.1e}")
    if a.int8:
        from safetensors.numpy import load_file

        from fer_video.classify_onnx import folded_weights, int8_graph_path
        from fer_video.int8 import int8_network
        from fer_video.int8_steps import int8_initializers, int8_steps

        state = load_file(str(weights))
        plan = int8_steps(state.keys(), config.stem)
        values = int8_initializers(folded_weights(state), config.int8["points"], plan)
        out8 = int8_graph_path(weights)
        proto8 = int8_graph(values, plan, config.input_size, config.channels, onnx)
        onnx.save(proto8, str(out8))
        xs = torch.randn(64, config.channels, config.input_size, config.input_size) * 0.6
        with torch.no_grad():
            ref8 = int8_network(fold_batchnorm(model), config)(xs).numpy()
        got8 = OnnxEmotionClassifier(weights, precision="int8").logits(xs.numpy())
        agree = float(np.mean(got8.argmax(1) == ref8.argmax(1)))
        print(f"{out8}: {out8.stat().st_size / 1e3:.0f} kB, {len(values)} initializers; on random input, "
              f"top class as torch int8's on {agree:.3f} of rows, largest logit difference {np.abs(got8 - ref8).max():.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
