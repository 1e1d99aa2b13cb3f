"""Studies over learning rates and widths (--lrs, --hiddens) and at a fixed step budget (--steps):
distinct cells paired by seed, study.json and tables that older studies still read."""

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import check_error
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import dropcli.train as train_module
from dropcli.ablate import run_study
from dropcli.cli import app
from dropcli.compare import parse_baseline
from dropcli.config import TrainConfig
from dropcli.device import resolve_device
from dropcli.grid import GridSpec, cell_id_of, cells_of, expand, grid_of, parse_widths_list, study_identity
from dropcli.plan import make_plan
from dropcli.report import build_report, summarise
from dropcli.schemas import read_study_json
from dropcli.shards import PROVENANCE
from dropcli.study import history_of, study_folder
from dropcli.tables import TableError, read_history, read_runs, row_cell_ids

CPU = resolve_device("cpu")
BASE = TrainConfig(hidden=(32, 32), epochs=1, validation_size=500, batch_size=50)
AXES = GridSpec(keep_probs=((0.5,), (1.0,)), train_sizes=(500,), lrs=(0.001, 0.003), hiddens=((32, 32), (48, 48)),
                seeds=(1, 2))
COMMITTED = Path(__file__).parent.parent / "results"
runner = CliRunner()


def test_lrs_and_widths_make_distinct_cells_with_their_own_keys():
    cells = expand(AXES, BASE)
    assert len(cells) == 16 and len({cell_id_of(c) for c in cells}) == 16
    assert {(c.lr, c.hidden) for c in cells} == {(lr, h) for lr in (0.001, 0.003) for h in ((32, 32), (48, 48))}
    assert "|lr=0.003|hidden=48 48|seed=2" in cell_id_of(cells[-1])
    assert parse_widths_list("512x4,1024X2:512") == ((512,) * 4, (1024, 1024, 512))
    for bad in ("512x", "x4", "512x0", "512,,1024", "wide", "1_6", "\u0661\u0666x\u0662", "\uff15", "0x10",
                "16x100000000", "16x33:16x32", "9" * 5000):
        with pytest.raises(ValueError, match="--hiddens"):
            parse_widths_list(bad)
    assert parse_widths_list(" 16 x 2 ,16x32:16x32") == ((16, 16), (16,) * 64)


def test_study_json_lists_varied_axes_in_the_grid_and_single_values_as_settings():
    identity = study_identity(AXES, BASE)
    assert identity["grid"]["lrs"] == [0.001, 0.003] and identity["grid"]["hiddens"] == [[32, 32], [48, 48]]
    assert "lr" not in identity["settings"] and "hidden" not in identity["settings"]
    assert expand(*grid_of(json.loads(json.dumps(identity)))) == expand(AXES, BASE)
    one = GridSpec(keep_probs=((0.5,),), lrs=(0.003,), seeds=(1,))
    plain = GridSpec(keep_probs=((0.5,),), seeds=(1,))
    assert study_identity(one, BASE) == study_identity(plain, BASE.replace(lr=0.003))  # one value is a setting
    old = study_identity(plain, BASE)  # what every study without the new options has always written
    assert set(old["grid"]) == {"keep_probs", "input_keep_probs", "max_norms", "train_sizes", "seeds"}
    assert not {"steps", "eval_every"} & set(old["settings"]) and old["settings"]["lr"] == 0.001
    assert study_identity(plain, BASE.replace(eval_every=3))["settings"]["eval_every"] == 3  # a resume without it differs
    budget = study_identity(plain, BASE.replace(steps=100))
    assert budget["settings"]["steps"] == 100 and budget["settings"]["eval_every"] == 2  # the interval, recorded


@pytest.mark.parametrize("name", ["ablation", "ablation-data-size", "ablation-max-norm"])
def test_committed_studies_keep_unique_keys_and_read_with_derived_columns(name):
    folder = COMMITTED / name
    identity = read_study_json(folder / "study.json")
    assert "lrs" not in identity["grid"] and grid_of(identity)[0].lrs is None
    cells = {cell_id_of(c): c for c in cells_of(identity)}
    runs = read_runs(folder / "runs.csv")
    keys = row_cell_ids(runs)
    assert keys.is_unique and set(keys) == set(cells)  # every committed row is one cell of its grid, once
    per_epoch = runs["train_size"] // runs["batch_size"]
    assert (runs["steps"] == runs["epochs_run"] * per_epoch).all() and (runs["eval_every"] == per_epoch).all()
    assert (runs["best_step"] == runs["best_epoch"] * per_epoch).all()
    history = history_of(folder)
    assert (history["step"] == history["epoch"] * (history["train_size"] // 100)).all()
    assert (history["lr"] == 0.001).all() and (history["hidden"] == "512 512 512 512").all()
    assert set(row_cell_ids(history)) == set(cells)
    with pytest.raises(TableError, match="lacks column 'lr'"):
        read_history(folder / "history.csv")  # without the study's settings nothing is guessed


def test_cells_of_one_seed_pair_across_lrs_and_widths(tiny_data, monkeypatch):
    """Every cell of a seed trains on the same batches whatever its lr, width and keep probability;
    at one width, from the same initial weights."""
    starts, orders = [], []
    real_init, real_step = train_module.init_params, train_module.make_step

    def init(sizes, kind, seed):
        params = real_init(sizes, kind, seed)
        starts.append([W.clone() for W, _ in params])
        return params

    def step(stack, x, y, cuda_graphs=True):
        inner = real_step(stack, x, y, cuda_graphs)
        orders.append([])

        def record(idx):
            orders[-1].append(idx.clone())
            inner(idx)

        return type("Recording", (), {"__call__": lambda self, idx: record(idx),
                                      "__getattr__": lambda self, name: getattr(inner, name)})()

    monkeypatch.setattr(train_module, "init_params", init)
    monkeypatch.setattr(train_module, "make_step", step)
    cells = expand(AXES, BASE.replace(validation_size=200))
    for c in cells:
        train_module.train(c, tiny_data)
    for seed in (1, 2):
        mine = [i for i, c in enumerate(cells) if c.seed == seed]
        assert all(torch.equal(torch.stack(orders[mine[0]]), torch.stack(orders[i])) for i in mine)
        for width in ((32, 32), (48, 48)):
            same = [starts[i] for i in mine if cells[i].hidden == width]
            assert len(same) == 4 and all(torch.equal(a, b) for p in same for a, b in zip(same[0], p))
    assert not torch.equal(torch.stack(orders[0]), torch.stack(orders[1]))  # seeds 1 and 2 differ


def test_a_study_over_lrs_and_widths_writes_and_resumes_distinct_cells(tmp_path):
    run_study(make_plan(AXES, BASE, tmp_path), CPU, parallel_models=4)
    runs = read_runs(tmp_path / "runs.csv")
    assert len(runs) == 16 and row_cell_ids(runs).is_unique
    assert set(zip(runs["lr"], runs["hidden"])) == {(lr, h) for lr in (0.001, 0.003) for h in ("32 32", "48 48")}
    history = read_history(tmp_path / "history.csv")
    assert set(zip(history["lr"], history["hidden"])) == {(lr, h) for lr in (0.001, 0.003) for h in ("32 32", "48 48")}
    assert run_study(make_plan(AXES, BASE, tmp_path), CPU)["ran"] == 0  # resumes: every key found
    summary = build_report(tmp_path)  # each configuration against no dropout at its own lr and widths
    assert len(summary) == 8 and {"lr", "hidden"} <= set(summary.columns)
    compared = summary[summary["paired_seeds"].notna()]
    assert len(compared) == 4 and (compared["paired_seeds"] == 2).all()
    assert set(compared["baseline"]) == {f"keep 1, input keep 1, max-norm none, 500 images, lr {lr}, hidden {h}"
                                         for lr in ("0.001", "0.003") for h in ("32 32", "48 48")}
    by_lr = summarise(runs, baseline=parse_baseline("lr=0.001"))  # each lr 0.003 cell against lr 0.001, paired
    compared = by_lr[by_lr["paired_seeds"].notna()]
    assert set(compared["lr"]) == {0.003} and len(compared) == 4
    row = compared[(compared["keep_probs"] == "0.5") & (compared["hidden"] == "48 48")].iloc[0]
    cells = runs[(runs["keep_probs"] == "0.5") & (runs["hidden"] == "48 48")].set_index(["lr", "seed"])["test_accuracy"]
    diffs = [cells[(0.003, s)] - cells[(0.001, s)] for s in (1, 2)]
    assert row["diff_points"] == pytest.approx(100 * sum(diffs) / 2)
    check_error(runner.invoke(app, ["report", str(tmp_path), "--baseline", "lr=0.01"]), 2,
                "--baseline lr=0.01 is not in this study, whose lr values are 0.001, 0.003")
    page = (tmp_path / "report.html").read_text()
    assert "learning rate: 0.001, 0.003; hidden widths: 32 32, 48 48" in page and "--lrs 0.001,0.003 --hiddens" in page


def test_a_budget_of_whole_epochs_gives_the_same_study(tmp_path):
    grid = GridSpec(keep_probs=((0.5,), (1.0,)), train_sizes=(500, 1000), seeds=(1,))
    epochs = BASE.replace(epochs=2)
    run_study(make_plan(grid, epochs, tmp_path / "epochs"), CPU, parallel_models=1)
    by_steps = GridSpec(keep_probs=((0.5,), (1.0,)), train_sizes=(500,), seeds=(1,))
    run_study(make_plan(by_steps, BASE.replace(steps=20, eval_every=10), tmp_path / "steps"), CPU, parallel_models=1)
    a = read_runs(tmp_path / "epochs" / "runs.csv").drop(columns=list(PROVENANCE), errors="ignore")
    b = read_runs(tmp_path / "steps" / "runs.csv").drop(columns=list(PROVENANCE), errors="ignore")
    assert a[a["train_size"] == 500].reset_index(drop=True).equals(b)  # 500 images: 10 steps an epoch, so 20 = 2 epochs
    assert list(a["steps"]) == [20, 20, 40, 40] and list(b["steps"]) == [20, 20]
    fixed = GridSpec(keep_probs=((0.5,),), train_sizes=(500, 1000), seeds=(1,))
    run_study(make_plan(fixed, BASE.replace(steps=30), tmp_path / "fixed"), CPU, parallel_models=1)
    runs = read_runs(tmp_path / "fixed" / "runs.csv")
    assert list(runs["steps"]) == [30, 30] and list(runs["epochs"]) == [3, 2] and list(runs["eval_every"]) == [1, 1]
    assert len(read_history(tmp_path / "fixed" / "history.csv")) == 60


def test_a_study_written_before_the_new_columns_resumes(tmp_path):
    """Tables without steps, eval_every, best_step (runs) and step, lr, hidden (history) read with
    the values they imply, and gain the columns when cells are added."""
    grid = GridSpec(keep_probs=((0.5,), (1.0,)), train_sizes=(500,), seeds=(1,))
    run_study(make_plan(grid, BASE, tmp_path / "now"), CPU, parallel_models=1)
    old = tmp_path / "old"
    run_study(make_plan(grid, BASE, old), CPU, parallel_models=1)
    runs, history = (pd.read_csv(old / name, dtype=str, keep_default_na=False) for name in ("runs.csv", "history.csv"))
    folder = study_folder(old)  # the tables as an earlier dropcli wrote (and recorded) them
    folder.write_text("runs.csv", runs.drop(columns=["steps", "eval_every", "best_step"]).iloc[:1].to_csv(index=False))
    folder.write_text("history.csv", history.drop(columns=["step", "lr", "hidden"]).to_csv(index=False))
    assert run_study(make_plan(grid, BASE, old), CPU, parallel_models=1)["ran"] == 1
    drop = [c for c in PROVENANCE if c in runs.columns]
    assert read_runs(old / "runs.csv").drop(columns=drop).equals(read_runs(tmp_path / "now" / "runs.csv").drop(columns=drop))
    assert list(pd.read_csv(old / "history.csv")["step"]) == [10, 10]


def test_the_options_of_the_new_axes_and_the_budget(tmp_path):
    tiny = ["ablate", "--keep-probs", "0.5,1", "--seeds", "1", "--train-sizes", "500", "--hidden", "32,32",
            "--validation-size", "500", "--batch-size", "50", "--device", "cpu", "--out", str(tmp_path / "s")]
    check_error(runner.invoke(app, [*tiny, "--steps", "20", "--epochs", "3"]), 2, "give --steps or --epochs, not both")
    check_error(runner.invoke(app, [*tiny, "--lrs", "0.001,0.003", "--lr", "0.01"]), 2, "give --lr or --lrs, not both")
    check_error(runner.invoke(app, [*tiny, "--lrs", "0.001,-1"]), 2, "--lrs takes positive learning rates")
    check_error(runner.invoke(app, [*tiny, "--hiddens", "32x2,big"]), 2, "--hiddens takes widths such as 512x4")
    check_error(runner.invoke(app, [*tiny, "--steps", "0"]), 2, "--steps")
    check_error(runner.invoke(app, ["train", "--steps", "20", "--epochs", "2"]), 2, "give --steps or --epochs")
    result = runner.invoke(app, [*tiny[:7], *tiny[9:], "--lrs", "0.001,0.003", "--hiddens", "32x2,48x2", "--steps", "25",
                                 "--dry-run", "--parallel-models", "1"])
    assert result.exit_code == 0, result.output
    assert "8 cells, 8 to run" in result.stdout and "0.003" in result.stdout and "48 48" in result.stdout
    assert " 25 " in result.stdout and not (tmp_path / "s").exists()


@settings(max_examples=40, deadline=None)
@given(axis=st.sampled_from(["train_sizes", "lrs", "hiddens", "keep_probs", "input_keep_probs", "max_norms"]),
       bad=st.sampled_from([0, -1, 60_001, 2.5]))
def test_a_bad_grid_value_is_named_by_the_grid_option_not_the_single_runs(axis, bad):
    """A value a cell's TrainConfig refuses (--train-size must be in 1..N) is named by the grid's
    option (--train-sizes), whichever axis holds it, however it reaches the grid (the command line
    parses most; a study.json any)."""
    value = {"train_sizes": int(bad), "lrs": -abs(bad) or -1.0, "hiddens": (int(bad) if bad < 1 else 0,),
             "keep_probs": (abs(bad) + 1.5,), "input_keep_probs": abs(bad) + 1.5, "max_norms": -abs(bad) - 1}[axis]
    with pytest.raises(ValueError) as caught:
        expand(GridSpec(**{axis: (value,)}), BASE)
    option = "--" + axis.replace("_", "-")
    assert option in str(caught.value), str(caught.value)
    assert not re.search(r"--(train-size|lr|hidden|keep-prob|input-keep-prob|max-norm)(?![\w-])", str(caught.value))


def test_ablate_names_a_bad_train_size_by_its_option():
    check_error(CliRunner().invoke(app, ["ablate", "--keep-probs", "0.5,1", "--train-sizes", "500,0", "--dry-run"]),
                2, "--train-sizes must be in 1..")
