"""ablate, report and merge as a user runs them: interrupt and resume, dry runs, a newcomer's first
study, one-line errors for bad grids."""

import pandas as pd
import pytest
from conftest import check_error
from typer.testing import CliRunner

from dropcli import commits
from dropcli import study as st
from dropcli.cli import app

runner = CliRunner()


ACCEPT = ["ablate", "--keep-probs", "0.5,1.0", "--seeds", "2", "--epochs", "1", "--train-sizes", "2000",
          "--hidden", "64,64", "--device", "cpu"]


def test_cli_acceptance_command_and_interrupt_message(tmp_path, monkeypatch):
    out = tmp_path / "study"
    calls = {"n": 0}
    real = commits.run_row

    def interrupt_after_first(r, stamp):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(r, stamp)

    monkeypatch.setattr(commits, "run_row", interrupt_after_first)
    result = runner.invoke(app, [*ACCEPT, "--parallel-models", "1", "--out", str(out)])
    assert result.exit_code == 130
    assert "Interrupted (SIGINT): 1 of 4 cells are saved" in result.stderr and "3 remain. Resume with: dropcli ablate" in result.stderr
    monkeypatch.setattr(commits, "run_row", real)
    result = runner.invoke(app, [*ACCEPT, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "Resumed: 1 cells were already in" in result.stderr
    from dropcli.conclusions import sentences
    from dropcli.report import read_summary

    said = sentences(read_summary(out / "summary.csv"))
    assert said[0].startswith("Metric: ") and all(s in result.stdout for s in said)  # ablate ends as report does
    assert {p.name for p in out.iterdir()} >= {"runs.csv", "summary.csv", "history.csv", "ablation.png"}
    assert len(pd.read_csv(out / "runs.csv")) == 4
    dry = runner.invoke(app, [*ACCEPT, "--out", str(out), "--dry-run"])
    assert dry.exit_code == 0 and "Nothing to run: every cell is already in" in dry.stdout


def test_cli_dry_run_trains_nothing(tmp_path):
    result = runner.invoke(app, [*ACCEPT, "--out", str(tmp_path / "d"), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "Would run 4 cells" in result.stdout and "Nothing was trained" in result.stdout
    assert not (tmp_path / "d" / "runs.csv").exists()


@pytest.mark.parametrize("args, fragment", [
    (["--keep-probs", ""], "--keep-probs needs a comma-separated list"),
    (["--keep-probs", "0.5,"], "needs a comma-separated list"),
    (["--keep-probs", "0.5,1.5"], "keep probability 1.5 is outside (0, 1]"),
    (["--keep-probs", "0.5,0.5"], "the grid lists one cell twice"),
    (["--keep-probs", "0.9999999,1.0", "--dry-run"], None),
    (["--keep-probs", "half"], "--keep-probs takes numbers"),
    (["--keep-probs", "0.5", "--train-sizes", "60000"], "--train-sizes must be in 1..55000"),
    (["--keep-probs", "0.5", "--train-sizes", "50"], "lower --batch-size or raise --train-sizes"),
    (["--keep-probs", "0.5", "--train-sizes", "big"], "--train-sizes takes whole numbers"),
    (["--keep-probs", "0.5", "--input-keep-probs", "0"], "outside (0, 1]"),
    (["--keep-probs", "0.5", "--seed-list", "1,1"], "seed=1); give each value once"),
    (["--keep-probs", "0.5", "--max-norms", "none,nan"], "--max-norms takes finite numbers"),
    (["--keep-probs", "0.5", "--lr", "inf"], "--lr must be a positive number"),
    (["--keep-probs", "0.5", "--seeds", "0"], "--seeds must be at least 1 (got 0)"),
    (["--keep-probs", "0.5,1", "--input-keep-probs", "0,1"], "--input-keep-probs: keep probability 0 is outside"),
    (["--keep-probs", "0.5,1", "--max-norms", "0"], "--max-norms takes positive numbers such as 3, or none (got 0)"),
    (["--keep-probs", "0.5,1", "--lrs", "abc"], "--lrs takes numbers (got 'abc')"),
    (["--keep-probs", "0.5,1", "--lrs", "0.001,1e-400"], "--lrs takes numbers a float can hold (a float holds sizes "
                                                         "from about 5e-324 to 1.8e308; 1e-400 would read as 0)"),
    (["--keep-probs", "0.5,1e-999"], "--keep-probs takes numbers a float can hold"),
    (["--keep-probs", "0.5,1", "--max-norms", "3,1e999"], "--max-norms takes numbers a float can hold"),
    (["--grid", "--keep-probs", "0.5"], "--grid sets the keep probabilities"),
    ([], "give --grid for the standard study"),
])
def test_cli_bad_grids_exit_2_before_any_work(tmp_path, args, fragment):
    result = runner.invoke(app, ["ablate", *args, "--out", str(tmp_path / "x")])
    if fragment is None:  # values that print alike are still two cells
        assert result.exit_code == 0 and "6 cells, 6 to run" in result.stdout, result.output
        return
    check_error(result, 2, fragment)
    assert not (tmp_path / "x").exists()


def test_a_newcomers_first_study_goes_to_its_own_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    committed = tmp_path / "results" / "ablation"
    committed.mkdir(parents=True)
    (committed / "runs.csv").write_text("a committed study")
    dry = runner.invoke(app, ["ablate", "--grid", "--dry-run", "--device", "cpu"])
    assert dry.exit_code == 0 and "24 cells, 24 to run, in results/studies/24cells-" in dry.stdout
    result = runner.invoke(app, ["ablate", "--keep-probs", "0.5,1.0", "--seeds", "2", "--epochs", "1",
                                 "--train-sizes", "500", "--hidden", "16", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    [folder] = (tmp_path / "results" / "studies").iterdir()
    assert len(pd.read_csv(folder / "runs.csv")) == 4
    assert (committed / "runs.csv").read_text() == "a committed study"
    again = runner.invoke(app, ["ablate", "--keep-probs", "0.5,1.0", "--seeds", "2", "--epochs", "1",
                                "--train-sizes", "500", "--hidden", "16", "--device", "cpu"])
    assert again.exit_code == 0 and "Resumed: 4 cells were already in" in again.stderr


def test_ablate_adds_seeds_to_a_finished_study_keeping_its_rows(tmp_path):
    """A 2-seed study rerun with --seeds 3 trains only seed 779's cells, keeps the 4 finished rows
    byte for byte, and its study.json lists the 3 seeds; its --dry-run says so and writes nothing;
    a shard of the grown grid, or fewer seeds, is refused (exit 2)."""
    out = tmp_path / "study"
    grid = ["ablate", "--keep-probs", "0.5,1", "--epochs", "1", "--train-sizes", "300", "--hidden", "8",
            "--validation-size", "100", "--device", "cpu", "--out", str(out)]
    assert runner.invoke(app, [*grid, "--seeds", "2"]).exit_code == 0
    before = (out / "runs.csv").read_text().splitlines()
    identity = (out / "study.json").read_bytes()
    preview = runner.invoke(app, [*grid, "--seeds", "3", "--dry-run"])
    assert preview.exit_code == 0 and "Would run 2 cells" in preview.output, preview.output
    assert (out / "study.json").read_bytes() == identity
    check_error(runner.invoke(app, [*grid, "--seeds", "3", "--shard", "1/2"]), 2, "only a whole-study 'dropcli ablate'")
    result = runner.invoke(app, [*grid, "--seeds", "3"])
    assert result.exit_code == 0 and "ran 2" in result.output, result.output
    after = (out / "runs.csv").read_text().splitlines()
    assert after[: len(before)] == before and len(after) == len(before) + 2
    assert sorted(pd.read_csv(out / "runs.csv")["seed"].unique()) == [777, 778, 779]
    assert st.read_identity(out)["grid"]["seeds"] == [777, 778, 779]
    check_error(runner.invoke(app, [*grid, "--seeds", "2"]), 2, "finished cell keep=")  # seed 779's rows
    assert runner.invoke(app, [*grid, "--seeds", "3", "--lrs", "0.001,0.01", "--dry-run"]).exit_code == 0  # lr: an axis


def test_a_sharded_study_keeps_its_grid_and_says_so(tmp_path):
    out = tmp_path / "study"
    grid = ["ablate", "--keep-probs", "0.5,1", "--epochs", "1", "--train-sizes", "300", "--hidden", "8",
            "--validation-size", "100", "--device", "cpu", "--out", str(out)]
    assert runner.invoke(app, [*grid, "--seeds", "2", "--shard", "1/2"]).exit_code == 0
    for more in (["--dry-run"], []):
        check_error(runner.invoke(app, [*grid, "--seeds", "3", *more]), 2, "a sharded study keeps its grid")
    check_error(runner.invoke(app, [*grid, "--seeds", "2", "--epochs", "2", "--dry-run"]), 2,
                "is a shard of another study (epochs 1 there, 2 now)")


def test_report_on_a_study_with_unfinished_cells_says_how_many_have_finished(tmp_path):
    from synthetic_study import write_study

    folder = write_study(tmp_path / "s", seeds=(777, 778, 779))
    runs = pd.read_csv(folder / "runs.csv")
    runs[runs["seed"] != 779].to_csv(folder / "runs.csv", index=False)  # seed 779's three cells never finished
    result = runner.invoke(app, ["report", str(folder)])
    assert result.exit_code == 0, result.output
    assert "Note: 6 of 9 cells of this study have finished; the comparisons use the seeds each pair shares" in result.stderr
    write_study(tmp_path / "whole")
    assert "cells of this study have finished" not in runner.invoke(app, ["report", str(tmp_path / "whole")]).stderr


def test_ablate_loads_its_report_code_before_it_trains(tmp_path):
    """A study of hours imports its report code at its end: it is loaded before the first cell, so that
    code upgraded or edited meanwhile cannot mix with the running one (an ImportError after the last
    cell). A fresh interpreter, where nothing of the report has been imported yet, checks it."""
    import subprocess
    import sys

    probe = (
        "import sys, dropcli.ablate as a\n"
        "def run_study(*args, **kw):\n"
        "    wanted = ['dropcli.report', 'dropcli.report_html', 'dropcli.plot_study', 'dropcli.plot_curves', "
        "'dropcli.conclusions', 'dropcli.shards']\n"
        "    print('MISSING', [m for m in wanted if m not in sys.modules])\n"
        "    raise SystemExit(0)\n"
        "a.run_study = run_study\n"
        "from dropcli.cli import app\n"
        f"app(['ablate', '--keep-probs', '0.5,1', '--seeds', '1', '--epochs', '1', '--train-sizes', '500', "
        f"'--out', {str(tmp_path / 'study')!r}])\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert "MISSING []" in done.stdout, (done.stdout, done.stderr)
