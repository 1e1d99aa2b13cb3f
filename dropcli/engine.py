"""Lockstep training of K same-shaped MLPs as one stacked model, with a hand-written backward.

A single `dropcli train` run is a stack of one; an ablation group is a stack of K cells. Every
layer is one batched matmul over the leading model dimension (torch.baddbmm / bmm), each cell
with its own keep probabilities, and one fused Adam updates a single flat parameter vector
(Adam is elementwise, so this equals one Adam per cell). Gradients are written straight into
views of a flat buffer; no autograd graph is built. tests/test_engine.py checks the gradients
against autograd and the updates against torch.optim.Adam.

Dropout masks come from masks.py: fresh Bernoulli(keep) draws for every unit at every step, from
each cell's own stream. On CUDA the whole step can be replayed as a CUDA graph (stepper.py).
"""

from __future__ import annotations

import torch

from dropcli.config import TrainConfig
from dropcli.masks import dropout_source
from dropcli.model import Params, param_count


class LayerAdam:
    """Adam (torch.optim.Adam's defaults and arithmetic) over one flat parameter vector. On the CPU
    it is applied layer by layer as soon as each layer's gradient is ready, while parameters and
    gradients may still be in cache (an early profile had the whole vector at once memory-bound,
    2.6 ms of an 11 ms step; an interleaved comparison later found the two equal, see
    benchmarks/RESULTS.md). On a GPU one call over the whole vector, after the backward, streams
    memory fastest. Adam is elementwise, so the order of the updates changes nothing."""

    def __init__(self, flat: torch.Tensor, layers: list[tuple[torch.Tensor, torch.Tensor]], lr: float,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.lr, self.betas, self.eps = lr, betas, eps
        self.m, self.v = torch.zeros_like(flat), torch.zeros_like(flat)
        self.step = torch.zeros((), dtype=torch.float32, device=flat.device)
        self.fused = flat.device.type in ("cpu", "cuda")
        self.per_layer = flat.device.type == "cpu"
        self.whole = ([flat], [flat.grad], [self.m], [self.v])
        base = flat.data_ptr()
        self.groups = []
        for tensors in layers:
            lists = ([], [], [], [])
            for t in tensors:
                off = (t.data_ptr() - base) // t.element_size()
                for lst, full in zip(lists, (flat, flat.grad, self.m, self.v)):
                    lst.append(full[off : off + t.numel()])
            self.groups.append(lists)

    def update(self, layer: int) -> None:
        if layer == len(self.groups) - 1:
            self.step += 1
        if not self.per_layer and layer > 0:
            return  # the whole vector is updated after the last layer's gradient (layer 0)
        p, g, m, v = self.groups[layer] if self.per_layer else self.whole
        b1, b2 = self.betas
        if self.fused:
            torch._fused_adam_(p, g, m, v, [], [self.step] * len(p), lr=self.lr, beta1=b1, beta2=b2,
                               weight_decay=0.0, eps=self.eps, amsgrad=False, maximize=False)
            return
        step = self.step.item()
        for pi, gi, mi, vi in zip(p, g, m, v):  # torch.optim.Adam's single-tensor arithmetic
            mi.lerp_(gi, 1 - b1)
            vi.mul_(b2).addcmul_(gi, gi, value=1 - b2)
            denom = (vi.sqrt() / (1 - b2**step) ** 0.5).add_(self.eps)
            pi.addcdiv_(mi, denom, value=-self.lr / (1 - b1**step))


class Stack:
    """K MLPs of identical shape trained in lockstep; cell k is slice k of every tensor."""

    def __init__(self, configs: list[TrainConfig], params: list[Params], device: torch.device):
        c0 = configs[0]
        self.K, self.sizes, self.B, self.device = len(configs), c0.sizes, c0.batch_size, device
        self.bf16 = c0.precision == "bf16"
        L = len(self.sizes) - 1
        total = self.K * param_count(self.sizes)
        self.flat = torch.empty(total, device=device)
        self.flat.grad = torch.zeros(total, device=device)
        self.W, self.b, self.gW, self.gb = [], [], [], []
        off = 0
        for i, o in zip(self.sizes[:-1], self.sizes[1:]):  # (fan_in, fan_out) per layer
            for dst, gdst, shape in ((self.W, self.gW, (self.K, i, o)), (self.b, self.gb, (self.K, 1, o))):
                n = self.K * shape[1] * shape[2]
                dst.append(self.flat[off : off + n].view(shape))
                gdst.append(self.flat.grad[off : off + n].view(shape))
                off += n
        with torch.no_grad():
            for k, cell in enumerate(params):
                for l, (W, b) in enumerate(cell):
                    self.W[l][k].copy_(W)
                    self.b[l][k, 0].copy_(b)
        self.adam = LayerAdam(self.flat, [(W, b) for W, b in zip(self.W, self.b)], lr=c0.lr)
        # dropout: unit columns [input (784, if any cell uses it) | hidden 1 | ... | hidden L-1]
        self.input_drop = any(c.input_keep_prob < 1.0 for c in configs)
        self.layer_drop = [any(c.keep_prob[l] < 1.0 for c in configs) for l in range(L - 1)]
        keeps, self.segments, col, unit_ids = [[] for _ in configs], [], 0, []
        for l, width in enumerate(self.sizes[:-1]):
            on = self.input_drop if l == 0 else self.layer_drop[l - 1]
            self.segments.append((col, col + width) if on else None)
            if on:
                for k, c in enumerate(configs):
                    keeps[k] += [c.input_keep_prob if l == 0 else c.keep_prob[l - 1]] * width
                first = sum(self.sizes[:l])  # the unit's number in the full layout, whatever the group
                unit_ids += range(first, first + width)
                col += width
        self.inv_keep = [
            torch.tensor([1.0 / (c.input_keep_prob if l == 0 else c.keep_prob[l - 1]) for c in configs],
                         device=device).view(self.K, 1, 1)
            for l in range(L)
        ]
        self.masks = dropout_source(keeps, unit_ids, sum(self.sizes[:-1]), self.B, device, [c.seed for c in configs],
                                    self.segments, self.inv_keep) if col else None
        self.acts: list[torch.Tensor] = [None] * L  # input of each layer, saved for the backward

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

    def _dropout(self, a: torch.Tensor, l: int, relu: bool, train: bool) -> torch.Tensor:
        """ReLU (hidden layers) and, in training, dropout of layer l's input: kept units scaled 1/keep."""
        if train and self.segments[l] is not None:
            return self.masks.apply(a, l, relu)
        return a.relu_() if relu else a

    def forward(self, x: torch.Tensor, train: bool) -> torch.Tensor:
        """x (K, B, 784) -> logits (K, B, 10); in training saves activations and applies dropout."""
        L = len(self.W)
        a = self._dropout(x, 0, False, train)  # step() owns x: it may be masked in place
        for l in range(L):
            if train:
                self.acts[l] = a
            z = self._mm(self.b[l], a, self.W[l]) if a.dim() == 3 else torch.matmul(a, self.W[l]).add_(self.b[l])
            if l == L - 1:
                return z
            a = self._dropout(z, l + 1, True, train)

    def step(self, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One Adam step on a (K, B, 784) batch; returns per-cell (loss, correct) on the device."""
        if self.masks is not None:
            self.masks.new_step()
        logits = self.forward(xb, train=True)
        logp = torch.log_softmax(logits, dim=-1)
        picked = logp.gather(2, yb.unsqueeze(2)).squeeze(2)  # (K, B)
        loss = picked.mean(1).neg_()
        correct = (logits.argmax(2) == yb).sum(1)
        d = logp.exp_()  # softmax
        d.scatter_add_(2, yb.unsqueeze(2), torch.full_like(picked, -1.0).unsqueeze(2)).div_(self.B)
        for l in range(len(self.W) - 1, -1, -1):
            a = self.acts[l]
            self._bmm(a.transpose(1, 2), d, out=self.gW[l])
            torch.sum(d, dim=1, keepdim=True, out=self.gb[l])
            if l > 0:
                d = self._bmm(d, self.W[l].transpose(1, 2))
                d = torch.ops.aten.threshold_backward(d, a, 0.0)  # ReLU's gradient; dropped units have a == 0
                if self.segments[l] is not None:
                    d.mul_(self.inv_keep[l])
            self.adam.update(l)  # layer l's gradient is complete and W[l] no longer needed: update while hot
        return loss, correct

    @torch.no_grad()
    def logits(self, x: torch.Tensor, chunk: int = 2000) -> torch.Tensor:
        """Dropout-off logits (K, N, 10) for a shared (N, 784) input."""
        return torch.cat([self.forward(x[i : i + chunk], train=False) for i in range(0, len(x), chunk)], dim=1)

    def state(self) -> list[torch.Tensor]:
        """Every tensor a training step changes (for snapshots around CUDA-graph capture)."""
        extra = [self.masks.counter] if getattr(self.masks, "counter", None) is not None else []  # CUDA draws
        return [self.flat, self.adam.m, self.adam.v, self.adam.step, *extra]

    def cell_params(self, k: int) -> Params:
        return [(W[k].detach().clone().cpu(), b[k, 0].detach().clone().cpu()) for W, b in zip(self.W, self.b)]
