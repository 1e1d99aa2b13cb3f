"""Lockstep groups: split by shape, balanced, sized by measurement; memory checked; time estimated."""

import pytest
import torch

from dropcli.config import TrainConfig
from dropcli.errors import UsageError
from dropcli.groups import choose_parallel_models, memory_cap, plan_groups
from dropcli.plan import check_memory
from dropcli.speeds import SpeedCache

CPU = torch.device("cpu")
BASE = TrainConfig(hidden=(32, 32), epochs=1, validation_size=500, batch_size=50)


def test_plan_groups_splits_by_shape_and_balances_sizes():
    small = [BASE.replace(train_size=500, seed=s) for s in range(7)]
    big = [BASE.replace(train_size=1000, seed=s) for s in range(3)]
    other_lr = [BASE.replace(train_size=500, lr=0.01, seed=s) for s in range(2)]
    groups = plan_groups(small + big + other_lr, 4)
    assert sorted(len(g) for g in groups) == [2, 3, 3, 4]  # 7 -> 4 + 3, not 4 + 3 by chance: balanced
    for g in groups:
        assert len({(c.n_train, c.lr) for c in g}) == 1
    assert sum(len(g) for g in groups) == 12
    assert [len(g) for g in plan_groups(small, 1)] == [1] * 7


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """The group-size cache in a file of this test's own."""
    import dropcli.speeds as speeds

    path = tmp_path / "group-sizes.json"
    monkeypatch.setattr(speeds, "cache_path", lambda: path)
    return path


def big(n=8):
    """Cells enough to repay a measurement (a full-data grid of 15 epochs)."""
    return [TrainConfig(seed=s) for s in range(n)]


@pytest.mark.parametrize("rates, expected, for_three_cells", [
    ({1: 100.0, 2: 180.0, 4: 250.0, 8: 255.0}, 4, 2),  # 8 is not 5% better than 4
    ({1: 100.0, 2: 98.0, 4: 92.0, 8: 80.0}, 1, 1),  # stacking costs (as on an Intel Xeon with AMX)
    ({1: 100.0, 2: 104.0, 4: 120.0, 8: 119.0}, 4, 1),  # 2 is not 5% better than 1
])
def test_the_group_size_is_the_measured_fastest_and_measured_once(monkeypatch, cache, rates, expected, for_three_cells):
    import dropcli.groups as groups

    calls, progress = [], []
    monkeypatch.setattr(groups, "measure_group_sizes", lambda device, cells, **kw: calls.append(kw) or rates)
    assert choose_parallel_models(CPU, big(), on_progress=progress.append) == expected
    assert choose_parallel_models(CPU, big(), on_progress=progress.append) == expected  # the second time from the cache
    assert [c["sizes"] for c in calls] == [[1, 2, 4, 8]] and calls[0]["on_progress"] == progress.append
    assert choose_parallel_models(CPU, big(3)) == for_three_cells  # the cached sizes that the grid can fill
    assert choose_parallel_models(CPU, [BASE]) == 1  # one cell: nothing to measure
    assert choose_parallel_models(CPU, big(), threads=1) == expected and len(calls) == 1 + (torch.get_num_threads() != 1)


def test_a_grid_too_small_to_repay_the_measurement_trains_one_by_one(monkeypatch, cache):
    import dropcli.groups as groups

    monkeypatch.setattr(groups, "measure_group_sizes", lambda *a, **k: pytest.fail("measured a small grid"))
    small = [TrainConfig(epochs=2, train_size=10_000, keep_prob=(k,), seed=s) for k in (0.4, 0.6, 0.8, 1.0) for s in (1, 2)]
    assert not groups.worth_measuring(small, [1, 2, 4, 8])  # the 8-cell grid: 1,600 steps
    assert choose_parallel_models(CPU, small) == 1 and not cache.exists()
    assert groups.worth_measuring(big(24), [1, 2, 4, 8])  # the standard grid: 198,000 steps
    cache.write_text("{not json")  # a broken cache is only a cache: ignored, then replaced
    monkeypatch.setattr(groups, "measure_group_sizes", lambda device, cells, **kw: {1: 1.0, 2: 3.0})
    assert choose_parallel_models(CPU, big()) == 2
    assert list(SpeedCache.model_validate_json(cache.read_text()).entries.values())[0].rates == {1: 1.0, 2: 3.0}


def test_a_grid_over_widths_is_timed_at_one_shape(monkeypatch, cache):
    import dropcli.groups as groups

    timed = []
    monkeypatch.setattr(groups, "measure_group_sizes", lambda device, cells, **kw: timed.extend(cells) or {1: 1.0, 2: 3.0})
    cells = [TrainConfig(hidden=h, seed=s) for h in ((512,) * 4, (1024,) * 4) for s in range(4)]
    assert choose_parallel_models(CPU, cells[4:] + cells[:4]) == 2
    assert {c.hidden for c in timed} == {(1024,) * 4} and len(timed) == 4
    from dropcli.groups import step_seconds
    assert step_seconds(timed[:2], CPU, steps=1, warmup=0) > 0  # one shape: a group that can train


def test_measuring_times_real_steps():
    from dropcli.groups import measure_group_sizes

    rates = measure_group_sizes(CPU, [BASE.replace(train_size=500, seed=s) for s in range(4)], rounds=1)
    assert sorted(rates) == [1, 2, 4] and all(r > 0 for r in rates.values())


def test_a_network_too_big_for_memory_is_refused_with_the_estimate():
    with pytest.raises(UsageError, match=r"network needs about [\d,.]+ GiB to train and cpu has [\d,.]+ GiB free"):
        check_memory(TrainConfig(hidden=(100_000_000,)), CPU)
    check_memory(TrainConfig(), CPU)
    assert 1 <= memory_cap(CPU, [BASE] * 20) <= 8


def test_estimate_times_the_training_stepper_once_per_group_shape(monkeypatch):
    from dropcli import groups, stepper

    made, real = [], stepper.make_step

    def counted(stack, x, y):
        made.append(stack.K)
        return real(stack, x, y)

    monkeypatch.setattr(stepper, "make_step", counted)
    cells = [BASE.replace(train_size=500, keep_prob=(k,)) for k in (0.5, 1.0)]
    bf16 = [c.replace(precision="bf16") for c in cells]
    assert groups.estimate_seconds([cells, cells, bf16], CPU) > 0
    assert made == [2, 2]  # one timed stepper per (group size, shape, precision)
    monkeypatch.setattr(groups, "step_seconds", lambda g, device, **kw: 1.0)
    c = cells[0]  # 10 steps an epoch, validation and the final passes at a third of a step per batch
    expected = c.epochs * (10 + 500 / 50 / 3) + (500 + 500 + 10_000) / 50 / 3
    assert groups.estimate_seconds([cells, bf16], CPU) == pytest.approx(2 * expected)




def test_memory_cap_sizes_groups_by_the_widest_network_of_a_grid_over_widths(monkeypatch):
    from dropcli import device
    from dropcli.plan import cell_bytes

    narrow, wide = BASE, BASE.replace(hidden=(1024, 1024))
    monkeypatch.setattr(device, "free_bytes", lambda d: 4 * 3 * cell_bytes(wide))  # a quarter holds 3 wide cells
    assert memory_cap(CPU, [narrow] * 4 + [wide] * 4) == memory_cap(CPU, [wide] * 4 + [narrow] * 4) == 3
    assert memory_cap(CPU, [narrow] * 8) == 8  # the CPU's cap of 8
