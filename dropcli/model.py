"""The tutorial's dropout MLP: 784-512-512-512-512-10, ReLU, dropout after each hidden layer.

Weights are stored as the tutorial stores them, W of shape (in, out) with y = x @ W + b.
`init_params` draws a run's initial weights from its own seed alone, so `dropcli train` and
every ablation cell with that seed start from identical numbers. `forward` is the network's one
forward pass: for one network (W of shape (in, out)) or a lockstep stack (K, in, out), with or
without dropout. `DropoutMLP` is the plain torch.nn form of the same network (PyTorch's Dropout
takes p = 1 - keep_prob); tests/test_model.py trains both and checks that they agree.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from dropcli.config import Stream, stream_seed

Params = list[tuple[torch.Tensor, torch.Tensor]]  # [(W (in, out), b (out,)), ...] per layer


def init_params(sizes: tuple[int, ...], init: str, seed: int) -> Params:
    """Initial weights on the CPU, a function of (sizes, init, seed) only."""
    g = torch.Generator().manual_seed(stream_seed(seed, Stream.WEIGHTS))
    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        W = torch.empty(fan_in, fan_out)
        b = torch.empty(fan_out)
        if init == "tutorial":  # tf.truncated_normal(stddev=0.1): redrawn beyond 2 stddev
            nn.init.trunc_normal_(W, std=0.1, a=-0.2, b=0.2, generator=g)
            b.normal_(0.0, 1.0, generator=g)  # tf.random_normal([n]) biases
        elif init == "xavier":  # Glorot uniform, as the 98.04% relative of the tutorial
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            W.uniform_(-bound, bound, generator=g)
            b.normal_(0.0, 1.0, generator=g)
        elif init == "kaiming":  # He normal for ReLU, zero biases
            W.normal_(0.0, math.sqrt(2.0 / fan_in), generator=g)
            b.zero_()
        else:
            raise ValueError(f"unknown init {init!r}")
        params.append((W, b))
    return params


def param_count(sizes: tuple[int, ...]) -> int:
    """Weights and biases of an MLP with these layer widths: sum of in x out + out."""
    return sum(i * o + o for i, o in zip(sizes[:-1], sizes[1:]))


Dropout = Callable[[torch.Tensor, int, bool], torch.Tensor]  # (activation, layer, relu first) -> dropped


def affine(b: torch.Tensor, a: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """a @ W + b for one network (2-D) or a stack of them (3-D, batched over the first dimension)."""
    return torch.baddbmm(b, a, W) if a.dim() == 3 else torch.addmm(b, a, W)


def forward(params, x: torch.Tensor, dropout: Dropout | None = None, acts: list | None = None,
            mm: Callable = affine) -> torch.Tensor:
    """Logits of the network(s) `params` ([(W, b), ...]). With `dropout`, layer l's input passes
    through dropout(a, l, relu) (ReLU first for hidden layers); `acts` receives every layer's input
    (the backward pass needs them). May change x in place when dropout is on."""
    L = len(params)
    a = dropout(x, 0, False) if dropout else x
    for l, (W, b) in enumerate(params):
        if acts is not None:
            acts[l] = a
        z = mm(b, a, W)
        if l == L - 1:
            return z
        a = dropout(z, l + 1, True) if dropout else z.relu_()


class DropoutMLP(nn.Module):
    """Reference torch.nn version: Linear -> ReLU -> Dropout(1 - keep) per hidden layer."""

    def __init__(self, sizes: tuple[int, ...], keep_prob: tuple[float, ...], input_keep_prob: float = 1.0):
        super().__init__()
        layers: list[nn.Module] = []
        if input_keep_prob < 1.0:
            layers.append(nn.Dropout(1.0 - input_keep_prob))
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(fan_in, fan_out))
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
                if keep_prob[i] < 1.0:  # keep_prob 1.0 means no dropout layer at all
                    layers.append(nn.Dropout(1.0 - keep_prob[i]))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, 10) of images x (N, 784)."""
        return self.net(x)

    def linears(self) -> list[nn.Linear]:
        """The nn.Linear layers, input first."""
        return [m for m in self.net if isinstance(m, nn.Linear)]

    def load_params(self, params: Params) -> DropoutMLP:
        """Copy model.Params ([(W (in, out), b (out,))]) into the layers; returns self."""
        with torch.no_grad():
            for lin, (W, b) in zip(self.linears(), params):
                lin.weight.copy_(W.t())
                lin.bias.copy_(b)
        return self

    def params(self) -> Params:
        """The layers' weights as model.Params (copies, W as (in, out))."""
        return [(lin.weight.detach().t().clone(), lin.bias.detach().clone()) for lin in self.linears()]
