#!/usr/bin/env python3
"""fp32 against bf16 and int8 on this CPU, for the shipped ResNet50 alone: training steps
(autocast, as `fer-video train` runs them; where oneDNN runs bf16) and inference
(``predict.predict_probs``, as analyze and evaluate run it: fp32 on the BatchNorm-folded
network and on the model itself, bf16, int8 where torch has the x86 quantized engine),
interleaved, median of ``--rounds``. Says whether the CPU has bf16 in
hardware (AVX512_BF16 or AMX: ``predict.bf16_native``) or oneDNN only emulates it, and what
``--precision auto`` and train's autocast pick here.

    python bench/arith_speed.py                    # 2 threads for training, 1 for inference
    python bench/arith_speed.py --train-threads 1 --rounds 5

Random inputs (speed does not depend on the pixels); batch 64 for training (train's
default), 128 crops in batches of 32 for inference (analyze's batch). No test split is read.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="checkpoint (default: the shipped model)")
    ap.add_argument("--train-threads", type=int, default=2)
    ap.add_argument("--infer-threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=4, help="timed training steps per round")
    a = ap.parse_args()

    import numpy as np
    import torch

    from fer_video.checkpoint import default_model_path, load_checkpoint, load_config
    from fer_video.predict import bf16_native, bf16_runs, predict_probs, resolve_precision

    path = a.model or default_model_path()
    print(f"torch {torch.__version__}, cpu capability {torch.backends.cpu.get_cpu_capability()}, "
          f"bf16 kernels {bf16_runs('cpu')}, bf16 in hardware {bf16_native('cpu')}, "
          f"--precision auto -> {resolve_precision('auto', 'cpu')}")
    from fer_video import predict
    from fer_video.int8 import int8_engine

    bf16 = bf16_runs("cpu")
    int8 = int8_engine() is not None and bool((load_config(path).int8 or {}).get("points"))
    cpu = torch.device("cpu")
    model, config = load_checkpoint(path)
    model = model.to(memory_format=torch.channels_last)
    rng = np.random.default_rng(0)
    crops = (rng.random((128, config.input_size, config.input_size)) * 255).astype(np.uint8)
    x = torch.randn(64, config.channels, config.input_size, config.input_size).contiguous(
        memory_format=torch.channels_last)
    y = torch.randint(0, len(config.classes), (64,))
    opt = torch.optim.AdamW(model.parameters(), 1e-6)

    def train_rate(bf16: bool) -> float:
        torch.set_num_threads(a.train_threads)
        model.train()
        for i in range(a.steps + 1):                  # the first step warms the kernels up
            if i == 1:
                t = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return a.steps * len(x) / (time.perf_counter() - t)

    def infer_ms(precision: str, fold: bool = True) -> float:
        torch.set_num_threads(a.infer_threads)
        model.eval()
        predict._FOLD_BN = fold
        try:
            predict_probs(model, crops[:32], config, cpu, batch_size=32, precision=precision)
            t = time.perf_counter()
            predict_probs(model, crops, config, cpu, batch_size=32, precision=precision)
        finally:
            predict._FOLD_BN = True
        return (time.perf_counter() - t) / len(crops) * 1000

    arms = {"infer fp32 (folded)": lambda: infer_ms("fp32"), "infer fp32 (unfolded)": lambda: infer_ms("fp32", False)}
    if bf16:
        arms = {"train fp32": lambda: train_rate(False), "train bf16": lambda: train_rate(True), **arms,
                "infer bf16": lambda: infer_ms("bf16")}
    if int8:
        arms["infer int8"] = lambda: infer_ms("int8")
    res: dict[str, list[float]] = {k: [] for k in arms}
    for _ in range(a.rounds):
        for k, f in arms.items():
            res[k].append(f())
    med = {k: statistics.median(v) for k, v in res.items()}
    if bf16:
        tf, tb = med["train fp32"], med["train bf16"]
        print(f"training, batch 64, {a.train_threads} thread(s): fp32 {tf:.1f} img/s, bf16 autocast "
              f"{tb:.1f} img/s (bf16/fp32 {tb / tf:.2f}x) - median of {a.rounds}")
    else:
        print("oneDNN has no bf16 kernels on this CPU: no bf16 rows")
    ref = med["infer fp32 (folded)"]
    print(f"inference, batch 32, {a.infer_threads} thread(s), ms/crop (time against fp32 folded, "
          f"analyze's fp32), median of {a.rounds}:")
    for k, v in med.items():
        if k.startswith("infer"):
            print(f"  {k[6:]:16s} {v:6.2f} ms/crop  ({v / ref:.2f}x)")
    if not int8:
        print("  int8: not run (no x86 quantized engine, or the checkpoint has no int8 ranges)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
