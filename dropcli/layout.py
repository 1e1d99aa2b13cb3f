"""How a study's groups run: how many worker processes side by side, with how many threads each.

    $ dropcli ablate --grid                  # one single-threaded worker per core (where the grid repays it)
    $ dropcli ablate --grid --workers 1      # every group in this process, on all of torch's threads

On a CPU the default is one single-threaded worker per core (workers.py says why), on a machine
with several GPUs one worker per GPU, and this process alone for a grid too small to repay
starting workers (POOL_GFLOP). The group size is then spread so that every worker gets the same
number of groups, and the workers are cut to the groups there are and to the memory they need.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from dropcli.config import AUTO_WORKERS, TrainConfig

POOL_GFLOP = 1000  # less training work than this (~15 s on one core) does not repay starting workers (~3 s)
WORKER_BYTES = 1 << 30  # a worker's memory beside its group: the interpreter, torch (~0.7 GB RSS) and the data set


@dataclass(frozen=True)
class Layout:
    """How a study's groups run: `workers` processes side by side (1: in this process), each with
    `threads` torch threads (None: this process's own count, when workers == 1)."""

    workers: int = 1
    threads: int | None = None


def cpu_cores() -> int:
    """The cores this process may run on (its affinity mask, which Slurm and taskset set), else all."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def training_gflop(cells: list[TrainConfig]) -> float:
    """The matmul work of the cells' training steps, in GFLOP (forward and backward, 6 per weight and row)."""
    return sum(6 * c.batch_size * c.total_steps * sum(i * o for i, o in zip(c.sizes, c.sizes[1:]))
               for c in cells) / 1e9


def plan_layout(device, cells: list[TrainConfig], workers: int = AUTO_WORKERS) -> Layout:
    """The layout for `cells` on `device` (a torch.device). workers > 0 fixes the process count;
    0 (config.AUTO_WORKERS, the default) picks: on a CPU one single-threaded worker per core
    (cpu_cores), on a machine with several GPUs and device "cuda" one worker per GPU, else this
    process alone; in this process alone too where the grid is under POOL_GFLOP (starting workers
    would cost more than they save). Never more workers than cells; threads split the cores evenly."""
    n = workers
    if not n:
        if training_gflop(cells) < POOL_GFLOP:
            n = 1
        elif device.type == "cuda":
            import torch

            n = torch.cuda.device_count() if device.index is None else 1
        else:
            n = cpu_cores() if device.type == "cpu" else 1
    n = max(1, min(n, len(cells)))
    return Layout(n, max(1, cpu_cores() // n)) if n > 1 else Layout()


def fit_layout(layout: Layout, groups: int, group_bytes: int, fixed: bool, free: int) -> Layout:
    """The layout cut to the groups there are, and (unless `fixed`, i.e. --workers) to the workers
    that `free` bytes of memory hold, each needing WORKER_BYTES and its group's `group_bytes`."""
    n = min(layout.workers, groups)
    if not fixed:
        n = min(n, max(1, free // (WORKER_BYTES + group_bytes)))
    return layout if n == layout.workers else (Layout(n, layout.threads) if n > 1 else Layout())


def spread(k: int, cells: int, workers: int) -> int:
    """A group size no larger than k that makes the number of groups a multiple of `workers`
    (24 cells in groups of 8 on 2 workers: groups of 6, four of them, so no worker idles at the end)."""
    if workers <= 1:
        return k
    groups = workers * math.ceil(math.ceil(cells / k) / workers)
    return max(1, math.ceil(cells / groups))
