import math
import shutil

import pandas as pd
import pytest
import scipy.stats
import torch
from conftest import check_error
from typer.testing import CliRunner

from dropcli.ablate import StudyProgress, run_study
from dropcli.cli import app
from dropcli.config import TrainConfig
from dropcli.device import resolve_device
from dropcli.errors import DropcliError, StudyMismatch
from dropcli.files import study_lock
from dropcli.grid import GridSpec, expand
from dropcli.plan import make_plan
from dropcli.report import build_report
from dropcli.study import study_folder

CPU = resolve_device("cpu")
BASE = TrainConfig(hidden=(32, 32), epochs=1, validation_size=500, batch_size=50)
RUN_COLUMNS = ["keep_probs", "keep_prob_mean", "input_keep_prob", "train_size", "seed", "epochs", "final_cost",
               "train_accuracy", "validation_accuracy", "test_accuracy", "generalization_gap", "group_train_seconds",
               "group_size", "device", "status", "finished_at"]
runner = CliRunner()


def small_grid(**kw):
    spec = dict(keep_probs=((0.5,), (1.0,)), train_sizes=(500,), seeds=(1, 2))
    spec.update(kw)
    return GridSpec(**spec)


def study(out, grid=None, base=BASE, **kw):
    grid = grid or small_grid()
    return run_study(make_plan(grid, base, out, fresh=kw.pop("fresh", False)), CPU, **kw)


def test_standard_grid_expansion():
    cells = expand(GridSpec(), TrainConfig())
    assert len(cells) == 24
    assert [c.keep_prob[0] for c in cells[::3]] == [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    assert [c.seed for c in cells[:3]] == [777, 778, 779]
    assert all(c.epochs == 15 and c.batch_size == 100 and c.init == "tutorial" and c.n_train == 55_000 for c in cells)
    cells = expand(GridSpec(keep_probs=((0.5,), (0.8, 0.7, 0.7, 0.5)), input_keep_probs=(0.8, 1.0),
                            train_sizes=(1000, 10000), seeds=(1, 2, 3)), TrainConfig())
    assert len(cells) == 2 * 2 * 2 * 3
    assert cells[3].keep_label == "0.8 0.7 0.7 0.5" and cells[0].keep_prob == (0.5,) * 4


@pytest.mark.parametrize("grid, fragment", [
    (dict(keep_probs=()), "--keep-probs is empty"),
    (dict(keep_probs=((0.5,), (1.5,))), "outside (0, 1]"),
    (dict(keep_probs=((0.5,), (0.5,))), "the grid lists one cell twice (keep=0.5,"),
    (dict(keep_probs=((0.5,), (0.5, 0.5))), "the grid lists one cell twice (keep=0.5,"),
    (dict(train_sizes=(60_000,)), "--train-sizes must be in 1..59500"),
    (dict(seeds=(1, 1)), "seed=1); give each value once"),
    (dict(max_norms=(0.0,)), "--max-norms takes positive numbers"),
    (dict(keep_probs=((0.5, 0.5, 0.5),)), "has 3 values for 2 hidden layers"),
    (dict(seeds=(-1,)), "--seed-list must be a whole number from 0"),
])
def test_bad_grids(grid, fragment):
    with pytest.raises(ValueError, match=None) as e:
        expand(small_grid(**grid), BASE)
    assert fragment in str(e.value)


def test_study_writes_every_file_with_numeric_columns(tmp_path):
    counts = study(tmp_path, parallel_models=4)
    assert counts == {"total": 4, "skipped": 0, "ran": 4, "parallel_models": 4, "workers": 1,
                      "threads": torch.get_num_threads(), "out": tmp_path}  # a grid too small for workers
    build_report(tmp_path)
    runs = pd.read_csv(tmp_path / "runs.csv")  # plain read: every numeric column must come back numeric
    assert set(RUN_COLUMNS) <= set(runs.columns) and len(runs) == 4
    for col in RUN_COLUMNS:
        if col not in ("keep_probs", "device", "status", "finished_at"):
            assert runs[col].dtype.kind in "if", col
    assert (runs["group_size"] == 4).all() and (runs["status"] == "ok").all()
    assert (runs["workers"] == 1).all() and (runs["threads"] == torch.get_num_threads()).all()
    assert pd.to_datetime(runs["finished_at"]).notna().all()
    assert runs["generalization_gap"].round(9).equals((runs["train_accuracy"] - runs["test_accuracy"]).round(9))
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert list(summary["keep_prob_mean"]) == [0.5, 1.0] and list(summary["runs"]) == [2, 2]
    row = summary.iloc[0]
    accs = runs[runs["keep_prob_mean"] == 0.5]["test_accuracy"]
    assert row["test_accuracy_mean"] == pytest.approx(accs.mean())
    assert row["test_accuracy_std"] == pytest.approx(accs.std(ddof=1))
    assert row["test_accuracy_ci95"] == pytest.approx(scipy.stats.t.ppf(0.975, 1) * accs.std(ddof=1) / math.sqrt(2))
    history = pd.read_csv(tmp_path / "history.csv")
    assert len(history) == 4 and {"epoch", "cost", "validation_accuracy"} <= set(history.columns)
    png = (tmp_path / "ablation.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    text = (tmp_path / "runs.csv").read_text(encoding="utf-8")
    assert "e-0" not in text and "E-0" not in text and text.splitlines()[0].startswith("keep_probs,keep_prob_mean,")


class Interrupt(Exception):
    pass


def test_interrupted_study_resumes_with_the_same_rows(tmp_path):
    def stop_after_first(row):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        study(tmp_path / "a", parallel_models=1, progress=StudyProgress(on_cell=stop_after_first))
    assert len(pd.read_csv(tmp_path / "a" / "runs.csv")) == 1
    assert len(pd.read_csv(tmp_path / "a" / "history.csv")) == 1
    counts = study(tmp_path / "a", parallel_models=1)
    assert {k: counts[k] for k in ("total", "skipped", "ran", "parallel_models")} == {
        "total": 4, "skipped": 1, "ran": 3, "parallel_models": 1}
    study(tmp_path / "b", parallel_models=1)
    a, b = (pd.read_csv(tmp_path / d / "runs.csv") for d in "ab")
    keys = ["keep_prob_mean", "seed"]
    a, b = a.sort_values(keys).reset_index(drop=True), b.sort_values(keys).reset_index(drop=True)
    for col in ("final_cost", "test_accuracy", "validation_accuracy", "train_accuracy"):
        assert a[col].tolist() == b[col].tolist(), col
    assert study(tmp_path / "a", parallel_models=1)["ran"] == 0  # a finished study reruns nothing


def test_a_commit_cut_off_before_runs_csv_leaves_no_duplicate_history(tmp_path):
    """history.csv is written before runs.csv; a cell listed in history only is retrained once."""
    study(tmp_path, parallel_models=2)
    history = pd.read_csv(tmp_path / "history.csv")
    lines = (tmp_path / "runs.csv").read_text().splitlines(keepends=True)
    study_folder(tmp_path).write_text("runs.csv", "".join(lines[:-1]))  # as if cut off between the two writes
    assert study(tmp_path, parallel_models=2)["ran"] == 1
    after = pd.read_csv(tmp_path / "history.csv")
    assert len(after) == len(history) and not after.duplicated(["keep_prob_mean", "seed", "epoch"]).any()


def test_parallel_models_one_and_batched_give_the_same_rows(tmp_path):
    study(tmp_path / "one", parallel_models=1)
    study(tmp_path / "all", parallel_models=4)
    one, batched = (pd.read_csv(tmp_path / d / "runs.csv").sort_values(["keep_prob_mean", "seed"]).reset_index(drop=True)
                    for d in ("one", "all"))
    assert one[["keep_prob_mean", "seed"]].equals(batched[["keep_prob_mean", "seed"]])
    assert ((one["final_cost"] - batched["final_cost"]).abs() <= 0.02 * one["final_cost"].abs()).all()
    assert ((one["test_accuracy"] - batched["test_accuracy"]).abs() <= 0.015).all()
    assert set(one["group_size"]) == {1} and set(batched["group_size"]) == {4}


def test_another_study_in_the_folder_is_refused(tmp_path):
    study(tmp_path)
    with pytest.raises(StudyMismatch, match=r"holds another study \(epochs 1 there, 2 now\); use another --out "
                                            r"\(a study there takes more seeds or axis values, at the same settings\)$"):
        study(tmp_path, base=BASE.replace(epochs=2))
    with pytest.raises(StudyMismatch, match="seeds"):
        study(tmp_path, grid=small_grid(seeds=(1, 2, 3)))  # the library grows a study only when asked (plan.grow)
    counts = study(tmp_path, base=BASE.replace(epochs=2), fresh=True)
    assert counts["ran"] == 4 and len(pd.read_csv(tmp_path / "runs.csv")) == 4
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "runs.csv").write_text("a,b\n1,2\n")
    with pytest.raises(StudyMismatch, match="is not a dropcli study"):
        study(foreign)


def test_concurrent_study_is_refused(tmp_path):
    with study_lock(tmp_path):
        with pytest.raises(DropcliError, match="another dropcli command is writing to"):
            study(tmp_path)
    assert study(tmp_path)["ran"] == 4  # the lock is released afterwards


def test_mc_dropout_column(tmp_path):
    study(tmp_path, base=BASE.replace(mc_samples=3), grid=small_grid(seeds=(1,)))
    runs = pd.read_csv(tmp_path / "runs.csv")
    assert runs["test_accuracy_mc"].dtype.kind == "f" and runs["test_accuracy_mc"].between(0.05, 1).all()
    assert (runs["mc_samples"] == 3).all()
    assert "test_accuracy_mc_mean" in build_report(tmp_path).columns


def test_diverged_cells_are_recorded_and_the_study_goes_on(tmp_path):
    study(tmp_path, base=BASE.replace(lr=1e30), parallel_models=1)
    runs = pd.read_csv(tmp_path / "runs.csv")
    assert list(runs["status"]) == ["diverged"] * 4
    assert runs["test_accuracy"].isna().all()
    summary = build_report(tmp_path)
    assert list(summary["diverged"]) == [2, 2] and list(summary["runs"]) == [0, 0]


def test_formula_injection_is_neutralised(tmp_path):
    from dropcli.tables import write_csv

    df = pd.DataFrame({"name": ["=HYPERLINK(\"x\")", "+1", "-2", "@SUM(A1)", "plain"], "value": [-1.5, 2, 3, 4, 5]})
    write_csv(df, tmp_path / "t.csv")
    back = pd.read_csv(tmp_path / "t.csv")
    assert back["name"].tolist() == ["'=HYPERLINK(\"x\")", "'+1", "'-2", "'@SUM(A1)", "plain"]
    assert back["value"].tolist() == [-1.5, 2, 3, 4, 5]  # numbers, negative ones too, stay numbers


def test_report_rebuilds_from_runs_csv_alone(tmp_path):
    study(tmp_path)
    build_report(tmp_path)
    before = (tmp_path / "summary.csv").read_text()
    (tmp_path / "summary.csv").unlink()
    (tmp_path / "ablation.png").unlink()
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "Ablation summary" in result.stdout and "★" in result.stdout
    assert (tmp_path / "summary.csv").read_text() == before
    assert (tmp_path / "ablation.png").exists()
    (tmp_path / "summary.csv").unlink()
    check_error(runner.invoke(app, ["report", str(tmp_path / "nothing")]), 2, "nothing is not there; give a study's folder")
    check_error(runner.invoke(app, ["report", str(tmp_path / "summary.csv.txt")]), 2, "is not there")
    (tmp_path / "notes.txt").write_text("a user's file")
    check_error(runner.invoke(app, ["report", str(tmp_path / "notes.txt")]), 2, "notes.txt is a file; give a study's folder")
    (tmp_path / "other").mkdir()
    check_error(runner.invoke(app, ["report", str(tmp_path / "other")]), 2, "other is not a dropcli study (no study.json")
    claimed = tmp_path / "claimed"  # a study whose first cell has not finished
    claimed.mkdir()
    shutil.copy(tmp_path / "study.json", claimed / "study.json")
    check_error(runner.invoke(app, ["report", str(claimed)]), 1, "runs.csv does not exist yet: no cell has finished")
