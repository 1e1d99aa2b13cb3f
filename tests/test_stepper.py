"""The stepper: a step over index batches equals the engine's step on the gathered batch."""

import pytest
import torch
from conftest import small_config

from dropcli.engine import Stack
from dropcli.model import init_params
from dropcli.stepper import EagerStep, make_step


def stacks(configs, device="cpu"):
    return [Stack(configs, [init_params(c.sizes, c.init, c.seed) for c in configs], torch.device(device))
            for _ in range(2)]


def test_eager_step_gathers_the_batches_and_sums_cost_and_correct():
    configs = [small_config(seed=1), small_config(seed=2, keep_prob=(0.5,))]
    a, b = stacks(configs)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(300, 784, generator=g), torch.randint(0, 10, (300,), generator=g)
    step = make_step(a, x, y)
    assert isinstance(step, EagerStep) and step.name == "eager"
    total = torch.zeros(2)
    for _ in range(3):
        idx = torch.randint(0, 300, (2 * 50,), generator=g)
        step(idx)
        loss, _ = b.step(x[idx].view(2, 50, 784).clone(), y[idx].view(2, 50))
        total += loss
    assert torch.equal(a.flat, b.flat) and torch.allclose(step.cost, total)
    step.reset()
    assert step.cost.sum() == 0 and step.correct.sum() == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_cuda_graph_replays_the_eager_step_exactly():
    configs = [small_config(seed=1), small_config(seed=2, keep_prob=(0.5,))]
    a, b = stacks(configs, "cuda")
    x, y = torch.rand(300, 784, device="cuda"), torch.randint(0, 10, (300,), device="cuda")
    graph, eager = make_step(a, x, y), make_step(b, x, y, cuda_graphs=False)
    assert graph.name == "cuda graph" and eager.name == "eager"
    for _ in range(3):
        idx = torch.randint(0, 300, (100,), device="cuda")
        graph(idx)
        eager(idx)
    assert torch.equal(a.flat, b.flat)
