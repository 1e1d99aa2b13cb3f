"""Where a lockstep step's time goes on a GPU: per-step time of the --grid's group of 24 (CUDA
graph replay) for each dropout path and precision, then the CUDA kernels of a few eager steps.

    $ python benchmarks/gpu_profile.py        (on a machine with CUDA; run by gpu_check.sh's caller)
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dropcli.config import TrainConfig  # noqa: E402
from dropcli.engine import Stack  # noqa: E402
from dropcli.model import init_params  # noqa: E402
from dropcli.stepper import make_step  # noqa: E402
from dropcli.train import matmul_precision  # noqa: E402


def stack_and_step(precision: str, K: int = 24, adam_per_layer: bool = False):
    dev = torch.device("cuda")
    configs = [TrainConfig(keep_prob=(0.3 + 0.1 * (k % 8),), seed=777 + k // 8, precision=precision) for k in range(K)]
    stack = Stack(configs, [init_params(c.sizes, c.init, c.seed) for c in configs], dev)
    stack.adam.per_layer = adam_per_layer
    x, y = torch.rand(55_000, 784, device=dev), torch.randint(0, 10, (55_000,), device=dev)
    return stack, make_step(stack, x, y), torch.randint(0, 55_000, (K * 100,), device=dev)


def per_step_ms(step, idx, n: int = 300) -> float:
    for _ in range(20):
        step(idx)
    best = float("inf")
    for _ in range(3):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(n):
            step(idx)
        torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - t0) / n * 1e3)
    return best


def main() -> None:
    variants = (("float32 (defaults)", "1", "float32", False), ("float32, Adam layer by layer", "1", "float32", True),
                ("float32, dropout as torch ops", "0", "float32", False), ("tf32", "1", "tf32", False))
    for label, fused, precision, per_layer in variants:
        os.environ["DROPCLI_FUSED_DROPOUT"] = fused
        with matmul_precision(precision):
            stack, step, idx = stack_and_step(precision, adam_per_layer=per_layer)
            ms = per_step_ms(step, idx)
        print(f"{label:32s} {type(stack.masks).__name__:18s} {ms:.3f} ms per step of 24 cells "
              f"= {ms * 550 * 15 / 1e3:.1f} s for the --grid's 15 epochs")
    os.environ["DROPCLI_FUSED_DROPOUT"] = "1"
    os.environ["DROPCLI_CUDA_GRAPHS"] = "0"
    stack, step, idx = stack_and_step("float32")
    for _ in range(10):
        step(idx)
    torch.cuda.synchronize()
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as p:
        for _ in range(20):
            step(idx)
        torch.cuda.synchronize()
    print(p.key_averages().table(sort_by="self_cuda_time_total", row_limit=18, max_name_column_width=60))


if __name__ == "__main__":
    main()
