"""Speed benchmark: dropcli train against the matmul bound and a plain PyTorch DataLoader loop, and
a grid's throughput in one process and on worker processes against the grid's matmul bound.

    $ make bench                      # or: .venv/bin/python benchmarks/bench.py [--quick]

Everything is measured in one run on this machine, interleaved and repeated, quoting the
minimum (the shared machine has slow spells). The matmul bound is the sum, over the matmuls
of one training step, of each matmul's best time alone at its exact shape and layout (the
sgemm rate at the model's shapes), times the steps of an epoch; a grid's bound (grid_bench.py)
arranges its steps' and evaluations' matmuls the faster of two ways: one process with all threads,
or one single-threaded process per core. Prints tables of times and ratios, naming the CPU as
lscpu does; with --record it appends a row to benchmarks/results.csv (the checkout stays clean otherwise).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from grid_bench import best_time, grid_round, lscpu, step_matmuls  # noqa: E402
from grid_bench import show as show_grid  # noqa: E402
from grid_bench import summarise as summarise_grid  # noqa: E402

from dropcli.config import DEFAULT_SEED, TRAIN_SPLIT, TrainConfig  # noqa: E402
from dropcli.data import load_dataset, prepare_bundled_mnist  # noqa: E402
from dropcli.files import atomic_write  # noqa: E402
from dropcli.provenance import code_version, cpu_model, flush_denormals  # noqa: E402


def matmul_bound(config: TrainConfig) -> dict:
    ops = step_matmuls(config.sizes, config.batch_size)
    alone = sum(best_time(lambda a=a, b=b: torch.bmm(a, b), number=30) for a, b, _ in ops)
    flops = sum(f for _, _, f in ops)

    def back_to_back():
        for a, b, _ in ops:
            torch.bmm(a, b)

    chained = best_time(back_to_back, number=10)
    steps = config.steps_per_epoch
    return {"gflop_per_epoch": flops * steps / 1e9, "sgemm_gflops": flops / alone / 1e9,
            "bound_epoch_s": alone * steps, "back_to_back_epoch_s": chained * steps}


def dropcli_epoch(data, config: TrainConfig) -> float:
    """dropcli's training loop (what `dropcli train` runs) for two epochs on the full training part;
    the second, steady-state epoch's time, validation pass included."""
    from dropcli.train import train

    return train(config.replace(epochs=2), data, torch.device("cpu")).history[-1]["seconds"]


def dropcli_command() -> dict:
    """`dropcli train` as a user runs it (one epoch): its peak memory and start-to-end time."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "dropcli", "train", "--epochs", "1", "--device", "cpu", "--out", f"{tmp}/run"]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        wall = time.perf_counter() - t0
        if proc.returncode:
            raise SystemExit(f"dropcli train failed: {proc.stderr.strip()}")
        run = json.loads(Path(f"{tmp}/run/run.json").read_text())
    return {"train_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
            "train_1_epoch_command_s": wall, "train_1_epoch_test_accuracy": run["metrics"]["test_accuracy"]}


def plain_loops(config: TrainConfig, batches: int, data) -> dict:
    """pytorch/examples style: DataLoader over per-sample ToTensor, nn.Module, autograd, Adam;
    and the same loop over data pre-loaded as one tensor. Timed over `batches`, scaled to an epoch."""
    import torch.nn.functional as F
    from torch.utils.data import DataLoader, Subset
    from torchvision import datasets, transforms

    from dropcli.model import DropoutMLP, init_params

    def model_and_opt():
        model = DropoutMLP(config.sizes, config.keep_prob).load_params(init_params(config.sizes, "tutorial", DEFAULT_SEED))
        return model.train(), torch.optim.Adam(model.parameters(), lr=config.lr)

    def step(model, opt, x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x.view(-1, 784)), y)
        loss.backward()
        opt.step()

    root = prepare_bundled_mnist()
    ds = Subset(datasets.MNIST(root, train=True, download=False, transform=transforms.ToTensor()),
                range(config.validation_size, TRAIN_SPLIT))
    loader = DataLoader(ds, batch_size=config.batch_size, shuffle=True)
    model, opt = model_and_opt()
    it = iter(loader)
    for _ in range(5):
        step(model, opt, *next(it))
    t0 = time.perf_counter()
    for _ in range(batches):
        step(model, opt, *next(it))
    dataloader = (time.perf_counter() - t0) / batches * config.steps_per_epoch

    train_x, train_y = data.train_full.x[config.validation_size:], data.train_full.y[config.validation_size:]
    model, opt = model_and_opt()
    perm = torch.randperm(len(train_x))
    for i in range(5):
        idx = perm[i * 100 : (i + 1) * 100]
        step(model, opt, train_x[idx], train_y[idx])
    t0 = time.perf_counter()
    for i in range(batches):
        idx = perm[i * 100 : (i + 1) * 100]
        step(model, opt, train_x[idx], train_y[idx])
    preloaded = (time.perf_counter() - t0) / batches * config.steps_per_epoch
    return {"dataloader_epoch_s": dataloader, "preloaded_epoch_s": preloaded}


def help_time() -> float:
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "dropcli", "--help"], capture_output=True, cwd=ROOT, check=True)
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds; the minimum of each is quoted")
    parser.add_argument("--grid-rounds", type=int, default=3, help="rounds that also time the grids (grid_bench.py)")
    parser.add_argument("--quick", action="store_true", help="fewer batches and a smaller grid (a smoke run)")
    parser.add_argument("--record", action="store_true", help="append the result to benchmarks/results.csv (tracked)")
    args = parser.parse_args()
    flush_denormals()  # as every dropcli command does, before torch starts its threads
    if args.grid_rounds < 1:
        raise SystemExit("--grid-rounds must be at least 1")
    config = TrainConfig()
    command = dropcli_command()  # first, so that the peak RSS is dropcli's own
    data = load_dataset("mnist")
    rounds, grid_rounds = [], []
    for r in range(max(args.rounds, args.grid_rounds)):  # interleave every measurement in each round
        print(f"round {r + 1}/{args.rounds}", file=sys.stderr, flush=True)
        if r < args.rounds:
            row = matmul_bound(config)
            row["train_epoch_s"] = dropcli_epoch(data, config)
            row.update(plain_loops(config, batches=40 if args.quick else 120, data=data))
            rounds.append(row)
        if r < args.grid_rounds:
            grid_rounds.append(grid_round())
    best = {k: min(r[k] for r in rounds if k in r) for k in rounds[0]}
    ratios = [r["train_epoch_s"] / r["bound_epoch_s"] for r in rounds]
    result = {
        "date": dt.datetime.now().isoformat(timespec="seconds"), "machine": cpu_model(),
        "torch": torch.__version__, "dropcli": code_version(), "threads": torch.get_num_threads(), "rounds": args.rounds,
        "sgemm_gflops": max(r["sgemm_gflops"] for r in rounds), "gflop_per_epoch": best["gflop_per_epoch"],
        "bound_epoch_s": best["bound_epoch_s"], "back_to_back_epoch_s": best["back_to_back_epoch_s"],
        "train_epoch_s": best["train_epoch_s"], "train_vs_bound": best["train_epoch_s"] / best["bound_epoch_s"],
        "train_vs_bound_best_round": min(ratios),
        "dataloader_epoch_s": best["dataloader_epoch_s"], "preloaded_epoch_s": best["preloaded_epoch_s"],
        "speedup_vs_dataloader": best["dataloader_epoch_s"] / best["train_epoch_s"],
        **command, "help_s": help_time(), "quick": args.quick,
        **{k: v for k, v in summarise_grid(grid_rounds).items() if k != "cpu"}, "lscpu": lscpu(),
    }
    show(result)
    if args.record:
        path = HERE / "results.csv"
        fields, rows = [], []
        if path.exists():  # keep earlier rows and their columns' order, whatever columns they had
            with open(path, newline="") as f:
                old = csv.DictReader(f)
                rows, fields = list(old), list(old.fieldnames or [])
        fields += [c for c in result if c not in fields]
        rows.append({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in result.items()})

        def write(tmp: Path) -> None:
            with open(tmp, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=fields)
                w.writeheader()
                w.writerows(rows)

        atomic_write(path, write)  # an interrupted write never loses the earlier rows
        print(f"appended to {path}", file=sys.stderr)


def show(r: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"dropcli speed on {r['lscpu']} (torch {r['torch']}, {r['threads']} threads), min of rounds")
    t.add_column("what")
    t.add_column("seconds / epoch", justify="right")
    t.add_column("x matmul bound", justify="right")
    b = r["bound_epoch_s"]
    for name, key in (("matmul bound (sum of each matmul alone)", "bound_epoch_s"),
                      ("the step's matmuls back to back", "back_to_back_epoch_s"),
                      ("dropcli train (steady-state epoch)", "train_epoch_s"),
                      ("plain loop, data pre-loaded", "preloaded_epoch_s"),
                      ("plain loop, DataLoader + ToTensor", "dataloader_epoch_s")):
        t.add_row(name, f"{r[key]:.2f}", f"{r[key] / b:.2f}")
    c = Console()
    c.print(t)
    c.print(f"sgemm at the model's shapes: {r['sgemm_gflops']:.0f} GFLOP/s; {r['gflop_per_epoch']:.0f} GFLOP of matmuls per epoch")
    c.print(f"dropcli train: {r['train_vs_bound']:.2f}x the bound (best single round {r['train_vs_bound_best_round']:.2f}x), "
            f"{r['speedup_vs_dataloader']:.1f}x faster than the DataLoader loop")
    c.print(f"dropcli train --epochs 1 as a command: {r['train_1_epoch_command_s']:.1f} s, peak RSS "
            f"{r['train_peak_rss_mb']:.0f} MB; dropcli --help {r['help_s']:.2f} s")
    show_grid({**r, "cpu": r["lscpu"]}, c)

if __name__ == "__main__":
    main()
