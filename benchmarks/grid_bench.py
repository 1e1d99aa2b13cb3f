"""A grid's throughput: one process against worker processes, both against the grid's matmul bound.

    $ .venv/bin/python benchmarks/grid_bench.py --rounds 3     # this part of `make bench` alone

The grid is the standard 24 cells (8 keep probabilities x 3 seeds) cut to GRID_EPOCHS epochs on
GRID_IMAGES images, run by `run_study` into a fresh study folder as `dropcli ablate` runs it
(worker start, group-size choice, training, evaluation, commits), once in one process on all of
torch's threads (`--workers 1`) and once with the automatic layout (one single-threaded worker
per core), interleaved, the minimum of rounds quoted. The grid's matmul bound is its matmul work
alone: every training step's 14 matmuls and every evaluation forward pass (validation each epoch,
then the training, validation and test sets, and the test set again for a best epoch before the
last), each matmul timed alone at its shape, arranged the faster of two ways: one process with
all threads, or one single-threaded process per core timed while every core runs one. Its engine
bound is the same steps and evaluation rows as dropcli's engine runs them (engine_seconds: a step
is about 1.5x its matmuls), one single-threaded process per core: what the grid costs beyond it is
the running of the grid (starting workers, cells and commits). The small
grids (the issue's 8-cell one and the 24-cell one, in one process) time the automatic group size
against one by one.

A command on workers starts their forkserver first (worker_start.warm_up), and it imports torch
(3-4 s here) while the command imports scipy and torch and loads the data (4.5 s after it on the
2-core AVX2 EPYC), so a worker is ready when the command's pool starts. This process has imported
all that already, so the workers' run starts the forkserver and waits until it is ready before its
clock starts; its CPU seconds still count the forkserver's imports. Whole commands, timed in turn
(old code against new, or --workers 1 against the default), are the cross-check (benchmarks/RESULTS.md).

On a machine that others load, wall times measure their load as much as dropcli. Single-threaded
processes do not spin while they wait, so their CPU seconds do not grow with it: the per-core
bound is timed in CPU seconds, and the workers' run is also given as its CPU seconds (every
process of it: this one, and the workers with their start) over the cores, the wall time it would
take on a machine nobody else uses. The table gives both, and the machine's load average.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import forkserver
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dropcli.config import EVAL_CHUNK, TEST_SPLIT, TRAIN_SPLIT, TrainConfig  # noqa: E402
from dropcli.grid import GridSpec, expand  # noqa: E402
from dropcli.worker_start import start_forkserver  # noqa: E402

TRAIN_PART = TRAIN_SPLIT - TrainConfig().validation_size  # the training part a grid's cells draw their images from
GRID_EPOCHS, GRID_IMAGES = 2, 5000  # the 24-cell grid, cut for time (a cell is a fifth of a full epoch's work)
GRID = (GridSpec(train_sizes=(GRID_IMAGES,)), TrainConfig(epochs=GRID_EPOCHS))
SMALL = (GridSpec(keep_probs=((0.4,), (0.6,), (0.8,), (1.0,)), seeds=(777, 778), train_sizes=(10_000,)),
         TrainConfig(epochs=2))  # the 8-cell grid


def best_time(fn, repeats: int = 5, number: int = 20, clock=time.perf_counter) -> float:
    """The best of `repeats` means of `number` calls, in seconds of `clock` (wall time; or
    time.process_time, CPU time, for a single-threaded process on a machine others share), after 3
    warm-up calls."""
    for _ in range(3):
        fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = clock()
        for _ in range(number):
            fn()
        best = min(best, (clock() - t0) / number)
    return best


def step_matmuls(sizes: tuple[int, ...], batch: int) -> list[tuple[torch.Tensor, torch.Tensor, int]]:
    """The matmuls of one training step, with the operand layouts the engine uses, and their FLOPs."""
    ops = []
    acts = [torch.rand(1, batch, n) for n in sizes[:-1]]
    grads = [torch.randn(1, batch, n) for n in sizes[1:]]
    weights = [torch.randn(1, i, o) * 0.05 for i, o in zip(sizes[:-1], sizes[1:])]
    for a, W in zip(acts, weights):  # forward
        ops.append((a, W, 2 * batch * W.shape[1] * W.shape[2]))
    for a, d in zip(acts, grads):  # weight gradients
        ops.append((a.transpose(1, 2), d, 2 * batch * a.shape[2] * d.shape[2]))
    for d, W in list(zip(grads, weights))[1:]:  # input gradients (none for the first layer)
        ops.append((d, W.transpose(1, 2), 2 * batch * W.shape[1] * W.shape[2]))
    return ops


def matmul_seconds(sizes: tuple[int, ...], batch: int, clock=time.perf_counter) -> dict:
    """Seconds of one training step's matmuls and of one evaluation row's forward matmuls (EVAL_CHUNK
    rows at a time, as evaluation runs them), each matmul timed alone, at torch's current threads."""
    step = sum(best_time(lambda a=a, b=b: torch.bmm(a, b), number=30, clock=clock)
               for a, b, _ in step_matmuls(sizes, batch))
    chunk = sum(best_time(lambda a=torch.rand(EVAL_CHUNK, i), W=torch.randn(i, o): torch.mm(a, W), number=5, clock=clock)
                for i, o in zip(sizes[:-1], sizes[1:]))
    return {"step": step, "row": chunk / EVAL_CHUNK}


_barrier = None  # a worker's barrier, set by _single_thread


def _single_thread(barrier) -> None:
    global _barrier
    torch.set_num_threads(1)
    _barrier = barrier


def engine_seconds(cells: list[TrainConfig], clock=time.perf_counter) -> dict:
    """Seconds of one training step and of one evaluation row as dropcli's engine runs them, at
    torch's current threads: "engine_step", a step of one cell as train_group takes it (its batch
    gathered by stepper.make_step from a training part of TRAIN_PART rows at random indices, then
    engine.Stack.step, inside provenance.flushing), the mean over the cells' distinct configs, each
    warmed up; "engine_row", Stack.logits and its argmax over TEST_SPLIT rows, EVAL_CHUNK at a time,
    per row. What the grid costs beyond these is the running of it: starting workers and cells,
    batch orders, copies of the best weights, commits, progress."""
    from dropcli.engine import Stack
    from dropcli.model import init_params
    from dropcli.provenance import flushing
    from dropcli.stepper import make_step

    configs = list({c.replace(seed=777): None for c in cells})  # the distinct shapes and keep probabilities
    c0 = configs[0]
    part = torch.rand(TRAIN_PART, c0.sizes[0]), torch.randint(0, c0.sizes[-1], (TRAIN_PART,))
    batches = torch.randint(0, TRAIN_PART, (64, c0.batch_size))
    rows, at = torch.rand(TEST_SPLIT, c0.sizes[0]), [0]

    def steps(steppers) -> None:
        at[0] = (at[0] + 1) % len(batches)
        for stepper in steppers:
            stepper(batches[at[0]])

    with flushing():
        stacks = [Stack([c], [init_params(c.sizes, c.init, c.seed)], torch.device("cpu")) for c in configs]
        steppers = [make_step(s, *part) for s in stacks]
        step = best_time(lambda: steps(steppers), number=5, clock=clock) / len(stacks)
        row = best_time(lambda: stacks[0].logits(rows, EVAL_CHUNK).argmax(2), repeats=3, number=2, clock=clock) / TEST_SPLIT
    return {"engine_step": step, "engine_row": row}


def _timed_together(cells: list[TrainConfig]) -> dict:
    _barrier.wait()  # every core starts at once: each process times its work while the others run theirs
    c = cells[0]  # CPU time: what others' load cannot inflate
    return {**matmul_seconds(c.sizes, c.batch_size, clock=time.process_time),
            **engine_seconds(cells, clock=time.process_time)}


def per_core_seconds(cells: list[TrainConfig], cores: int) -> dict:
    """matmul_seconds and engine_seconds in CPU seconds, in one single-threaded process per core, all
    at once; the mean over the processes."""
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(cores, mp_context=ctx, initializer=_single_thread, initargs=(ctx.Barrier(cores),)) as ex:
        times = list(ex.map(_timed_together, [cells] * cores))
    return {k: statistics.mean(t[k] for t in times) for k in times[0]}


def grid_work(cells: list[TrainConfig], runs=None) -> tuple[int, int]:
    """(training steps, evaluation rows) of the cells; `runs` (their runs.csv) adds the test set for
    each cell whose best validation epoch came before its last."""
    steps = sum(c.total_steps for c in cells)
    rows = sum(c.validations * c.validation_size + c.n_train + c.validation_size + TEST_SPLIT for c in cells)
    if runs is not None:
        rows += TEST_SPLIT * int((runs["best_step"] < runs["steps"]).sum())
    return steps, rows


def grid_bound(cells: list[TrainConfig], runs, cores: int) -> dict:
    """The grid's matmul bound in seconds: one process with all threads (wall time), one
    single-threaded process per core (CPU time, see per_core_seconds), and the faster; and its
    engine bound: the grid's steps and evaluation rows as the engine runs them (engine_seconds),
    one single-threaded process per core."""
    c = cells[0]
    steps, rows = grid_work(cells, runs)
    together = matmul_seconds(c.sizes, c.batch_size)
    apart = per_core_seconds(cells, cores)
    one = steps * together["step"] + rows * together["row"]
    per_core = (steps * apart["step"] + rows * apart["row"]) / cores
    engine = (steps * apart["engine_step"] + rows * apart["engine_row"]) / cores
    return {"bound_one_process_s": one, "bound_per_core_s": per_core, "bound_s": min(one, per_core),
            "engine_bound_s": engine, "engine_step_ms": apart["engine_step"] * 1e3,
            "matmul_step_ms": apart["step"] * 1e3}


def cpu_seconds() -> float:
    """CPU seconds (user and system) of this process and of its children that have ended: the
    forkserver, with the workers it forked and reaped."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run_grid(grid: tuple[GridSpec, TrainConfig], workers: int, parallel_models: int = 0) -> dict:
    """Wall and CPU seconds of run_study over the grid into a new folder, with its counts and runs.csv."""
    from dropcli.ablate import run_study
    from dropcli.plan import make_plan
    from dropcli.tables import read_runs

    with tempfile.TemporaryDirectory() as tmp:
        plan = make_plan(*grid, Path(tmp) / "study")
        if workers != 1:  # started as ablate starts it, first (worker_start.warm_up); see the module's docstring
            probe = start_forkserver().Process(target=int)
            probe.start()  # the forkserver serves it once its imports are done
            probe.join()
        t0, c0 = time.perf_counter(), cpu_seconds()
        counts = run_study(plan, torch.device("cpu"), parallel_models=parallel_models, workers=workers)
        # a command's forkserver ends with it: end this one, so that its CPU (its imports included) and
        # its workers' are counted once it is reaped, and the next run starts its own
        forkserver._forkserver._stop()
        seconds, cpu = time.perf_counter() - t0, cpu_seconds() - c0
        runs = read_runs(Path(tmp) / "study" / "runs.csv")
    return {"s": seconds, "cpu_s": cpu, "k": counts["parallel_models"], "workers": counts["workers"],
            "threads": counts["threads"], "runs": runs}


def lscpu() -> str:
    """The CPU as lscpu names it: model name, family/model, cores, the vector extensions that matter."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown CPU (no lscpu)"
    f = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in out.splitlines())}
    flags = set(f.get("Flags", "").split())
    isa = [x for x in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if x in flags]
    return (f"{f.get('Model name', '?')} (family {f.get('CPU family', '?')}, model {f.get('Model', '?')}), "
            f"{os.cpu_count()} CPUs, {' '.join(isa) or 'no AVX2'}")


def grid_round() -> dict:
    """One interleaved round: the 24-cell grid in one process and on workers, its bound, and the
    automatic group size against one by one on the 8-cell and 24-cell grids (one process)."""
    from dropcli.ablate import arrange
    from dropcli.layout import cpu_cores

    cells, load = expand(*GRID), os.getloadavg()[0]
    alone = run_grid(GRID, workers=1)
    pooled = run_grid(GRID, workers=0)
    row = {"grid_one_process_s": alone["s"], "grid_one_process_k": alone["k"], "grid_one_process_threads": alone["threads"],
           "grid_workers_s": pooled["s"], "grid_workers_cpu_s": pooled["cpu_s"], "grid_workers": pooled["workers"],
           "grid_workers_threads": pooled["threads"], "grid_workers_k": pooled["k"],
           **grid_bound(cells, alone["runs"], cpu_cores())}
    for name, grid in (("grid24", GRID), ("grid8", SMALL)):
        # where the automatic size is 1 (a grid too small to time sizes, and none cached), one by one is the
        # very same run: nothing to compare
        k = alone["k"] if name == "grid24" else arrange(expand(*grid), torch.device("cpu"), workers=1)[1]
        row[f"{name}_auto_k"] = k
        if k > 1:
            row[f"{name}_auto_s"] = alone["s"] if name == "grid24" else run_grid(grid, workers=1)["s"]
            row[f"{name}_one_by_one_s"] = run_grid(grid, workers=1, parallel_models=1)["s"]
    row["load_average"] = (load + os.getloadavg()[0]) / 2  # of the machine, others' work included, over 1 minute
    return row


def summarise(rounds: list[dict]) -> dict:
    """The minimum of each time over the rounds, cells per hour and the ratios to the bound."""
    best = {k: min(r[k] for r in rounds if k in r) for k in dict.fromkeys(k for r in rounds for k in r)}
    cells = len(expand(*GRID))
    cores = best["grid_workers"] * best["grid_workers_threads"]
    best.update(grid_cells=cells, grid_epochs=GRID_EPOCHS, grid_images=GRID_IMAGES, cpu=lscpu(),
                load_average_max=max(r["load_average"] for r in rounds),
                # single-threaded workers do not spin: their CPU seconds over the cores are the wall time they
                # would take on a machine nobody else uses (their start included)
                grid_workers_cpu_vs_bound=best["grid_workers_cpu_s"] / cores / best["bound_per_core_s"],
                grid_one_process_cells_per_hour=cells * 3600 / best["grid_one_process_s"],
                grid_workers_cells_per_hour=cells * 3600 / best["grid_workers_s"],
                grid_one_process_vs_bound=best["grid_one_process_s"] / best["bound_s"],
                grid_workers_vs_bound=best["grid_workers_s"] / best["bound_s"],
                grid_one_process_vs_engine=best["grid_one_process_s"] / best["engine_bound_s"],
                grid_workers_vs_engine=best["grid_workers_s"] / best["engine_bound_s"],
                grid_workers_cpu_vs_engine=best["grid_workers_cpu_s"] / cores / best["engine_bound_s"],
                grid_workers_speedup=best["grid_one_process_s"] / best["grid_workers_s"])
    return best


def show(r: dict, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    t = Table(title=f"{r['grid_cells']}-cell grid ({r['grid_epochs']} epochs on {r['grid_images']:,} images) on "
                    f"{r['cpu']}, min of rounds")
    for name in ("what", "seconds", "cells per hour", "x matmul bound", "x engine bound"):
        t.add_column(name, justify="left" if name == "what" else "right")
    b, e = r["bound_s"], r["engine_bound_s"]
    t.add_row("matmul bound, one process with all threads", f"{r['bound_one_process_s']:.1f}", "", "", "")
    t.add_row("matmul bound, one single-threaded process per core", f"{r['bound_per_core_s']:.1f}", "", "", "")
    t.add_row("engine bound: the steps and evaluations alone, one single-threaded process per core",
              f"{e:.1f}", "", f"{e / b:.2f}", "1.00")
    t.add_row(f"one process, {r['grid_one_process_threads']} threads, groups of {r['grid_one_process_k']}",
              f"{r['grid_one_process_s']:.1f}", f"{r['grid_one_process_cells_per_hour']:,.0f}",
              f"{r['grid_one_process_s'] / b:.2f}", f"{r['grid_one_process_s'] / e:.2f}")
    t.add_row(f"{r['grid_workers']} workers of {r['grid_workers_threads']} thread(s), groups of {r['grid_workers_k']}",
              f"{r['grid_workers_s']:.1f}", f"{r['grid_workers_cells_per_hour']:,.0f}", f"{r['grid_workers_s'] / b:.2f}",
              f"{r['grid_workers_s'] / e:.2f}")
    console.print(t)
    console.print(f"a step of one cell, single-threaded with every core busy: {r['engine_step_ms']:.2f} ms in the engine, "
                  f"{r['matmul_step_ms']:.2f} ms of matmuls alone ({r['engine_step_ms'] / r['matmul_step_ms']:.2f}x)")
    console.print(f"{r['grid_workers']} workers' CPU seconds over the cores: {r['grid_workers_cpu_vs_bound']:.2f}x the "
                  f"per-core matmul bound, {r['grid_workers_cpu_vs_engine']:.2f}x the engine bound (their wall time on "
                  f"an idle machine); machine load average {r['load_average']:.1f} to {r['load_average_max']:.1f} over the rounds")
    for name, label in (("grid8", "8-cell grid (2 epochs, 10,000 images)"), ("grid24", f"{r['grid_cells']}-cell grid")):
        if r[f"{name}_auto_k"] == 1:
            console.print(f"{label}, one process: the automatic group size is 1, one by one itself (the grid is too "
                          "small to repay timing group sizes, and none is cached for this machine)")
            continue
        console.print(f"{label}, one process: automatic group size ({r[f'{name}_auto_k']}) {r[f'{name}_auto_s']:.1f} s, "
                      f"one by one {r[f'{name}_one_by_one_s']:.1f} s: "
                      f"{r[f'{name}_one_by_one_s'] / r[f'{name}_auto_s']:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the minimum of each is quoted")
    args = parser.parse_args()
    rounds = []
    for i in range(args.rounds):
        print(f"grid round {i + 1}/{args.rounds}", file=sys.stderr, flush=True)
        rounds.append(grid_round())
        print({k: round(v, 2) if isinstance(v, float) else v for k, v in rounds[-1].items()}, file=sys.stderr, flush=True)
    show(summarise(rounds))


if __name__ == "__main__":
    main()
