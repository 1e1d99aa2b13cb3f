"""Training runs and lockstep groups: each cell as if trained alone, best epochs, subsets, divergence."""

import math

import pytest
import torch
from conftest import small_config

from dropcli.train import batch_generator, train, train_group


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
@pytest.mark.parametrize("switch", ["cuda_graphs", "fused_dropout"])
def test_cuda_graphs_and_the_fused_dropout_kernel_change_no_number(gpu_data, switch):
    """Graph replay against eager steps; the fused kernel against the same masks as torch ops."""
    from dropcli.engine import Stack
    from dropcli.masks import FusedHashDropout
    from dropcli.model import init_params

    configs = [small_config(keep_prob=(k,), input_keep_prob=ik, seed=s) for k, ik, s in ((0.5, 1.0, 1), (0.8, 0.8, 2))]
    stack = Stack(configs, [init_params(c.sizes, c.init, c.seed) for c in configs], torch.device("cuda"))
    assert isinstance(stack.masks, FusedHashDropout)  # jiterator compiled the kernels
    on = train_group(configs, gpu_data)
    assert on[0].engine == "cuda graph, fused hash kernel dropout"
    off = train_group(configs, gpu_data, **{switch: False})
    assert off[0].engine != on[0].engine
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


def test_a_diverging_cell_does_not_touch_its_healthy_neighbours(tiny_data, monkeypatch):
    import dropcli.train as train_module

    healthy = small_config(seed=1, keep_prob=(0.7,))
    alone = train_group([healthy, small_config(seed=3, keep_prob=(0.9,))], tiny_data)[0]  # the same group size
    real = train_module.init_params

    def poisoned(sizes, init, seed):  # seed 2 starts with an infinite weight: its cost is NaN at once
        params = real(sizes, init, seed)
        if seed == 2:
            params[0][0][0, 0] = math.inf
        return params

    monkeypatch.setattr(train_module, "init_params", poisoned)
    good, bad = train_group([healthy, small_config(seed=2, keep_prob=(0.7,))], tiny_data)
    assert bad.status == "diverged" and math.isnan(bad.test_accuracy) and bad.best_epoch is None
    assert good.status == "ok" and good.test_accuracy == alone.test_accuracy
    assert [h["cost"] for h in good.history] == [h["cost"] for h in alone.history]


def test_best_epoch_and_its_test_accuracy(tiny_data, monkeypatch):
    import dropcli.train as train_module

    evaluated = []
    real = train_module.evaluate

    def spy(params, config, split, device=None, mc_samples=0):
        r = real(params, config, split, device, mc_samples)
        evaluated.append((split is tiny_data.test, [W.clone() for W, _ in params], r.accuracy))
        return r

    monkeypatch.setattr(train_module, "evaluate", spy)
    r = train(small_config(epochs=4, seed=5), tiny_data)  # the synthetic data saturates early: best before the last
    vals = [h["validation_accuracy"] for h in r.history]
    assert r.best_epoch == vals.index(max(vals)) + 1 and r.best_epoch < 4  # the first epoch of the highest
    tests = [e for e in evaluated if e[0]]
    assert len(tests) == 2 and r.test_accuracy_at_best == tests[1][2]  # that epoch's snapshot was evaluated,
    assert not all(torch.equal(a, b) for a, b in zip(tests[0][1], tests[1][1]))  # not the final weights
    evaluated.clear()
    last = train(small_config(epochs=1, seed=5), tiny_data)  # one epoch: the best is the last, evaluated once
    assert last.best_epoch == 1 and last.test_accuracy_at_best == last.test_accuracy
    assert len([e for e in evaluated if e[0]]) == 1
    none = train(small_config(validation_size=0, train_size=1000), tiny_data)
    assert none.best_epoch is None and math.isnan(none.test_accuracy_at_best)


def test_cells_of_a_group_train_on_their_own_random_subsets(tiny_data):
    from dropcli.data import subset_indices

    data = tiny_data
    configs = [small_config(train_size=600, seed=s, keep_prob=(k,)) for s, k in ((1, 0.5), (2, 0.5), (1, 1.0))]
    subsets = [subset_indices(c, 1000) for c in configs]
    assert torch.equal(subsets[0], subsets[2]) and not torch.equal(subsets[0], subsets[1])
    grouped = train_group(configs, data)
    for c, g in zip(configs, grouped):
        single = train(c, data)
        assert [h["cost"] for h in g.history] == pytest.approx([h["cost"] for h in single.history], rel=1e-4)
        assert g.train_accuracy == pytest.approx(single.train_accuracy, abs=2 / 600)  # group sizes round apart
    first = train(small_config(train_size=600, seed=1, subset="first"), data)
    assert first.train_accuracy != grouped[0].train_accuracy or first.final_cost != grouped[0].final_cost
