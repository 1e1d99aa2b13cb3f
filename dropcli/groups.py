"""Lockstep groups: which cells train together, how many at once, and how long a study takes.

    $ dropcli ablate --grid --dry-run      # lists the cells with their group and estimates the time

How many cells to stack is measured, not guessed: stacking pays on some CPUs (an AMD EPYC VM
trained a 24-cell grid 1.36x faster in groups of 8) and costs on others (0.92x on an Intel Xeon
with AMX), so `--parallel-models 0` times a few steps at each candidate size, at the thread count
the cells will train with, and takes the one with the most cells per second. The measurement must
not cost more than it can save: it runs only where it is under MEASURE_SHARE of the grid's own
training steps (a smaller grid trains one by one, which is never slower than one by one), and its
answer is kept per machine, torch version, thread count and network shape in the user's cache
folder (speeds.py), so it runs once per machine and shape.
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Callable, Iterator

from dropcli.config import TEST_SPLIT, TrainConfig

MEASURE_SHARE = 0.02  # time group sizes only where that costs at most 2% of the grid's training steps
WARMUP, TIMED, ROUNDS = 2, 4, 3  # steps per size and round, and interleaved rounds (the best of each is kept)
MARGIN = 1.05  # a larger group must beat a smaller one by 5%: an interrupt loses a whole group, timings are noisy


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


def memory_cap(device, cells: list[TrainConfig], per_grid: bool = True) -> int:
    """The most cells of the widest network among `cells` that a quarter of the free memory holds
    (at most 64 on a GPU, 8 on a CPU, where bigger groups gain little and an interrupt loses more),
    and (per_grid) at most len(cells)."""
    from dropcli.device import free_bytes  # torch: imported when needed, so that the progress displays start at once
    from dropcli.plan import cell_bytes

    cap = 64 if device.type == "cuda" else 8
    most = len(cells) if per_grid else cap
    return max(1, min(cap, most, int(free_bytes(device) // 4 // max(cell_bytes(c) for c in cells))))


def step_seconds(group: list[TrainConfig], device, steps: int = 10, warmup: int = 3) -> float:
    """Seconds per lockstep training step of this group's shape, timed on synthetic data through
    the stepper that training uses (on CUDA the step replayed as a CUDA graph), after `warmup` steps."""
    import torch

    from dropcli.device import matmul_precision, synchronize
    from dropcli.engine import Stack
    from dropcli.model import init_params
    from dropcli.provenance import flushing
    from dropcli.stepper import make_step

    c, rows = group[0], len(group) * group[0].batch_size
    x = torch.rand(rows, c.sizes[0], device=device)
    y = torch.randint(0, c.sizes[-1], (rows,), device=device)
    idx = torch.randperm(rows, device=device)
    with flushing(), matmul_precision(c.precision):  # as train_group computes
        step = make_step(Stack(group, [init_params(m.sizes, m.init, m.seed) for m in group], device), x, y)
        for _ in range(warmup):
            step(idx)
        synchronize(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            step(idx)
        step.cost.sum().item()
    return (time.perf_counter() - t0) / steps


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """torch.set_num_threads(threads) while inside (None: leave it), restored afterwards."""
    import torch

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def candidate_sizes(device, cells: list[TrainConfig], per_grid: bool = True) -> list[int]:
    """The group sizes measure_group_sizes times: 1, 2, 4, ... up to the memory cap (memory_cap)."""
    cap = memory_cap(device, cells, per_grid)
    return sorted({1, cap} | {2**i for i in range(1, 7) if 2**i < cap})


def measure_group_sizes(device, cells: list[TrainConfig], rounds: int = ROUNDS,
                        on_progress: Callable[[int, int], None] | None = None,
                        sizes: list[int] | None = None) -> dict[int, float]:
    """Cells per second at each group size (default: candidate_sizes), the best of `rounds`
    interleaved timings of TIMED steps after WARMUP, at torch's current thread count. on_progress(done,
    total) follows the work in cell-steps timed (a timing of k cells counts k: it takes about k
    times as long on a CPU), from (0, total) before the first."""
    sizes = sizes or candidate_sizes(device, cells)
    best = {k: 0.0 for k in sizes}
    done, total = 0, rounds * sum(sizes)
    if on_progress:
        on_progress(done, total)
    for _ in range(rounds):
        for k in sizes:
            group = [cells[i % len(cells)].replace(seed=i) for i in range(k)]
            best[k] = max(best[k], k / step_seconds(group, device, steps=TIMED, warmup=WARMUP))
            done += k
            if on_progress:
                on_progress(done, total)
    return best


def fastest(rates: dict[int, float], margin: float = MARGIN) -> int:
    """The group size with the most cells per second, where a larger size must beat the current
    choice by `margin`."""
    choice = min(rates)
    for k in sorted(rates):
        if rates[k] > margin * rates[choice]:
            choice = k
    return choice


def worth_measuring(cells: list[TrainConfig], sizes: list[int], rounds: int = ROUNDS) -> bool:
    """True when timing `sizes` trains at most MEASURE_SHARE of the cell-steps the grid itself
    trains (at best stacking saves a fraction of those; below that share, one by one it is)."""
    return rounds * (WARMUP + TIMED) * sum(sizes) <= MEASURE_SHARE * sum(c.total_steps for c in cells)


def choose_parallel_models(device, cells: list[TrainConfig], threads: int | None = None, margin: float = MARGIN,
                           on_progress: Callable[[int, int], None] | None = None) -> int:
    """Cells per lockstep group for `cells` trained with `threads` torch threads per process (None:
    this process's): the size a measurement on this machine found fastest (speeds.py caches it per
    machine, torch version, threads and shape), capped by memory and the cells; 1 (one by one)
    where the grid is too small to repay the measurement (worth_measuring). on_progress: see
    measure_group_sizes, called only when it measures (never for a single cell or a cached answer).
    A grid over widths is timed at its first cell's shape (a group holds one shape)."""
    from dropcli.speeds import cached_rates, remember_rates, speed_key
    from dropcli.train import lockstep_key

    if len(cells) == 1:
        return 1
    with torch_threads(threads):
        key = speed_key(device, cells[0])
        rates = cached_rates(key)
        if rates is None:  # every size this machine could use, so that the answer serves larger grids too
            sizes = candidate_sizes(device, cells, per_grid=False)
            if not worth_measuring(cells, sizes):
                return 1
            shape = [c for c in cells if lockstep_key(c) == lockstep_key(cells[0])]
            rates = measure_group_sizes(device, shape, on_progress=on_progress, sizes=sizes)
            remember_rates(key, rates)
    cap = memory_cap(device, cells)
    return fastest({k: r for k, r in rates.items() if k <= cap}, margin)


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


def estimate_seconds(groups: list[list[TrainConfig]], device, on_progress: Callable[[int, int], None] | None = None,
                     workers: int = 1, threads: int | None = None) -> float:
    """Time a few lockstep steps of each group shape (step_seconds) at `threads` torch threads
    (None: this process's); scale to the whole study, shared evenly by `workers` processes.
    on_progress(done, total) counts the group shapes timed, from (0, total) before the first."""
    total, cache = 0.0, {}
    shapes = {(len(g), g[0].hidden, g[0].batch_size, g[0].precision) for g in groups}
    if on_progress:
        on_progress(0, len(shapes))
    for g in groups:
        c = g[0]
        key = (len(g), c.hidden, c.batch_size, c.precision)
        if key not in cache:
            with torch_threads(threads):
                cache[key] = step_seconds(g, device)
            if on_progress:
                on_progress(len(cache), len(shapes))
        total += cache[key] * cell_steps(c)
    return total / max(1, min(workers, len(groups)))
