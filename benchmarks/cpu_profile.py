"""Where a `dropcli train` step goes on the CPU: torch.profiler over 100 steps of the tutorial
network (batch 100, keep 0.7), grouped into matmuls, Adam, dropout and the rest, beside the
matmul bound (each of the step's matmuls alone at its shape, as benchmarks/bench.py measures it).
First the step with one part taken out at a time (no mask draw, no dropout, no Adam) is timed
interleaved with the matmuls alone, so that each part's cost inside the loop shows beside its
cost alone; then a profile of the full step is grouped against that bound.

    $ .venv/bin/python benchmarks/cpu_profile.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench import step_matmuls  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from dropcli.config import TrainConfig  # noqa: E402
from dropcli.engine import Stack  # noqa: E402
from dropcli.model import init_params  # noqa: E402
from dropcli.provenance import flushing  # noqa: E402

GROUPS = {"matmuls": ("aten::bmm", "aten::baddbmm"), "Adam": ("aten::_fused_adam_",),
          "dropout (apply; the draw is numpy, in the rest)": ("aten::mul_", "aten::_to_copy", "aten::copy_")}


def main(steps: int = 100) -> None:
    with flushing():  # as dropcli trains: torch's threads start in it, and this one computes in it
        profile_steps(steps)


def profile_steps(steps: int) -> None:
    c = TrainConfig(keep_prob=(0.7,))
    x, y = torch.rand(1, c.batch_size, 784), torch.randint(0, 10, (1, c.batch_size))
    full, best = without(c, x, y)
    bound = best["matmul bound (each alone)"]
    with profile(activities=[ProfilerActivity.CPU]) as p:
        t0 = time.perf_counter()
        for _ in range(steps):
            full.step(x.clone(), y)
        profiled = (time.perf_counter() - t0) / steps
    self_us = {e.key: e.self_cpu_time_total for e in p.key_averages()}
    print(f"{steps} profiled steps took {profiled * 1e3:.2f} ms each (the profiler adds its own cost):")
    rest = profiled * 1e3
    for name, ops in GROUPS.items():
        ms = sum(self_us.get(op, 0.0) for op in ops) / steps / 1e3
        rest -= ms
        print(f"  {name:50s} {ms:6.2f} ms  ({ms / bound / 1e3:.2f}x bound)")
    print(f"  {'rest (mask draw, ReLU, loss, bias sums, Python)':50s} {rest:6.2f} ms")


def without(c: TrainConfig, x: torch.Tensor, y: torch.Tensor, rounds: int = 25) -> tuple[Stack, dict[str, float]]:
    """Each variant timed in turn, `rounds` times over; prints the minimum of each and returns
    the warmed-up full stack with the minima (seconds), the matmul bound among them."""

    def stack(config=c):
        return Stack([config], [init_params(config.sizes, config.init, config.seed)], torch.device("cpu"))

    full, fixed, no_adam, no_drop = stack(), stack(), stack(), stack(c.replace(keep_prob=(1.0,)))
    fixed.masks.new_step()
    fixed.masks.new_step = lambda: None  # the same mask every step: dropout applied, nothing drawn
    no_adam.adam.update = lambda: None
    ops = step_matmuls(c.sizes, c.batch_size)

    def matmuls():
        for a, b, _ in ops:
            torch.bmm(a, b)

    variants = {"full step": lambda: full.step(x.clone(), y), "no mask draw (fixed mask)": lambda: fixed.step(x.clone(), y),
                "no dropout (keep 1.0)": lambda: no_drop.step(x.clone(), y), "no Adam": lambda: no_adam.step(x.clone(), y),
                "matmuls back to back": matmuls, "mask draw alone": full.masks.new_step}
    variants |= {f"matmul {i}": (lambda a=a, b=b: torch.bmm(a, b)) for i, (a, b, _) in enumerate(ops)}
    for fn in variants.values():
        for _ in range(10):
            fn()
    best = dict.fromkeys(variants, float("inf"))
    for _ in range(rounds):
        for name, fn in variants.items():
            t0 = time.perf_counter()
            for _ in range(10):
                fn()
            best[name] = min(best[name], (time.perf_counter() - t0) / 10)
    bound = sum(best.pop(k) for k in list(best) if k.startswith("matmul "))
    t = Table(title=f"the step without one part (interleaved, min of {rounds} x 10)")
    for col in ("step", "ms", "x bound", "saves ms"):
        t.add_column(col, justify="left" if col == "step" else "right")
    for name, sec in best.items():
        t.add_row(name, f"{sec * 1e3:.2f}", f"{sec / bound:.2f}", f"{(best['full step'] - sec) * 1e3:.2f}")
    t.add_row("matmul bound (each alone)", f"{bound * 1e3:.2f}", "1.00", "")
    Console().print(t)
    return full, {**best, "matmul bound (each alone)": bound}


if __name__ == "__main__":
    main()
