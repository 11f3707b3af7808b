#!/usr/bin/env python3
"""fp32 against bf16 on this CPU, for the shipped ResNet50 alone: training steps (autocast,
as `fer-video train` runs them) and inference (``predict.predict_probs``, as analyze and
evaluate run it), interleaved, median of ``--rounds``. Says whether the CPU has bf16 in
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

    from fer_video.checkpoint import default_model_path, load_checkpoint
    from fer_video.predict import bf16_native, bf16_runs, predict_probs, resolve_precision

    path = a.model or default_model_path()
    print(f"torch {torch.__version__}, cpu capability {torch.backends.cpu.get_cpu_capability()}, "
          f"bf16 kernels {bf16_runs('cpu')}, bf16 in hardware {bf16_native('cpu')}, "
          f"--precision auto -> {resolve_precision('auto', 'cpu')}")
    if not bf16_runs("cpu"):
        print("oneDNN has no bf16 kernels on this CPU: nothing to compare")
        return 0
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

    def infer_ms(precision: str) -> float:
        torch.set_num_threads(a.infer_threads)
        model.eval()
        predict_probs(model, crops[:32], config, cpu, batch_size=32, precision=precision)
        t = time.perf_counter()
        predict_probs(model, crops, config, cpu, batch_size=32, precision=precision)
        return (time.perf_counter() - t) / len(crops) * 1000

    res: dict[str, list[float]] = {k: [] for k in ("train fp32", "train bf16", "infer fp32", "infer bf16")}
    for _ in range(a.rounds):
        res["train fp32"].append(train_rate(False))
        res["train bf16"].append(train_rate(True))
        res["infer fp32"].append(infer_ms("fp32"))
        res["infer bf16"].append(infer_ms("bf16"))
    tf, tb = statistics.median(res["train fp32"]), statistics.median(res["train bf16"])
    i32, i16 = statistics.median(res["infer fp32"]), statistics.median(res["infer bf16"])
    print(f"training, batch 64, {a.train_threads} thread(s): fp32 {tf:.1f} img/s, bf16 autocast "
          f"{tb:.1f} img/s (bf16/fp32 {tb / tf:.2f}x) - median of {a.rounds}")
    print(f"inference, batch 32, {a.infer_threads} thread(s): fp32 {i32:.1f} ms/crop, bf16 {i16:.1f} "
          f"ms/crop (bf16/fp32 time {i16 / i32:.2f}x) - median of {a.rounds}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
