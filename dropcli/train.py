"""Train: the library behind `dropcli train` and every ablation cell. Returns values, prints nothing.

    >>> data = load_dataset("mnist")
    >>> result = train(TrainConfig(keep_prob=(0.7,)), data)
    >>> result.test_accuracy
    0.98...

`train_group` runs several configs of the same shape in lockstep (one stacked model, see
engine.py); `train` is a group of one. A run's random streams (initial weights, training subset,
batch order, dropout masks) depend on its own seed and config only, never on the cells beside it.
Each run also keeps the weights of its best validation epoch and reports their test accuracy.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import torch

from dropcli.config import EVAL_CHUNK, Stream, TrainConfig, stream_seed
from dropcli.data import Dataset, Split, subset_indices
from dropcli.device import check_precision, matmul_precision
from dropcli.engine import Stack
from dropcli.evaluation import evaluate
from dropcli.model import Params, init_params
from dropcli.provenance import device_description, mkl_reproducible
from dropcli.stepper import make_step


@dataclass
class RunResult:
    """What one trained network came to. Accuracies are fractions of their split (0-1; tables and the
    terminal show them as such, summaries' differences in points = 100 x fractions); losses are mean
    softmax cross-entropies (nats); train_seconds is the wall time of the lockstep group it trained
    in (shared by its parallel_models cells)."""

    config: TrainConfig
    history: list[dict]  # one dict per epoch: epoch, cost, train_batch_accuracy, validation_accuracy, seconds
    params: Params  # the final weights
    status: str = "ok"  # "diverged" when the loss became NaN or infinite
    final_cost: float = math.nan
    train_accuracy: float = math.nan  # dropout off, the run's whole training set
    validation_accuracy: float = math.nan
    test_accuracy: float = math.nan
    test_images: int = 0  # images in the test split that the test accuracies count over
    test_loss: float = math.nan
    test_accuracy_mc: float | None = None
    best_epoch: int | None = None  # the (first) epoch of highest validation accuracy; None without validation
    test_accuracy_at_best: float = math.nan  # test accuracy of that epoch's weights
    train_seconds: float = 0.0
    device: str = "cpu"
    engine: str = ""  # how the steps ran, e.g. "eager, numpy masks" or "cuda graph, fused hash kernel"
    parallel_models: int = 1

    def metrics(self) -> dict:
        """The measured values (no weights, no history), as run.json's "metrics" holds them."""
        keys = ("status", "final_cost", "train_accuracy", "validation_accuracy", "test_accuracy", "test_loss",
                "test_accuracy_mc", "best_epoch", "test_accuracy_at_best", "train_seconds", "device", "engine",
                "parallel_models")
        return {k: getattr(self, k) for k in keys}


def lockstep_key(c: TrainConfig) -> tuple:
    """Configs with equal keys share shapes, step counts and the learning rate (one fused Adam call
    per group) and can train in lockstep."""
    return (c.hidden, c.batch_size, c.epochs, c.n_train, c.validation_size, c.lr, c.precision, c.dataset, c.data_dir)


def batch_generator(seed: int) -> torch.Generator:
    """The CPU generator of a run's batch order (its Stream.BATCHES stream)."""
    return torch.Generator().manual_seed(stream_seed(seed, Stream.BATCHES))


def train(config: TrainConfig, data: Dataset, device: torch.device | None = None,
          on_epoch: Callable[[int, list[dict]], None] | None = None, on_step: Callable[[int, int], None] | None = None,
          cuda_graphs: bool = True, fused_dropout: bool = True) -> RunResult:
    """Train one network as `config` says and evaluate it: the library behind `dropcli train`.

    data: a data.Dataset (images as (N, 784) float32 in [0, 1] on `device`, labels (N,) int64);
    device: where to train (default: where data.test lives). on_epoch(epoch, [record]) is called
    after each epoch (record: epoch, cost, train_batch_accuracy, validation_accuracy, seconds);
    on_step(step, steps) after each step. cuda_graphs and fused_dropout choose the CUDA paths (the
    numbers are the same). Returns a RunResult whose accuracies are fractions (0-1, not points) and
    whose losses are mean softmax cross-entropies in nats. A diverged run (NaN or infinite cost)
    is returned with status "diverged", not raised.
    Raises UsageError for a precision the device lacks (tf32 off CUDA) and torch's errors (out of
    memory) as they come."""
    return train_group([config], data, device, on_epoch, on_step, cuda_graphs, fused_dropout)[0]


def train_group(configs: list[TrainConfig], data: Dataset, device: torch.device | None = None,
                on_epoch: Callable[[int, list[dict]], None] | None = None,
                on_step: Callable[[int, int], None] | None = None,
                cuda_graphs: bool = True, fused_dropout: bool = True) -> list[RunResult]:
    """Train configs of one lockstep_key together as one stacked model (engine.Stack); returns one
    RunResult per config, in order (see train for the arguments and the results). Each result is the
    same as if the config trained beside any other cells of the same group size.
    Raises ValueError for configs of different lockstep shapes, UsageError for a precision the
    device lacks."""
    if len({lockstep_key(c) for c in configs}) != 1:
        raise ValueError("train_group needs configs of one shape and step count (see lockstep_key)")
    device = device or data.test.x.device
    check_precision(configs[0].precision, device)
    mkl_reproducible()
    with matmul_precision(configs[0].precision):
        return _Group(configs, data, device, cuda_graphs, fused_dropout).run(on_epoch, on_step)


class _Group:
    def __init__(self, configs: list[TrainConfig], data: Dataset, device: torch.device, cuda_graphs: bool,
                 fused_dropout: bool):
        self.configs, self.data, self.device, c0 = configs, data, device, configs[0]
        self.part, self.val = data.part(c0.validation_size, c0.n_train, whole=any(c.train_size is None for c in configs))
        self.subsets = [subset_indices(c, len(self.part)) for c in configs]  # None: the first n_train of the part
        self.stack = Stack(configs, [init_params(c.sizes, c.init, c.seed) for c in configs], device, fused_dropout)
        self.stepper = make_step(self.stack, self.part.x, self.part.y, cuda_graphs)
        self.gens = [batch_generator(c.seed) for c in configs]

    def epoch_order(self) -> torch.Tensor:
        """Each cell's batches for one epoch: row s holds step s's indices into the training part,
        cell after cell."""
        c0, K = self.configs[0], len(self.configs)
        used = c0.steps_per_epoch * c0.batch_size
        perms = []
        for g, subset in zip(self.gens, self.subsets):
            perm = torch.randperm(c0.n_train, generator=g)[:used]
            perms.append(perm if subset is None else subset[perm])
        return torch.stack(perms).reshape(K, c0.steps_per_epoch, c0.batch_size).transpose(0, 1).reshape(c0.steps_per_epoch, -1)

    def run(self, on_epoch, on_step) -> list[RunResult]:
        c0, K, stack, stepper = self.configs[0], len(self.configs), self.stack, self.stepper
        steps, B = c0.steps_per_epoch, c0.batch_size
        histories: list[list[dict]] = [[] for _ in range(K)]
        diverged = [False] * K
        best = [(-1.0, None, None)] * K  # (validation accuracy, epoch, weights) of each cell's best epoch
        order = self.epoch_order()
        for epoch in range(1, c0.epochs + 1):
            t0 = time.perf_counter()
            batches = order.to(self.device)
            stepper.reset()
            for s in range(steps):
                stepper(batches[s])
                if on_step:
                    on_step(s + 1, steps)
            if epoch < c0.epochs:
                order = self.epoch_order()  # on the CPU, while a GPU works through the queued steps
            val_acc = [math.nan] * K
            if self.val is not None:
                val_acc = (stack.logits(self.val.x, EVAL_CHUNK).argmax(2) == self.val.y).double().mean(1).tolist()
            cost_list = (stepper.cost / steps).tolist()  # with the validation above, the epoch's syncs
            acc_list = (stepper.correct.double() / (steps * B)).tolist()
            seconds = time.perf_counter() - t0
            records = []
            for k in range(K):
                rec = {"epoch": epoch, "cost": cost_list[k], "train_batch_accuracy": acc_list[k],
                       "validation_accuracy": val_acc[k], "seconds": seconds}
                if not diverged[k]:
                    histories[k].append(rec)
                    diverged[k] = not math.isfinite(cost_list[k])
                    if not diverged[k] and val_acc[k] > best[k][0]:
                        best[k] = (val_acc[k], epoch, stack.cell_params(k) if epoch < c0.epochs else None)
                records.append(rec)
            if on_epoch:
                on_epoch(epoch, records)
            if all(diverged):
                break
        engine = f"{stepper.name}, {stack.dropout_path} dropout"
        return [self.result(k, histories[k], diverged[k], best[k], engine) for k in range(K)]

    def result(self, k: int, hist: list[dict], diverged: bool, best: tuple, engine: str) -> RunResult:
        c, data, device = self.configs[k], self.data, self.device
        r = RunResult(c, hist, self.stack.cell_params(k), device=device_description(device), engine=engine,
                      parallel_models=len(self.configs), train_seconds=sum(h["seconds"] for h in hist),
                      final_cost=hist[-1]["cost"], test_images=len(data.test.y))
        if diverged:
            r.status = "diverged"
            return r
        subset = self.subsets[k]
        own = (Split(self.part.x[: c.n_train], self.part.y[: c.n_train]) if subset is None
               else Split(self.part.x[subset.to(device)], self.part.y[subset.to(device)]))
        r.train_accuracy = evaluate(r.params, c, own, device).accuracy
        if self.val is not None:
            r.validation_accuracy = evaluate(r.params, c, self.val, device).accuracy
        test = evaluate(r.params, c, data.test, device, mc_samples=c.mc_samples)
        r.test_accuracy, r.test_loss, r.test_accuracy_mc = test.accuracy, test.loss, test.mc_accuracy
        _, r.best_epoch, best_params = best
        if r.best_epoch is not None:
            r.test_accuracy_at_best = (r.test_accuracy if best_params is None
                                       else evaluate(best_params, c, data.test, device).accuracy)
        return r
