"""Lockstep groups: which cells train together, how many at once, and how long a study takes.

    $ dropcli ablate --grid --dry-run      # lists the cells with their group and estimates the time
"""

from __future__ import annotations

import math
import time

from dropcli.config import TrainConfig
from dropcli.model import param_count


def plan_groups(cells: list[TrainConfig], parallel_models: int) -> list[list[TrainConfig]]:
    """Split cells into lockstep groups of at most `parallel_models`, balanced in size."""
    from dropcli.train import group_key

    by_key: dict[tuple, list[TrainConfig]] = {}
    for c in cells:
        by_key.setdefault(group_key(c), []).append(c)
    groups = []
    for members in by_key.values():
        chunks = math.ceil(len(members) / parallel_models)
        size = math.ceil(len(members) / chunks)
        groups += [members[i : i + size] for i in range(0, len(members), size)]
    return groups


def auto_parallel_models(device, cells: list[TrainConfig]) -> int:
    """As many cells per group as free memory allows (a quarter of it), at most 8 on the CPU where
    bigger groups gain little and an interrupt would lose more, and at most 64 on a GPU."""
    import torch

    from dropcli.train import EVAL_CHUNK

    c = cells[0]
    per_cell = 4 * 4 * param_count(c.sizes)  # params, grads, 2 moments, float32
    per_cell += 4 * 3 * c.batch_size * sum(c.sizes) + 4 * EVAL_CHUNK * max(c.sizes)  # activations, eval chunk
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        cap = 64
    else:
        import os

        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        cap = 8
    return max(1, min(cap, len(cells), int(free // 4 // per_cell)))


def step_seconds(group: list[TrainConfig], device, steps: int = 10) -> float:
    """Seconds per lockstep training step of this group's shape, timed on synthetic data through
    the stepper that training uses (on CUDA the step replayed as a CUDA graph)."""
    import torch

    from dropcli.engine import Stack
    from dropcli.model import init_params
    from dropcli.stepper import make_step
    from dropcli.train import matmul_precision

    c, rows = group[0], len(group) * group[0].batch_size
    x = torch.rand(rows, c.sizes[0], device=device)
    y = torch.randint(0, c.sizes[-1], (rows,), device=device)
    idx = torch.randperm(rows, device=device)
    with matmul_precision(c.precision):
        step = make_step(Stack(group, [init_params(m.sizes, m.init, m.seed) for m in group], device), x, y)
        for _ in range(3):
            step(idx)
        step.cost.sum().item()  # the warm-up steps have finished on the device
        t0 = time.perf_counter()
        for _ in range(steps):
            step(idx)
        step.cost.sum().item()
    return (time.perf_counter() - t0) / steps


def estimate_seconds(groups: list[list[TrainConfig]], device) -> float:
    """Time a few lockstep steps of each group shape (step_seconds); scale to the whole study."""
    total, cache = 0.0, {}
    for g in groups:
        c = g[0]
        key = (len(g), c.hidden, c.batch_size, c.precision)
        if key not in cache:
            cache[key] = step_seconds(g, device)
        # a forward pass costs about a third of a training step: validation every epoch, then
        # train, validation and test accuracy of each cell at the end (one model at a time)
        per_epoch = c.steps_per_epoch + c.validation_size / c.batch_size / 3
        final = (c.n_train + c.validation_size + 10_000) / c.batch_size / 3
        total += cache[key] * (c.epochs * per_epoch + final)
    return total
