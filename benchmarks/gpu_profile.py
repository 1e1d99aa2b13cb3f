"""Where a lockstep step's time goes on a GPU: per-step time of the --grid's group of 24 (CUDA
graph replay) for each dropout path and precision, then the CUDA kernels of a few eager steps.

    $ python benchmarks/gpu_profile.py        (on a machine with CUDA; run by gpu_check.sh's caller)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dropcli.config import DEFAULT_SEED, TrainConfig  # noqa: E402
from dropcli.device import matmul_precision  # noqa: E402
from dropcli.engine import Stack  # noqa: E402
from dropcli.model import init_params  # noqa: E402
from dropcli.stepper import make_step  # noqa: E402


def stack_and_step(precision: str, K: int = 24, fused: bool = True, graphs: bool = True):
    dev = torch.device("cuda")
    configs = [TrainConfig(keep_prob=(0.3 + 0.1 * (k % 8),), seed=DEFAULT_SEED + k // 8, precision=precision)
               for k in range(K)]
    stack = Stack(configs, [init_params(c.sizes, c.init, c.seed) for c in configs], dev, fused_dropout=fused)
    x, y = torch.rand(55_000, 784, device=dev), torch.randint(0, 10, (55_000,), device=dev)
    return stack, make_step(stack, x, y, cuda_graphs=graphs), torch.randint(0, 55_000, (K * 100,), device=dev)


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
    variants = (("float32 (defaults)", True, "float32"), ("float32, dropout as torch ops", False, "float32"),
                ("tf32", True, "tf32"))
    for label, fused, precision in variants:
        with matmul_precision(precision):
            stack, step, idx = stack_and_step(precision, fused=fused)
            ms = per_step_ms(step, idx)
        print(f"{label:32s} {stack.dropout_path:18s} {ms:.3f} ms per step of 24 cells "
              f"= {ms * 550 * 15 / 1e3:.1f} s for the --grid's 15 epochs")
    stack, step, idx = stack_and_step("float32", graphs=False)
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
