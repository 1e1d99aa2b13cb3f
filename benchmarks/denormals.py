"""What flushing denormals to zero saves as training goes on (dropcli.provenance.flush_denormals).

Trains the tutorial run (keep 0.7, real MNIST) on one thread with denormals kept, as torch does by
default, and at each checkpoint (epochs 1, 3 and 15 unless --epochs says) counts the denormal
elements of Adam's first and second moments, then times steps from that state with denormals
kept and flushed: --rounds interleaved rounds of 50 steps each, the state restored before each,
the minimum of each quoted. One thread, so that the mode set here holds for every operation (the
mode is per thread; dropcli sets it before torch starts its threads). Names the CPU as lscpu does.

    $ python benchmarks/denormals.py             # about 3 minutes on a 2-core EPYC or Xeon
    $ python benchmarks/denormals.py --epochs 1,15,30
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from grid_bench import lscpu  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from dropcli.config import TrainConfig  # noqa: E402
from dropcli.data import load_dataset  # noqa: E402
from dropcli.engine import Stack  # noqa: E402
from dropcli.model import init_params  # noqa: E402

TINY = torch.finfo(torch.float32).tiny  # the smallest normal float32, 2**-126


def denormal_share(t: torch.Tensor) -> float:
    """Fraction of t's elements that are denormal (nonzero, below 2**-126 in magnitude)."""
    return ((t.abs() < TINY) & (t != 0)).double().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", default="1,3,15", help="comma-separated epochs at which to measure")
    parser.add_argument("--rounds", type=int, default=6, help="interleaved rounds of 50 steps per mode")
    args = parser.parse_args()
    checkpoints = sorted({int(e) for e in args.epochs.split(",")})
    torch.set_num_threads(1)
    c = TrainConfig()  # the tutorial: keep 0.7, 784-512x4-10, Adam 0.001, batch 100
    train, _ = load_dataset().splits(c)
    stack = Stack([c], [init_params(c.sizes, c.init, c.seed)], torch.device("cpu"))
    gen = torch.Generator().manual_seed(c.seed)

    def step() -> None:
        idx = torch.randint(0, len(train.x), (c.batch_size,), generator=gen)
        stack.step(train.x[idx].unsqueeze(0).clone(), train.y[idx].unsqueeze(0))

    table = Table(title=f"one step of the tutorial run, one thread ({lscpu()}; min of {args.rounds} x 50 steps)")
    for col in ("after epoch", "denormal m", "denormal v", "kept ms", "flushed ms", "kept / flushed"):
        table.add_column(col, justify="right")
    done = 0
    for epoch in checkpoints:
        torch.set_flush_denormal(False)
        while done < epoch * c.steps_per_epoch:
            step()
            done += 1
        m_share, v_share = denormal_share(stack.adam.m), denormal_share(stack.adam.v)
        saved = [t.clone() for t in stack.state()]
        best = {False: float("inf"), True: float("inf")}
        for _ in range(args.rounds):
            for flush in (False, True):
                torch.set_flush_denormal(False)  # restore the state exactly (a flushing copy would zero it)
                for t, v in zip(stack.state(), saved):
                    t.copy_(v)
                torch.set_flush_denormal(flush)
                t0 = time.perf_counter()
                for _ in range(50):
                    step()
                best[flush] = min(best[flush], (time.perf_counter() - t0) / 50)
        torch.set_flush_denormal(False)
        for t, v in zip(stack.state(), saved):
            t.copy_(v)
        table.add_row(str(epoch), f"{m_share:.1%}", f"{v_share:.2%}", f"{best[False] * 1e3:.2f}",
                      f"{best[True] * 1e3:.2f}", f"{best[False] / best[True]:.2f}x")
        print(f"epoch {epoch} measured", file=sys.stderr, flush=True)
    Console().print(table)


if __name__ == "__main__":
    main()
