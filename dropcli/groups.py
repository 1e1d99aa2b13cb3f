"""Lockstep groups: which cells train together, how many at once, and how long a study takes.

    $ dropcli ablate --grid --dry-run      # lists the cells with their group and estimates the time

How many cells to stack is measured, not guessed: stacking pays on some CPUs (an AMD EPYC VM
trained a 24-cell grid 1.36x faster in groups of 8) and costs on others (0.92x on an Intel Xeon
with AMX), so `--parallel-models 0` times a few steps at each candidate size on the device at
hand and takes the one with the most cells per second.
"""

from __future__ import annotations

import math
import time
from typing import Callable

from dropcli.config import TEST_SPLIT, TrainConfig


def plan_groups(cells: list[TrainConfig], parallel_models: int) -> list[list[TrainConfig]]:
    """Split cells into lockstep groups of at most `parallel_models`, balanced in size; only cells
    of one lockstep_key (shape and step count) share a group."""
    from dropcli.train import lockstep_key

    by_key: dict[tuple, list[TrainConfig]] = {}
    for c in cells:
        by_key.setdefault(lockstep_key(c), []).append(c)
    groups = []
    for members in by_key.values():
        chunks = math.ceil(len(members) / parallel_models)
        size = math.ceil(len(members) / chunks)
        groups += [members[i : i + size] for i in range(0, len(members), size)]
    return groups


def memory_cap(device, cells: list[TrainConfig]) -> int:
    """The most cells of the widest network among `cells` that a quarter of the free memory holds
    (at most 64 on a GPU, 8 on a CPU, where bigger groups gain little and an interrupt loses more)."""
    from dropcli.device import free_bytes  # torch: imported when needed, so that the progress displays start at once
    from dropcli.plan import cell_bytes

    cap = 64 if device.type == "cuda" else 8
    return max(1, min(cap, len(cells), int(free_bytes(device) // 4 // max(cell_bytes(c) for c in cells))))


def step_seconds(group: list[TrainConfig], device, steps: int = 10) -> float:
    """Seconds per lockstep training step of this group's shape, timed on synthetic data through
    the stepper that training uses (on CUDA the step replayed as a CUDA graph)."""
    import torch

    from dropcli.device import matmul_precision, synchronize
    from dropcli.engine import Stack
    from dropcli.model import init_params
    from dropcli.stepper import make_step

    c, rows = group[0], len(group) * group[0].batch_size
    x = torch.rand(rows, c.sizes[0], device=device)
    y = torch.randint(0, c.sizes[-1], (rows,), device=device)
    idx = torch.randperm(rows, device=device)
    with matmul_precision(c.precision):
        step = make_step(Stack(group, [init_params(m.sizes, m.init, m.seed) for m in group], device), x, y)
        for _ in range(3):
            step(idx)
        synchronize(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            step(idx)
        step.cost.sum().item()
    return (time.perf_counter() - t0) / steps


def candidate_sizes(device, cells: list[TrainConfig]) -> list[int]:
    """The group sizes measure_group_sizes times: 1, 2, 4, ... up to the memory cap (memory_cap)."""
    cap = memory_cap(device, cells)
    return sorted({1, cap} | {2**i for i in range(1, 7) if 2**i < cap})


def measure_group_sizes(device, cells: list[TrainConfig], rounds: int = 3,
                        on_progress: Callable[[int, int], None] | None = None) -> dict[int, float]:
    """Cells per second at each candidate group size (candidate_sizes), the best of `rounds`
    interleaved timings. on_progress(done, total) follows the work in cell-steps timed (a timing of
    k cells counts k: it takes about k times as long on a CPU), from (0, total) before the first."""
    sizes = candidate_sizes(device, cells)
    best = {k: 0.0 for k in sizes}
    done, total = 0, rounds * sum(sizes)
    if on_progress:
        on_progress(done, total)
    for _ in range(rounds):
        for k in sizes:
            group = [cells[i % len(cells)].replace(seed=i) for i in range(k)]
            best[k] = max(best[k], k / step_seconds(group, device, steps=5))
            done += k
            if on_progress:
                on_progress(done, total)
    return best


def choose_parallel_models(device, cells: list[TrainConfig], margin: float = 1.05,
                           on_progress: Callable[[int, int], None] | None = None) -> int:
    """The measured group size with the most cells per second; a larger group must beat a smaller
    one by `margin` (an interrupt loses a whole group, and timings are noisy). on_progress: see
    measure_group_sizes (not called for a single cell, which needs no measuring)."""
    if len(cells) == 1:
        return 1
    rates = measure_group_sizes(device, cells, on_progress=on_progress)
    choice = min(rates)
    for k in sorted(rates):
        if rates[k] > margin * rates[choice]:
            choice = k
    return choice


def validation_steps(c: TrainConfig) -> float:
    """One validation of a cell in lockstep training steps: validation_size / batch_size forward
    passes at about a third of a step each (see cell_steps)."""
    return c.validation_size / c.batch_size / 3


def cell_steps(c: TrainConfig) -> float:
    """A cell's work in lockstep training steps: its steps, plus its forward passes at about a
    third of a step each (each validation, validation_steps: every eval_interval steps and after
    the last; then train, validation and test accuracy at the end, one model at a time). The unit
    of estimate_seconds and of the progress displays."""
    v = c.validations
    per_validation = c.total_steps / v + validation_steps(c)
    final = (c.n_train + c.validation_size + TEST_SPLIT) / c.batch_size / 3
    return v * per_validation + final


def estimate_seconds(groups: list[list[TrainConfig]], device,
                     on_progress: Callable[[int, int], None] | None = None) -> float:
    """Time a few lockstep steps of each group shape (step_seconds); scale to the whole study.
    on_progress(done, total) counts the group shapes timed, from (0, total) before the first."""
    total, cache = 0.0, {}
    shapes = {(len(g), g[0].hidden, g[0].batch_size, g[0].precision) for g in groups}
    if on_progress:
        on_progress(0, len(shapes))
    for g in groups:
        c = g[0]
        key = (len(g), c.hidden, c.batch_size, c.precision)
        if key not in cache:
            cache[key] = step_seconds(g, device)
            if on_progress:
                on_progress(len(cache), len(shapes))
        total += cache[key] * cell_steps(c)
    return total
