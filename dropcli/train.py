"""Train, evaluate and predict: the library behind the commands. Returns values, prints nothing.

    >>> data = load_dataset("mnist")
    >>> result = train(TrainConfig(keep_prob=(0.7,)), data)
    >>> result.test_accuracy
    0.98...

`train_group` runs several configs of the same shape in lockstep (one stacked model, see
engine.py); `train` is a group of one. A run's random streams (initial weights, batch order,
dropout masks) depend on its own seed and config only, never on the cells beside it.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

import torch

from dropcli.config import TrainConfig
from dropcli.data import Dataset, Split
from dropcli.engine import Stack
from dropcli.errors import DropcliError
from dropcli.model import Params, init_params, stream_seed
from dropcli.stepper import make_step

EVAL_CHUNK = 2000  # rows per forward pass when evaluating; fixed so every path rounds alike


@dataclass
class RunResult:
    config: TrainConfig
    history: list[dict]  # one dict per epoch: epoch, cost, train_batch_accuracy, validation_accuracy, seconds
    params: Params
    status: str = "ok"  # "diverged" when the loss became NaN or infinite
    final_cost: float = math.nan
    train_accuracy: float = math.nan  # dropout off, the whole training part
    validation_accuracy: float = math.nan
    test_accuracy: float = math.nan
    test_loss: float = math.nan
    test_accuracy_mc: float | None = None
    train_seconds: float = 0.0
    device: str = "cpu"
    parallel_models: int = 1

    def metrics(self) -> dict:
        keys = ("status", "final_cost", "train_accuracy", "validation_accuracy", "test_accuracy", "test_loss",
                "test_accuracy_mc", "train_seconds", "device", "parallel_models")
        return {k: getattr(self, k) for k in keys}


@dataclass
class EvalResult:
    accuracy: float
    loss: float
    predictions: torch.Tensor  # (N,) int64, CPU
    labels: torch.Tensor  # (N,) int64, CPU
    mc_accuracy: float | None = None
    confusion: list[list[int]] = field(default_factory=list)  # [true class][predicted class] counts

    @property
    def per_class(self) -> list[float]:
        """Accuracy per true class, from the confusion matrix (NaN for a class the split lacks)."""
        return [row[c] / sum(row) if sum(row) else math.nan for c, row in enumerate(self.confusion)]


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA when present; asking for a missing device is a DropcliError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DropcliError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DropcliError(f"--device {name}: no CUDA GPU is available here; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DropcliError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s); use cuda:0")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise DropcliError("--device mps: Apple's MPS is not available here; use --device cpu")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise DropcliError(f"unsupported device {name!r}; use auto, cpu, cuda, cuda:N or mps")
    return device


def group_key(c: TrainConfig) -> tuple:
    """Configs with equal keys share shapes and step counts and can train in lockstep."""
    return (c.hidden, c.batch_size, c.epochs, c.n_train, c.validation_size, c.lr, c.precision, c.dataset, c.data_dir)


def check_precision(precision: str, device: torch.device) -> None:
    if precision == "tf32" and device.type != "cuda":
        raise DropcliError(f"--precision tf32 runs on CUDA tensor cores, not on {device.type}; use --precision float32")


@contextmanager
def matmul_precision(precision: str):
    """tf32: CUDA matmuls on tensor cores (10-bit mantissa inputs, float32 sums) while inside."""
    if precision != "tf32":
        yield
        return
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


def batch_generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(stream_seed(seed, 1))


def train(config: TrainConfig, data: Dataset, device: torch.device | None = None, **callbacks) -> RunResult:
    return train_group([config], data, device, **callbacks)[0]


def train_group(configs: list[TrainConfig], data: Dataset, device: torch.device | None = None,
                on_epoch: Callable[[int, list[dict]], None] | None = None,
                on_step: Callable[[int, int], None] | None = None) -> list[RunResult]:
    """Train configs of one group_key together; each result is as if trained alone."""
    if len({group_key(c) for c in configs}) != 1:
        raise ValueError("train_group needs configs of one shape and step count (see group_key)")
    device = device or data.test.x.device
    check_precision(configs[0].precision, device)
    with matmul_precision(configs[0].precision):
        return _train_group(configs, data, device, on_epoch, on_step)


def _train_group(configs: list[TrainConfig], data: Dataset, device: torch.device, on_epoch, on_step) -> list[RunResult]:
    torch.set_flush_denormal(True)  # this thread's, in case it was turned off since import (model.py)
    c0, K = configs[0], len(configs)
    train_split, val = data.split(c0.validation_size, c0.train_size)
    stack = Stack(configs, [init_params(c.sizes, c.init, c.seed) for c in configs], device)
    gens = [batch_generator(c.seed) for c in configs]
    B, steps, n = c0.batch_size, c0.steps_per_epoch, len(train_split)
    step = make_step(stack, train_split.x, train_split.y)
    histories: list[list[dict]] = [[] for _ in configs]
    diverged = [False] * K

    def epoch_order() -> torch.Tensor:
        """Each cell's batches for one epoch: row s holds step s's indices, cell after cell."""
        perm = torch.stack([torch.randperm(n, generator=g) for g in gens])[:, : steps * B]
        return perm.reshape(K, steps, B).transpose(0, 1).reshape(steps, K * B)

    order = epoch_order()
    for epoch in range(1, c0.epochs + 1):
        t0 = time.perf_counter()
        batches = order.to(device)
        step.reset()
        for s in range(steps):
            step(batches[s])
            if on_step:
                on_step(s + 1, steps)
        if epoch < c0.epochs:
            order = epoch_order()  # on the CPU, while a GPU works through the queued steps
        val_acc = [math.nan] * K
        if val is not None:
            val_acc = (stack.logits(val.x, EVAL_CHUNK).argmax(2) == val.y).double().mean(1).tolist()
        cost_list = (step.cost / steps).tolist()  # with the validation above, the epoch's syncs
        acc_list = (step.correct.double() / (steps * B)).tolist()
        seconds = time.perf_counter() - t0
        records = []
        for k in range(K):
            rec = {"epoch": epoch, "cost": cost_list[k], "train_batch_accuracy": acc_list[k],
                   "validation_accuracy": val_acc[k], "seconds": seconds}
            if not diverged[k]:
                histories[k].append(rec)
                diverged[k] = not math.isfinite(cost_list[k])
            records.append(rec)
        if on_epoch:
            on_epoch(epoch, records)
        if all(diverged):
            break
    results = []
    for k, c in enumerate(configs):
        hist = histories[k]
        r = RunResult(c, hist, stack.cell_params(k), device=str(device), parallel_models=K,
                      train_seconds=sum(h["seconds"] for h in hist), final_cost=hist[-1]["cost"])
        if diverged[k]:
            r.status = "diverged"
        else:
            r.train_accuracy = evaluate(r.params, c, train_split, device).accuracy
            if val is not None:
                r.validation_accuracy = evaluate(r.params, c, val, device).accuracy
            test = evaluate(r.params, c, data.test, device, mc_samples=c.mc_samples)
            r.test_accuracy, r.test_loss, r.test_accuracy_mc = test.accuracy, test.loss, test.mc_accuracy
        results.append(r)
    return results


def forward(params: Params, x: torch.Tensor, keep: tuple[float, ...] | None = None,
            gen: torch.Generator | None = None) -> torch.Tensor:
    """Logits of one network; with `keep` (input keep, then one per hidden layer) dropout is on."""
    a = x
    for l, (W, b) in enumerate(params):
        if keep is not None and keep[l] < 1.0:
            a = a * (torch.rand(a.shape, generator=gen, device=a.device) < keep[l]) / keep[l]
        a = torch.addmm(b, a, W)
        if l < len(params) - 1:
            a = a.relu_()
    return a


def chunked_forward(params: Params, x: torch.Tensor, keep: tuple[float, ...] | None = None,
                    gen: torch.Generator | None = None) -> torch.Tensor:
    """forward() over EVAL_CHUNK rows at a time, so that every evaluation path rounds alike."""
    return torch.cat([forward(params, x[i : i + EVAL_CHUNK], keep, gen) for i in range(0, len(x), EVAL_CHUNK)])


@torch.no_grad()
def probabilities(params: Params, x: torch.Tensor, config: TrainConfig | None = None, mc_samples: int = 0,
                  seed: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Softmax probabilities with dropout off; with mc_samples > 0, the mean and std over that
    many dropout-on passes (Monte-Carlo dropout) instead."""
    device = x.device
    params = [(W.to(device), b.to(device)) for W, b in params]
    if mc_samples <= 0:
        return chunked_forward(params, x).softmax(1), None
    gen = torch.Generator(device).manual_seed(stream_seed(seed, 3))
    keep = (config.input_keep_prob, *config.keep_prob)
    total = torch.zeros(len(x), params[-1][1].numel(), device=device)
    total_sq = torch.zeros_like(total)
    for _ in range(mc_samples):
        p = chunked_forward(params, x, keep, gen).softmax(1)
        total += p
        total_sq += p * p
    mean = total / mc_samples
    return mean, (total_sq / mc_samples - mean * mean).clamp_(min=0).sqrt_()


@torch.no_grad()
def evaluate(params: Params, config: TrainConfig, split: Split, device: torch.device | None = None,
             mc_samples: int = 0) -> EvalResult:
    """Accuracy and loss with dropout off (and MC-dropout accuracy when mc_samples > 0)."""
    x, y = split.x.to(device or split.x.device), split.y.to(device or split.y.device)
    params = [(W.to(x.device), b.to(x.device)) for W, b in params]
    logits = chunked_forward(params, x)
    pred = logits.argmax(1)
    loss = torch.nn.functional.cross_entropy(logits, y).item()
    result = EvalResult(accuracy=(pred == y).double().mean().item(), loss=loss, predictions=pred.cpu(), labels=y.cpu())
    n = logits.shape[1]
    confusion = torch.bincount(result.labels * n + result.predictions, minlength=n * n).view(n, n)
    result.confusion = confusion.tolist()
    if mc_samples > 0:
        mc, _ = probabilities(params, x, config, mc_samples, seed=config.seed)
        result.mc_accuracy = (mc.argmax(1) == y).double().mean().item()
    return result
