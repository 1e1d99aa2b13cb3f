"""The fast stacked trainer against autograd, torch.optim.Adam, and itself run one cell at a time."""

import math

import pytest
import torch
from conftest import small_config

from dropcli.engine import Stack
from dropcli.model import init_params
from dropcli.train import batch_generator, train, train_group

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


def test_batched_cells_see_the_batches_of_single_runs(tiny_data, monkeypatch):
    """Every step's batch of a cell in a group equals that of the same config trained alone."""
    import dropcli.train as train_module

    seen: list[list[torch.Tensor]] = []
    real = train_module.make_step

    class Recording:
        def __init__(self, stack, x, y, cuda_graphs=True):
            self.inner, self.K = real(stack, x, y, cuda_graphs), stack.K

        def __call__(self, idx):
            seen[-1].append(idx.clone().view(self.K, -1))
            self.inner(idx)

        def __getattr__(self, name):
            return getattr(self.inner, name)

    monkeypatch.setattr(train_module, "make_step", Recording)
    configs = [small_config(keep_prob=(k,), seed=s, epochs=2) for k, s in ((0.5, 1), (1.0, 2), (0.8, 1))]
    seen.append([])
    train_group(configs, tiny_data)
    grouped = torch.stack(seen[0])  # (steps, K, B)
    assert len(grouped) == 2 * configs[0].steps_per_epoch
    for k, c in enumerate(configs):
        seen.append([])
        train(c, tiny_data)
        assert torch.equal(grouped[:, k], torch.stack(seen[-1])[:, 0])
    assert torch.equal(grouped[:, 0], grouped[:, 2])  # the order is the seed's alone
    assert not torch.equal(grouped[:, 0], grouped[:, 1])
    perm = torch.randperm(configs[0].n_train, generator=batch_generator(1))
    assert torch.equal(grouped[0, 0], perm[: configs[0].batch_size])  # first batch: the seed's permutation


def test_batched_results_match_single_runs(tiny_data):
    configs = [small_config(keep_prob=(k,), seed=s, epochs=3) for k in (0.5, 1.0) for s in (1, 2)]
    batched = train_group(configs, tiny_data)
    for c, b in zip(configs, batched):
        single = train(c, tiny_data)
        assert b.parallel_models == 4 and single.parallel_models == 1
        assert math.isclose(b.final_cost, single.final_cost, rel_tol=0.02)
        assert abs(b.test_accuracy - single.test_accuracy) <= 0.015
        assert abs(b.validation_accuracy - single.validation_accuracy) <= 0.015


def test_a_cell_does_not_depend_on_its_neighbours(tiny_data):
    """Same group size, different company: bit-identical history and weights."""
    mine = small_config(keep_prob=(0.6,), seed=7)
    a = train_group([mine, small_config(keep_prob=(0.9,), seed=8)], tiny_data)[0]
    b = train_group([small_config(keep_prob=(0.3,), input_keep_prob=0.8, seed=99), mine], tiny_data)[1]
    assert [h["cost"] for h in a.history] == [h["cost"] for h in b.history]
    assert all(torch.equal(x[0], y[0]) for x, y in zip(a.params, b.params))
    assert a.test_accuracy == b.test_accuracy


def test_same_seed_same_numbers(tiny_data):
    a, b = train(small_config(seed=3), tiny_data), train(small_config(seed=3), tiny_data)
    assert [h["cost"] for h in a.history] == [h["cost"] for h in b.history]
    assert a.test_accuracy == b.test_accuracy
    c = train(small_config(seed=4), tiny_data)
    assert c.history[0]["cost"] != a.history[0]["cost"]


def test_training_learns(tiny_data):
    r = train(small_config(epochs=3), tiny_data)
    assert r.status == "ok"
    assert r.history[-1]["cost"] < r.history[0]["cost"]
    assert r.test_accuracy > 0.8 and r.train_accuracy > 0.8


def test_divergence_is_detected_per_cell(tiny_data):
    ok, bad = train_group([small_config(seed=1), small_config(seed=2, keep_prob=(0.5,))], tiny_data)
    assert ok.status == bad.status == "ok"
    [r] = train_group([small_config(lr=1e30, seed=1)], tiny_data)
    assert r.status == "diverged"
    assert not math.isfinite(r.final_cost) and math.isnan(r.test_accuracy)


def test_bf16_precision_trains_close_to_float32(tiny_data):
    fp32 = train(small_config(epochs=2), tiny_data)
    bf16 = train(small_config(epochs=2, precision="bf16"), tiny_data)
    assert bf16.status == "ok" and bf16.history[-1]["cost"] < bf16.history[0]["cost"]
    assert math.isclose(bf16.final_cost, fp32.final_cost, rel_tol=0.05)
    assert abs(bf16.test_accuracy - fp32.test_accuracy) <= 0.03


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture
def gpu_data(tiny_data):
    from dropcli.data import Dataset, Split

    cuda = torch.device("cuda")
    return Dataset("mnist", Split(tiny_data.train_full.x.to(cuda), tiny_data.train_full.y.to(cuda)),
                   Split(tiny_data.test.x.to(cuda), tiny_data.test.y.to(cuda)), "synthetic")


@needs_cuda
def test_cuda_matches_cpu(tiny_data, gpu_data):
    c = small_config(keep_prob=(1.0,), epochs=2)  # no dropout: the mask streams differ by device
    cpu_r, gpu_r = train(c, tiny_data), train(c, gpu_data)
    assert math.isclose(cpu_r.final_cost, gpu_r.final_cost, rel_tol=0.02)
    assert abs(cpu_r.test_accuracy - gpu_r.test_accuracy) <= 0.015
    d = train_group([small_config(keep_prob=(k,), seed=s) for k in (0.5, 0.8) for s in (1, 2)], gpu_data)
    assert all(r.status == "ok" and r.device.startswith("cuda") for r in d)


@needs_cuda
@pytest.mark.parametrize("switch", ["DROPCLI_CUDA_GRAPHS", "DROPCLI_FUSED_DROPOUT"])
def test_cuda_graphs_and_the_fused_dropout_kernel_change_no_number(gpu_data, monkeypatch, switch):
    """Graph replay against eager steps; the fused kernel against the same masks as torch ops."""
    from dropcli.masks import FusedHashDropout

    configs = [small_config(keep_prob=(k,), input_keep_prob=ik, seed=s) for k, ik, s in ((0.5, 1.0, 1), (0.8, 0.8, 2))]
    stack = Stack(configs, [init_params(c.sizes, c.init, c.seed) for c in configs], torch.device("cuda"))
    assert isinstance(stack.masks, FusedHashDropout)  # jiterator compiled the kernels
    on = train_group(configs, gpu_data)
    monkeypatch.setenv(switch, "0")
    off = train_group(configs, gpu_data)
    for a, b in zip(on, off):
        assert [h["cost"] for h in a.history] == [h["cost"] for h in b.history]
        assert all(torch.equal(p[0], q[0]) for p, q in zip(a.params, b.params))


@needs_cuda
def test_hash_masks_agree_on_cpu_and_cuda():
    from dropcli.masks import HashMasks

    rows = [[0.5] * 300, [0.8] * 300]
    a = HashMasks(rows, list(range(300)), 300, 16, torch.device("cpu"), [1, 2])
    b = HashMasks(rows, list(range(300)), 300, 16, torch.device("cuda"), [1, 2])
    for _ in range(3):
        assert torch.equal(a.draw(), b.draw().cpu())


@needs_cuda
def test_tf32_trains_close_to_float32_and_restores_the_setting(gpu_data):
    before = torch.get_float32_matmul_precision()
    fp32 = train(small_config(epochs=2), gpu_data)
    tf32 = train(small_config(epochs=2, precision="tf32"), gpu_data)
    assert torch.get_float32_matmul_precision() == before
    assert tf32.status == "ok" and math.isclose(tf32.final_cost, fp32.final_cost, rel_tol=0.05)
    assert abs(tf32.test_accuracy - fp32.test_accuracy) <= 0.03
