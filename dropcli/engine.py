"""Lockstep training of K same-shaped MLPs as one stacked model, with a hand-written backward.

A single `dropcli train` run is a stack of one; an ablation group is a stack of K cells. Every
layer is one batched matmul over the leading model dimension (torch.baddbmm / bmm), each cell
with its own keep probabilities and max-norm, and one fused Adam updates a single flat parameter
vector (Adam is elementwise, so this equals one Adam per cell). Gradients are written straight
into views of a flat buffer; no autograd graph is built. tests/test_engine.py checks the
gradients against autograd and the updates against torch.optim.Adam.

Dropout masks come from masks.py: fresh Bernoulli(keep) draws for every unit at every step, from
each cell's own stream. On CUDA the whole step can be replayed as a CUDA graph (stepper.py).
"""

from __future__ import annotations

import math

import torch

from dropcli.config import TrainConfig
from dropcli.masks import make_dropout
from dropcli.model import Params, forward, param_count

ADAM_ALIGN = 64  # floats: a multiple of every CPU vector width (AVX-512: 16) and of the kernel's 64-byte work units


class FlatAdam:
    """Adam (torch.optim.Adam's defaults and arithmetic) over one flat parameter vector, in one
    call after the backward. On the CPU and CUDA that call is torch's fused Adam kernel (a private
    API: tests/test_engine.py fails loudly if torch changes it); elsewhere (MPS) torch.optim.Adam's
    single-tensor arithmetic."""

    def __init__(self, flat: torch.Tensor, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.flat, self.lr, self.betas, self.eps = flat, lr, betas, eps
        self.m, self.v = torch.zeros_like(flat), torch.zeros_like(flat)
        self.t = torch.zeros((), dtype=torch.float32, device=flat.device)  # steps taken (Adam's t), a tensor for graphs
        self.fused = flat.device.type in ("cpu", "cuda")

    def update(self) -> None:
        """One Adam step (torch's fused kernel on CPU and CUDA, the same arithmetic written out elsewhere)
        over the flat parameter vector, from its .grad; the bias corrections use the step count."""
        self.t += 1
        p, g, m, v = self.flat, self.flat.grad, self.m, self.v
        b1, b2 = self.betas
        if self.fused:
            torch._fused_adam_([p], [g], [m], [v], [], [self.t], lr=self.lr, beta1=b1, beta2=b2,
                               weight_decay=0.0, eps=self.eps, amsgrad=False, maximize=False)
            return
        t = self.t.item()
        m.lerp_(g, 1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        denom = (v.sqrt() / (1 - b2**t) ** 0.5).add_(self.eps)
        p.addcdiv_(m, denom, value=-self.lr / (1 - b1**t))


class Stack:
    """K MLPs of identical shape trained in lockstep; cell k is slice k of every tensor."""

    def __init__(self, configs: list[TrainConfig], params: list[Params], device: torch.device,
                 fused_dropout: bool = True):
        c0 = configs[0]
        self.K, self.sizes, self.batch_size, self.device = len(configs), c0.sizes, c0.batch_size, device
        self.bf16 = c0.precision == "bf16"
        L = len(self.sizes) - 1
        # padded with zeros (which Adam keeps at 0) to a multiple of ADAM_ALIGN, so that torch's fused Adam
        # computes every element in its vector loop: its scalar tail rounds differently on some CPUs (AVX2:
        # 2 of 8,000 elements), which made a cell's last biases depend on its place in the group
        total = -(-self.K * param_count(self.sizes) // ADAM_ALIGN) * ADAM_ALIGN
        self.flat = torch.zeros(total, device=device)
        self.flat.grad = torch.zeros(total, device=device)
        self.weights, self.biases, self.weight_grads, self.bias_grads = [], [], [], []
        off = 0
        for i, o in zip(self.sizes[:-1], self.sizes[1:]):  # (fan_in, fan_out) per layer
            for dst, gdst, shape in ((self.weights, self.weight_grads, (self.K, i, o)),
                                     (self.biases, self.bias_grads, (self.K, 1, o))):
                n = self.K * shape[1] * shape[2]
                dst.append(self.flat[off : off + n].view(shape))
                gdst.append(self.flat.grad[off : off + n].view(shape))
                off += n
        with torch.no_grad():
            for k, cell in enumerate(params):
                for l, (W, b) in enumerate(cell):
                    self.weights[l][k].copy_(W)
                    self.biases[l][k, 0].copy_(b)
        self.adam = FlatAdam(self.flat, lr=c0.lr)
        # max-norm: each hidden unit's incoming weight vector (a column of W) kept to norm <= c;
        # inf for cells without the constraint, whose weights are then multiplied by exactly 1
        norms = [c.max_norm if c.max_norm is not None else math.inf for c in configs]
        self.max_norm = (torch.tensor(norms, device=device).view(self.K, 1, 1)
                         if any(c.max_norm is not None for c in configs) else None)
        # dropout: unit columns [input (784, if any cell uses it) | hidden 1 | ... | hidden L-1]
        keeps, self.segments, col, unit_ids = [[] for _ in configs], [], 0, []
        for l, width in enumerate(self.sizes[:-1]):
            layer_keep = [c.input_keep_prob if l == 0 else c.keep_prob[l - 1] for c in configs]
            on = any(k < 1.0 for k in layer_keep)
            self.segments.append((col, col + width) if on else None)
            if on:
                for k in range(self.K):
                    keeps[k] += [layer_keep[k]] * width
                first = sum(self.sizes[:l])  # the unit's number in the full layout, whatever the group
                unit_ids += range(first, first + width)
                col += width
        self.inv_keep = [
            torch.tensor([1.0 / (c.input_keep_prob if l == 0 else c.keep_prob[l - 1]) for c in configs],
                         device=device).view(self.K, 1, 1)
            for l in range(L)
        ]
        self.masks = make_dropout(keeps, unit_ids, sum(self.sizes[:-1]), self.batch_size, device,
                                  [c.seed for c in configs], self.segments, self.inv_keep,
                                  fused=fused_dropout) if col else None
        self.acts: list[torch.Tensor] = [None] * L  # input of each layer, saved for the backward

    @property
    def dropout_path(self) -> str:
        """Which dropout implementation runs: 'none', 'numpy masks', 'hash masks' or 'fused hash kernel'."""
        return "none" if self.masks is None else self.masks.name

    def _mm(self, bias, a, W):
        if self.bf16:
            return torch.baddbmm(bias.bfloat16(), a.bfloat16(), W.bfloat16()).float()
        return torch.baddbmm(bias, a, W)

    def _bmm(self, a, b, out=None):
        """a @ b per cell; with --precision bf16 the product runs in bfloat16, the result is float32."""
        if not self.bf16:
            return torch.bmm(a, b, out=out)
        r = torch.bmm(a.bfloat16(), b.bfloat16()).float()
        return r if out is None else out.copy_(r)

    def _dropout(self, a: torch.Tensor, l: int, relu: bool) -> torch.Tensor:
        """ReLU (hidden layers) and dropout of layer l's input: kept units scaled 1/keep."""
        if self.segments[l] is not None:
            return self.masks.apply(a, l, relu)
        return a.relu_() if relu else a

    def params(self):
        """[(W (K, in, out), b (K, 1, out))] per layer: every cell's weights, stacked on dim 0."""
        return list(zip(self.weights, self.biases))

    def step(self, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One Adam step on a (K, B, 784) batch, which it may change; returns per-cell (loss,
        correct) on the device."""
        if self.masks is not None:
            self.masks.new_step()
        logits = forward(self.params(), xb, dropout=self._dropout, acts=self.acts, mm=self._mm)
        logp = torch.log_softmax(logits, dim=-1)
        picked = logp.gather(2, yb.unsqueeze(2)).squeeze(2)  # (K, B)
        loss = picked.mean(1).neg_()
        correct = (logits.argmax(2) == yb).sum(1)
        d = logp.exp_()  # softmax
        d.scatter_add_(2, yb.unsqueeze(2), torch.full_like(picked, -1.0).unsqueeze(2)).div_(self.batch_size)
        for l in range(len(self.weights) - 1, -1, -1):
            a = self.acts[l]
            self._bmm(a.transpose(1, 2), d, out=self.weight_grads[l])
            torch.sum(d, dim=1, keepdim=True, out=self.bias_grads[l])
            if l > 0:
                d = self._bmm(d, self.weights[l].transpose(1, 2))
                d = torch.ops.aten.threshold_backward(d, a, 0.0)  # ReLU's gradient; dropped units have a == 0
                if self.segments[l] is not None:
                    d.mul_(self.inv_keep[l])
        self.adam.update()
        if self.max_norm is not None:
            self.apply_max_norm()
        return loss, correct

    @torch.no_grad()
    def apply_max_norm(self) -> None:
        """Rescale each hidden unit's incoming weight vector to norm at most its cell's c."""
        for W in self.weights[:-1]:
            norms = torch.linalg.vector_norm(W, dim=1, keepdim=True)  # (K, 1, units)
            W.mul_(torch.div(self.max_norm, norms).clamp_(max=1.0))  # c / 0 = inf: zero columns stay

    @torch.no_grad()
    def logits(self, x: torch.Tensor, chunk: int) -> torch.Tensor:
        """Dropout-off logits (K, N, 10) for a shared (N, 784) input, `chunk` rows at a time."""
        return torch.cat([forward(self.params(), x[i : i + chunk].expand(self.K, -1, -1), mm=self._mm)
                          for i in range(0, len(x), chunk)], dim=1)

    def state(self) -> list[torch.Tensor]:
        """Every tensor a training step changes (for snapshots around CUDA-graph capture)."""
        extra = [self.masks.counter] if getattr(self.masks, "counter", None) is not None else []  # CUDA draws
        return [self.flat, self.adam.m, self.adam.v, self.adam.t, *extra]

    def cell_params(self, k: int) -> Params:
        """Cell k's weights as a model.Params on the CPU (copies): [(W (in, out), b (out,))] per layer."""
        return [(W[k].detach().clone().cpu(), b[k, 0].detach().clone().cpu()) for W, b in self.params()]
