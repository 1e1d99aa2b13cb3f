"""A fixed step budget (--steps): exactly N Adam steps at every data size, the same numbers as
--epochs where the budget is whole epochs, validation every --eval-every steps, pairing kept."""

import math

import pytest
import torch
from conftest import small_config

import dropcli.train as train_module
from dropcli.config import TrainConfig
from dropcli.data import subset_indices
from dropcli.train import lockstep_key, train, train_group


@pytest.fixture
def recorded(monkeypatch):
    """The batch indices of every training step, per make_step call: [[(K, B) tensor per step]]."""
    seen: list[list[torch.Tensor]] = []
    real = train_module.make_step

    class Recording:
        def __init__(self, stack, x, y, cuda_graphs=True):
            self.inner, self.K = real(stack, x, y, cuda_graphs), stack.K
            seen.append([])

        def __call__(self, idx):
            seen[-1].append(idx.clone().view(self.K, -1))
            self.inner(idx)

        def __getattr__(self, name):
            return getattr(self.inner, name)

    monkeypatch.setattr(train_module, "make_step", Recording)
    return seen


@pytest.mark.parametrize("train_size", [150, 400, 1000])
def test_exactly_n_steps_at_every_data_size(tiny_data, recorded, train_size):
    c = small_config(train_size=train_size, steps=47)  # 3, 8 and 20 steps an epoch: never whole epochs
    assert c.epochs == math.ceil(47 / c.steps_per_epoch) and c.total_steps == 47
    r = train(c, tiny_data)
    assert len(recorded[0]) == 47 and r.steps_run == 47 and r.epochs_run == c.epochs
    assert [h["step"] for h in r.history] == [c.eval_interval * i for i in range(1, 47 // c.eval_interval + 1)] + (
        [47] if 47 % c.eval_interval else [])  # every eval_interval steps, and after the last
    assert c.eval_interval == round(47 / 50) == 1 and len(r.history) == 47
    assert [h["epoch"] for h in r.history] == [math.ceil(s / c.steps_per_epoch) for s in range(1, 48)]


def test_the_last_partial_epoch_takes_the_first_steps_of_its_batch_order(tiny_data, recorded):
    whole = small_config(epochs=3)  # 20 steps an epoch
    train(whole, tiny_data)
    train(small_config(steps=45), tiny_data)
    assert len(recorded[1]) == 45
    assert all(torch.equal(a, b) for a, b in zip(recorded[0][:45], recorded[1]))


def test_a_budget_of_whole_epochs_gives_the_epochs_numbers_to_the_last_digit(tiny_data):
    by_epochs = small_config(epochs=3, keep_prob=(0.6,), max_norm=3.0)
    n = 3 * by_epochs.steps_per_epoch
    by_steps = small_config(steps=n, eval_every=by_epochs.steps_per_epoch, keep_prob=(0.6,), max_norm=3.0)
    a, b = train(by_epochs, tiny_data), train(by_steps, tiny_data)
    strip = lambda h: [{k: v for k, v in row.items() if k != "seconds"} for row in h]  # noqa: E731
    assert strip(a.history) == strip(b.history) and [h["step"] for h in a.history] == [20, 40, 60]
    assert all(torch.equal(x, y) for p, q in zip(a.params, b.params) for x, y in zip(p, q))
    for field in ("final_cost", "train_accuracy", "validation_accuracy", "test_accuracy", "test_loss", "best_epoch",
                  "best_step", "test_accuracy_at_best", "steps_run", "epochs_run"):
        assert getattr(a, field) == getattr(b, field), field
    c = train(small_config(steps=n, keep_prob=(0.6,), max_norm=3.0), tiny_data)  # validated every round(60/50) = 1 step
    assert len(c.history) == n and c.test_accuracy == a.test_accuracy and c.final_cost != a.final_cost
    assert all(torch.equal(x, y) for p, q in zip(a.params, c.params) for x, y in zip(p, q))  # validating changes nothing


def test_best_step_is_the_validation_of_highest_accuracy(tiny_data):
    r = train(small_config(steps=50, eval_every=7, seed=5), tiny_data)
    steps = [h["step"] for h in r.history]
    vals = [h["validation_accuracy"] for h in r.history]
    assert steps == [7, 14, 21, 28, 35, 42, 49, 50]
    assert r.best_step == steps[vals.index(max(vals))] and r.best_epoch == math.ceil(r.best_step / 20)


def test_cells_of_one_seed_pair_across_data_sizes(tiny_data, monkeypatch):
    """The same seed starts from the same weights at every data size, and a smaller random subset
    is the first part of the larger one's draw (so nested)."""
    starts = []
    real = train_module.init_params

    def spy(sizes, init, seed):
        params = real(sizes, init, seed)
        starts.append([W.clone() for W, _ in params])
        return params

    monkeypatch.setattr(train_module, "init_params", spy)
    small, large = (small_config(train_size=n, steps=40, seed=3) for n in (200, 1000))
    train(small, tiny_data)
    train(large, tiny_data)
    assert all(torch.equal(a, b) for a, b in zip(*starts))
    a, b = subset_indices(small, 55_000), subset_indices(large, 55_000)  # from MNIST's training part
    assert set(a.tolist()) <= set(b.tolist()) and len(a) == 200
    assert not set(subset_indices(small.replace(seed=4), 55_000).tolist()) <= set(b.tolist())


def test_a_lockstep_group_shares_its_step_count_and_validations():
    a = small_config(steps=60)
    assert lockstep_key(a) == lockstep_key(a.replace(seed=2, keep_prob=(0.5,)))
    assert lockstep_key(a) != lockstep_key(a.replace(steps=61))
    assert lockstep_key(a) != lockstep_key(a.replace(eval_every=3))
    assert lockstep_key(small_config(epochs=3)) != lockstep_key(a)  # the same steps, validated at other points
    with pytest.raises(ValueError, match="one shape and step count"):
        train_group([a, a.replace(steps=61)], None)


def test_the_budget_sets_the_epochs_and_the_validation_interval():
    c = TrainConfig(steps=8250, train_size=1000)
    assert (c.epochs, c.total_steps, c.eval_interval, c.validations) == (825, 8250, 165, 50)
    assert TrainConfig(steps=8250).epochs == 15 and TrainConfig(steps=8251).epochs == 16
    assert TrainConfig().eval_interval == 550 and TrainConfig(steps=10).eval_interval == 1
    assert TrainConfig.from_dict(c.to_dict()) == c
    for bad, fragment in ((dict(steps=0), "--steps must be at least 1"), (dict(eval_every=0), "--eval-every must be")):
        with pytest.raises(ValueError, match=fragment):
            TrainConfig(**bad)


def test_train_with_a_step_budget_prints_and_records_each_validation(tmp_path):
    import json

    import pandas as pd
    from typer.testing import CliRunner

    from dropcli.cli import app

    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "--train-size", "1000", "--steps", "25", "--eval-every", "4", "--hidden",
                                      "64,64", "--validation-size", "1000", "--device", "cpu", "--out", str(out)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line.split(" cost")[0] for line in lines[:3]] == ["Step: 000004 (epoch 1)", "Step: 000008 (epoch 1)",
                                                              "Step: 000012 (epoch 2)"]
    assert lines[4].startswith("Epoch: 0002 cost") and lines[6].startswith("Step: 000025 (epoch 3) cost")  # 20 ends epoch 2
    assert list(pd.read_csv(out / "history.csv")["step"]) == [4, 8, 12, 16, 20, 24, 25]
    run = json.loads((out / "run.json").read_text())
    assert run["schedule"] == {"steps": 25, "epochs": 3, "eval_every": 4} and run["metrics"]["steps_run"] == 25
    assert run["config"]["steps"] == 25 and run["config"]["epochs"] == 3
