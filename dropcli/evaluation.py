"""Evaluate trained weights: accuracy and loss with dropout off, per-class counts, Monte-Carlo dropout.

    $ dropcli evaluate results/runs/<run> --mc-samples 30
    $ dropcli evaluate results/runs/<run> --mc-curve 1,2,5,10,20,50,100 --csv curve.csv

Weight scaling (dropout off, as the tutorial tests with keep_prob 1.0) is the standard test-time
rule; Monte-Carlo dropout averages the softmax of T dropout-on passes instead (the dropout paper's
Figure 11 compares the two on MNIST). Every evaluation runs EVAL_CHUNK rows at a time, so every
path rounds alike and `dropcli evaluate` repeats the accuracy `dropcli train` printed; like training,
it computes with denormals flushed to zero (provenance.flushing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from dropcli.config import EVAL_CHUNK, Stream, TrainConfig, stream_seed
from dropcli.data import Split
from dropcli.model import Params, forward
from dropcli.provenance import flushing


@dataclass
class EvalResult:
    """One evaluation of a network on a split, dropout off: accuracy (a fraction, 0-1), loss (mean
    softmax cross-entropy, nats), the predictions and labels ((N,) int64 on the CPU), the MC-dropout
    accuracy when asked for, and the confusion matrix ([true class][predicted class] counts)."""

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


def mc_generator(seed: int, device: torch.device, repeat: int = 0) -> torch.Generator:
    """The Monte-Carlo dropout stream of a run: repeat 0 is the one `evaluate --mc-samples` uses."""
    s = stream_seed(seed, Stream.MC) if repeat == 0 else stream_seed(seed, Stream.MC, repeat)
    return torch.Generator(device).manual_seed(s)


def random_dropout(config: TrainConfig, gen: torch.Generator):
    """Dropout with a config's keep probabilities (input, then one per hidden layer) from `gen`."""
    keep = (config.input_keep_prob, *config.keep_prob)

    def drop(a: torch.Tensor, l: int, relu: bool) -> torch.Tensor:
        if relu:
            a = a.relu_()
        if keep[l] < 1.0:
            a = a * (torch.rand(a.shape, generator=gen, device=a.device) < keep[l]) / keep[l]
        return a

    return drop


def chunked_forward(params: Params, x: torch.Tensor, dropout=None) -> torch.Tensor:
    """model.forward over EVAL_CHUNK rows at a time, so that every evaluation path rounds alike."""
    return torch.cat([forward(params, x[i : i + EVAL_CHUNK], dropout) for i in range(0, len(x), EVAL_CHUNK)])


def _on(params: Params, device: torch.device) -> Params:
    return [(W.to(device), b.to(device)) for W, b in params]


@flushing()  # as training computes: denormals flushed in every thread
@torch.no_grad()
def probabilities(params: Params, x: torch.Tensor, config: TrainConfig | None = None, mc_samples: int = 0,
                  seed: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Softmax probabilities with dropout off; with mc_samples > 0, the mean and std over that
    many dropout-on passes (Monte-Carlo dropout) instead."""
    params = _on(params, x.device)
    if mc_samples <= 0:
        return chunked_forward(params, x).softmax(1), None
    drop = random_dropout(config, mc_generator(seed, x.device))
    total = torch.zeros(len(x), params[-1][1].numel(), device=x.device)
    total_sq = torch.zeros_like(total)
    for _ in range(mc_samples):
        p = chunked_forward(params, x, drop).softmax(1)
        total += p
        total_sq += p * p
    mean = total / mc_samples
    return mean, (total_sq / mc_samples - mean * mean).clamp_(min=0).sqrt_()


@flushing()  # as training computes: denormals flushed in every thread
@torch.no_grad()
def evaluate(params: Params, config: TrainConfig, split: Split, device: torch.device | None = None,
             mc_samples: int = 0) -> EvalResult:
    """Accuracy and loss of `params` (model.Params) on `split` with dropout off, as the tutorial tests
    (keep 1.0: weight scaling), and the MC-dropout accuracy over mc_samples stochastic passes when
    mc_samples > 0 (its stream: Stream.MC of config.seed). Runs on `device` (default: the split's),
    in chunks of EVAL_CHUNK rows. Returns an EvalResult. Raises torch's errors (out of memory, a
    params shape that does not fit 784 inputs) as they come; nothing of its own."""
    x, y = split.x.to(device or split.x.device), split.y.to(device or split.y.device)
    params = _on(params, x.device)
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


@flushing()  # as training computes: denormals flushed in every thread
@torch.no_grad()
def mc_curve(params: Params, config: TrainConfig, split: Split, samples: tuple[int, ...], repeats: int = 5,
             on_pass=None) -> list[dict]:
    """Monte-Carlo dropout accuracy against the number of samples T: for each repeat, one run of
    max(samples) dropout-on passes from its own stream, the accuracy of the mean softmax of the
    first T passes recorded at every T in `samples`. Rows: repeat, samples, accuracy."""
    x, y = split.x, split.y
    params = _on(params, x.device)
    wanted, rows = set(samples), []
    for r in range(repeats):
        drop = random_dropout(config, mc_generator(config.seed, x.device, r))
        total = torch.zeros(len(x), params[-1][1].numel(), device=x.device)
        for t in range(1, max(samples) + 1):
            total += chunked_forward(params, x, drop).softmax(1)
            if t in wanted:
                rows.append({"repeat": r, "samples": t, "accuracy": (total.argmax(1) == y).double().mean().item()})
            if on_pass:
                on_pass()
    return rows
