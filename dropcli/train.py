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
from dropcli.provenance import device_description, flushing, mkl_reproducible
from dropcli.stepper import make_step


@dataclass
class RunResult:
    """What one trained network came to. Accuracies are fractions of their split (0-1; tables and the
    terminal show them as such, summaries' differences in points = 100 x fractions); losses are mean
    softmax cross-entropies (nats); train_seconds is the wall time of the lockstep group it trained
    in (shared by its parallel_models cells)."""

    config: TrainConfig
    history: list[dict]  # one dict per validation (every eval_interval steps and after the last): epoch, step,
    # cost and train_batch_accuracy (means over the steps since the row before), validation_accuracy, seconds
    params: Params  # the final weights
    status: str = "ok"  # "diverged" when the loss became NaN or infinite
    final_cost: float = math.nan
    train_accuracy: float = math.nan  # dropout off, the run's whole training set
    validation_accuracy: float = math.nan
    test_accuracy: float = math.nan
    test_images: int = 0  # images in the test split that the test accuracies count over
    test_loss: float = math.nan
    test_accuracy_mc: float | None = None
    best_epoch: int | None = None  # the epoch of the (first) validation of highest accuracy; None without validation
    best_step: int | None = None  # the steps done at that validation
    test_accuracy_at_best: float = math.nan  # test accuracy of that epoch's weights
    train_seconds: float = 0.0
    device: str = "cpu"
    engine: str = ""  # how the steps ran: "eager, numpy masks dropout, denormals flushed", "cuda graph, fused hash kernel dropout"
    parallel_models: int = 1

    @property
    def steps_run(self) -> int:
        """Adam steps the run took: its budget, or fewer where it diverged (0 without history)."""
        return self.history[-1]["step"] if self.history else 0

    @property
    def epochs_run(self) -> int:
        """Epochs the run reached, the last possibly partial (0 without history)."""
        return self.history[-1]["epoch"] if self.history else 0

    def metrics(self) -> dict:
        """The measured values (no weights, no history), as run.json's "metrics" holds them."""
        keys = ("status", "final_cost", "train_accuracy", "validation_accuracy", "test_accuracy", "test_loss",
                "test_accuracy_mc", "best_epoch", "best_step", "test_accuracy_at_best", "steps_run", "train_seconds",
                "device", "engine", "parallel_models")
        return {k: getattr(self, k) for k in keys}


def lockstep_key(c: TrainConfig) -> tuple:
    """Configs with equal keys share shapes, step counts, validation steps and the learning rate
    (one fused Adam call per group) and can train in lockstep."""
    return (c.hidden, c.batch_size, c.total_steps, c.eval_interval, c.n_train, c.validation_size, c.lr, c.precision,
            c.dataset, c.data_dir)


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
    with flushing() as flushed, matmul_precision(configs[0].precision):
        flushed = flushed if device.type == "cpu" else None  # the CPU's mode; a GPU keeps its own
        return _Group(configs, data, device, cuda_graphs, fused_dropout).run(on_epoch, on_step, flushed)


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

    def run(self, on_epoch, on_step, flushed: bool | None = None) -> list[RunResult]:
        """Train every cell for total_steps steps, an epoch's batch order at a time (the last epoch
        may stop part way: its first steps), validating every eval_interval steps and after the last.
        flushed: provenance.flush_denormals's answer on the CPU (named in each result's engine), else None."""
        c0, K = self.configs[0], len(self.configs)
        total, every, per_epoch = c0.total_steps, c0.eval_interval, c0.steps_per_epoch
        self.histories: list[list[dict]] = [[] for _ in range(K)]
        self.diverged = [False] * K
        self.best = [(-1.0, None, None)] * K  # (validation accuracy, history row, weights) of each cell's best row
        order, done, since, t0 = self.epoch_order(), 0, 0, time.perf_counter()
        self.stepper.reset()
        while done < total:
            if done % per_epoch == 0:
                batches = order.to(self.device)
            self.stepper(batches[done % per_epoch])
            done, since = done + 1, since + 1
            if on_step:
                start = (done - 1) // per_epoch * per_epoch  # steps before this epoch
                on_step(done - start, min(per_epoch, total - start))
            if done % per_epoch == 0 and done < total:
                order = self.epoch_order()  # on the CPU, while a GPU works through the queued steps
            if done % every == 0 or done == total:
                records = self.record(done, since, time.perf_counter() - t0)
                if on_epoch:
                    on_epoch(records[0]["epoch"], records)
                if all(self.diverged):
                    break
                self.stepper.reset()
                since, t0 = 0, time.perf_counter()
        engine = f"{self.stepper.name}, {self.stack.dropout_path} dropout" + {
            True: ", denormals flushed", False: ", denormals flushed in some threads", None: ""}[flushed]
        return [self.result(k, engine) for k in range(K)]

    def record(self, done: int, since: int, seconds: float) -> list[dict]:
        """Validate after `done` steps and add each live cell's history row (the means over the
        `since` steps since the last row); keep a copy of a cell's weights at its best validation."""
        c0, K, stack = self.configs[0], len(self.configs), self.stack
        val_acc = [math.nan] * K
        if self.val is not None:
            val_acc = (stack.logits(self.val.x, EVAL_CHUNK).argmax(2) == self.val.y).double().mean(1).tolist()
        cost_list = (self.stepper.cost / since).tolist()  # with the validation above, the interval's syncs
        acc_list = (self.stepper.correct.double() / (since * c0.batch_size)).tolist()
        epoch = -(-done // c0.steps_per_epoch)  # the epoch this step belongs to
        records = []
        for k in range(K):
            rec = {"epoch": epoch, "step": done, "cost": cost_list[k], "train_batch_accuracy": acc_list[k],
                   "validation_accuracy": val_acc[k], "seconds": seconds}
            if not self.diverged[k]:
                self.histories[k].append(rec)
                self.diverged[k] = not math.isfinite(cost_list[k])
                if not self.diverged[k] and val_acc[k] > self.best[k][0]:
                    self.best[k] = (val_acc[k], rec, stack.cell_params(k) if done < c0.total_steps else None)
            records.append(rec)
        return records

    def result(self, k: int, engine: str) -> RunResult:
        c, data, device = self.configs[k], self.data, self.device
        hist, diverged = self.histories[k], self.diverged[k]
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
        _, best_row, best_params = self.best[k]
        if best_row is not None:
            r.best_epoch, r.best_step = best_row["epoch"], best_row["step"]
            r.test_accuracy_at_best = (r.test_accuracy if best_params is None
                                       else evaluate(best_params, c, data.test, device).accuracy)
        return r
