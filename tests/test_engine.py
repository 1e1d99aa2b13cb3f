"""The fast stacked trainer against autograd, torch.optim.Adam, and itself run one cell at a time."""

import math

import pytest
import torch
from conftest import small_config

from dropcli.engine import Stack
from dropcli.model import init_params

CPU = torch.device("cpu")


def make_stack(configs):
    return Stack(configs, [init_params(c.sizes, c.init, c.seed) for c in configs], CPU)


def reference_loss(params, x, y, mask, stack, k):
    """Autograd version of cell k's forward, using the engine's own masks."""
    a = x
    for l, (W, b) in enumerate(params):
        seg = stack.segments[l]
        if seg is not None:
            a = a * mask[k, :, seg[0] : seg[1]] * stack.inv_keep[l][k]
        a = a @ W + b
        if l < len(params) - 1:
            a = torch.relu(a)
    return torch.nn.functional.cross_entropy(a, y)


def test_gradients_match_autograd():
    configs = [small_config(keep_prob=(0.5, 0.8), input_keep_prob=0.8, seed=1),
               small_config(keep_prob=(1.0, 0.6), seed=2), small_config(keep_prob=(1.0,), seed=3)]
    stack = make_stack(configs)
    stack.adam.update = lambda: None  # keep the weights; look at the gradients
    x = torch.rand(3, 50, 784)
    y = torch.randint(0, 10, (3, 50))
    before = [[(W[k].clone(), b[k, 0].clone()) for W, b in stack.params()] for k in range(3)]
    loss, _ = stack.step(x.clone(), y)
    mask = stack.masks.mask.clone()
    for k in range(3):
        params = [(W.requires_grad_(), b.requires_grad_()) for W, b in before[k]]
        ref = reference_loss(params, x[k], y[k], mask, stack, k)
        ref.backward()
        assert math.isclose(loss[k].item(), ref.item(), rel_tol=1e-5)
        for l, (W, b) in enumerate(params):
            torch.testing.assert_close(stack.weight_grads[l][k], W.grad, rtol=1e-4, atol=1e-6)
            torch.testing.assert_close(stack.bias_grads[l][k, 0], b.grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("fused", [True, False])  # torch's fused kernel (CPU, CUDA), the plain arithmetic (MPS)
def test_flat_adam_matches_torch_adam(fused):
    configs = [small_config(seed=4), small_config(keep_prob=(0.4,), seed=5)]
    stack = make_stack(configs)
    stack.adam.fused = fused
    ref = [[p.clone().requires_grad_() for W, b in stack.params() for p in (W[k], b[k, 0])] for k in range(2)]
    opts = [torch.optim.Adam(r, lr=configs[0].lr) for r in ref]
    for _ in range(4):
        x, y = torch.rand(2, 50, 784), torch.randint(0, 10, (2, 50))
        stack.step(x, y)
        for k in range(2):
            grads = [g for gW, gb in zip(stack.weight_grads, stack.bias_grads) for g in (gW[k], gb[k, 0])]
            for p, g in zip(ref[k], grads):
                p.grad = g.clone()
            opts[k].step()
    for k in range(2):
        mine = [p for W, b in stack.params() for p in (W[k], b[k, 0])]
        for a, b in zip(mine, ref[k]):
            torch.testing.assert_close(a, b.detach(), rtol=1e-5, atol=1e-7)


def test_batched_cells_start_like_single_runs(tiny_data):
    configs = [small_config(keep_prob=(k,), seed=s) for k in (0.5, 1.0) for s in (1, 2)]
    stack = make_stack(configs)
    for k, c in enumerate(configs):
        single = make_stack([c])
        for l in range(len(stack.weights)):
            assert torch.equal(stack.weights[l][k], single.weights[l][0])
            assert torch.equal(stack.biases[l][k], single.biases[l][0])


def max_column_norms(stack, k):
    return [torch.linalg.vector_norm(W[k], dim=0).max().item() for W in stack.weights[:-1]]


def test_max_norm_holds_after_every_step_per_cell():
    configs = [small_config(seed=1, max_norm=1.0), small_config(seed=2, keep_prob=(0.5,), max_norm=1.5),
               small_config(seed=3)]
    stack = make_stack(configs)
    assert max(max_column_norms(stack, 0)) > 1.0  # the constraint binds from the first step on
    unconstrained = make_stack([configs[2]])
    for _ in range(5):
        x, y = torch.rand(3, 50, 784), torch.randint(0, 10, (3, 50))
        stack.step(x.clone(), y)
        unconstrained.step(x[2:].clone(), y[2:])
        assert max(max_column_norms(stack, 0)) <= 1.0 * (1 + 1e-5)  # float32: a norm recomputed over 784 rounded
        assert max(max_column_norms(stack, 1)) <= 1.5 * (1 + 1e-5)  # squares exceeds c by up to ~10 ulps (1.1e-6 seen)
        for W, ref in zip(stack.weights, unconstrained.weights):  # a cell without max-norm is untouched
            assert torch.equal(W[2], ref[0])
    out_norm = torch.linalg.vector_norm(stack.weights[-1][0], dim=0).max().item()
    assert out_norm > 0  # the output layer's units are not hidden units: not constrained


def test_max_norm_matches_a_plain_reference():
    """Adam step by torch.optim.Adam, then each hidden unit's incoming weights renormed by hand."""
    c = small_config(seed=4, keep_prob=(1.0,), max_norm=1.2)
    stack = make_stack([c])
    ref = [p.clone().requires_grad_() for W, b in stack.params() for p in (W[0], b[0, 0])]
    opt = torch.optim.Adam(ref, lr=c.lr)
    for _ in range(4):
        x, y = torch.rand(1, 50, 784), torch.randint(0, 10, (1, 50))
        a = x[0]
        for l in range(0, len(ref), 2):
            a = a @ ref[l] + ref[l + 1]
            if l < len(ref) - 2:
                a = torch.relu(a)
        loss = torch.nn.functional.cross_entropy(a, y[0])
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            for W in ref[0:-2:2]:
                W.mul_((c.max_norm / torch.linalg.vector_norm(W, dim=0, keepdim=True)).clamp(max=1.0))
        stack.step(x.clone(), y)
    mine = [p for W, b in stack.params() for p in (W[0], b[0, 0])]
    for a, b in zip(mine, ref):  # Adam divides by sqrt(v): where a gradient is near 0, a rounding
        diff = (a - b.detach()).abs()  # difference can flip its step (+lr or -lr) for that weight
        assert diff.max() <= 2 * 4 * c.lr  # so at most two steps' size per step, 4 steps ...
        assert (diff > 1e-6 + 1e-4 * b.detach().abs()).float().mean() <= 1e-3  # ... in a few weights; the rest agree to float32


def test_the_private_torch_apis_the_engine_uses_still_exist():
    """torch._fused_adam_ (every CPU/CUDA step) and jiterator (the CUDA dropout kernel) are private:
    if a torch release changes them, this fails by name instead of the engine failing obscurely."""
    assert callable(getattr(torch, "_fused_adam_", None)), "torch._fused_adam_ is gone: see engine.FlatAdam"
    # its arguments are checked by calling it: test_flat_adam_matches_torch_adam runs the fused path
    from torch.cuda import jiterator

    assert callable(getattr(jiterator, "_create_jit_fn", None)), "jiterator._create_jit_fn is gone: see masks.FusedHashDropout"


@pytest.mark.parametrize("hidden, k", [((64, 64), 1), ((64, 64), 2), ((33,), 3), ((512, 512, 512, 512), 1)])
def test_adams_vector_has_no_tail_and_its_padding_stays_zero(hidden, k):
    """torch's fused Adam rounds its scalar tail differently from its vector loop on some CPUs (AVX2),
    which made a cell's last biases depend on its place in a group: the flat vector has no tail."""
    from dropcli.engine import ADAM_ALIGN
    from dropcli.model import param_count

    configs = [small_config(hidden=hidden, seed=s, batch_size=8) for s in range(k)]
    stack = make_stack(configs)
    used = k * param_count(configs[0].sizes)
    assert stack.flat.numel() % ADAM_ALIGN == 0 and 0 <= stack.flat.numel() - used < ADAM_ALIGN
    x, y = torch.rand(k, 8, 784), torch.randint(0, 10, (k, 8))
    for _ in range(3):
        stack.step(x.clone(), y)
    assert not stack.flat[used:].any() and not stack.adam.m[used:].any()
    assert stack.biases[-1].data_ptr() + stack.biases[-1].numel() * 4 == stack.flat.data_ptr() + used * 4
