"""Run a stack's training steps: eagerly, or on CUDA replayed as one captured CUDA graph.

A lockstep step is some fifty small kernels; on a GPU, launching them from Python costs more
than running them. On CUDA the whole step (batch gather, masks, forward, backward, Adam, loss
sums) is captured once and replayed with new batch indices. Capture needs warm-up steps, which
train; the stack's state is restored afterwards, so the graph changes no number
(tests/test_engine.py checks replay against eager steps on a GPU).
"""

from __future__ import annotations

import torch

from dropcli.engine import Stack


class EagerStep:
    """One lockstep training step as torch calls: gather the batch rows by index, then Stack.step;
    sums each cell's cost and correct predictions over an epoch (cost, correct: (K,) on the device)."""

    name = "eager"

    def __init__(self, stack: Stack, x: torch.Tensor, y: torch.Tensor):
        self.stack, self.x, self.y = stack, x, y
        K, B = stack.K, stack.batch_size
        self.shape = (K, B)
        self.xbuf = torch.empty(K * B, x.shape[1], device=x.device)
        self.cost = torch.zeros(K, device=x.device)  # sums over the epoch's steps
        self.correct = torch.zeros(K, dtype=torch.int64, device=x.device)

    def body(self, idx: torch.Tensor) -> None:
        """One step on the rows idx (K x B indices into x, cell after cell)."""
        K, B = self.shape
        torch.index_select(self.x, 0, idx, out=self.xbuf)
        loss, correct = self.stack.step(self.xbuf.view(K, B, -1), self.y[idx].view(K, B))
        self.cost += loss
        self.correct += correct

    def __call__(self, idx: torch.Tensor) -> None:
        self.body(idx)

    def reset(self) -> None:
        """Zero the epoch's sums of cost and correct predictions."""
        self.cost.zero_()
        self.correct.zero_()


class GraphStep(EagerStep):
    """CUDA: the same step captured once as a CUDA graph and replayed (the index buffer is its input);
    the numbers are the eager step's."""

    name = "cuda graph"

    def __init__(self, stack: Stack, x: torch.Tensor, y: torch.Tensor, warmup: int = 3):
        super().__init__(stack, x, y)
        self.idx = torch.zeros(stack.K * stack.batch_size, dtype=torch.int64, device=x.device)
        saved = [t.clone() for t in stack.state()]
        try:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(warmup):
                    self.body(self.idx)
            torch.cuda.current_stream().wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.body(self.idx)
        finally:
            for t, s in zip(stack.state(), saved):
                t.copy_(s)
            self.reset()

    def __call__(self, idx: torch.Tensor) -> None:
        self.idx.copy_(idx)
        self.graph.replay()


def make_step(stack: Stack, x: torch.Tensor, y: torch.Tensor, cuda_graphs: bool = True) -> EagerStep:
    """A step over batches of x given as indices; on CUDA replayed as a graph unless cuda_graphs=False."""
    if x.device.type == "cuda" and cuda_graphs:
        try:
            return GraphStep(stack, x, y)
        except RuntimeError:  # capture unsupported here: the state was restored, run eagerly
            pass
    return EagerStep(stack, x, y)
