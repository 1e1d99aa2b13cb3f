"""dropcli slurm: the scripts it writes, run by a stand-in sbatch that runs the array tasks one after another."""

import os
import shutil
import stat
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from dropcli.cli import app
from dropcli.slurm import SlurmOptions, arrays, write_scripts

GRID = ["--keep-probs", "0.5,1.0", "--seeds", "3", "--epochs", "1", "--train-sizes", "1000", "--hidden", "32,32",
        "--device", "cpu", "--parallel-models", "2"]
runner = CliRunner()


@pytest.fixture
def fake_sbatch(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "sbatch"
    shutil.copy(Path(__file__).parent / "fake_sbatch.py", script)
    script.write_text(f"#!{sys.executable}\n" + script.read_text().split("\n", 1)[1])
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SBATCH_LOG", str(tmp_path / "sbatch.log"))
    return tmp_path / "sbatch.log"


def test_arrays_stay_below_max_array_size():
    assert arrays(5, 1001) == [(1, 5)]
    assert arrays(2500, 1001) == [(1, 1000), (1001, 2000), (2001, 2500)]
    assert arrays(3, 3) == [(1, 2), (3, 3)]


def test_the_scripts_for_a_grid(tmp_path):
    paths = write_scripts(tmp_path, ["--grid", "--seeds", "10"], SlurmOptions(
        shards=5, partition="gpu", gpus_per_task=1, cpus_per_task=4, time="02:00:00", max_parallel=3, max_array_size=4))
    assert [p.name for p in paths] == ["array-1.sbatch", "array-2.sbatch", "merge.sbatch", "submit.sh"]
    one, two = paths[0].read_text(), paths[1].read_text()
    assert "#SBATCH --array=1-3%3" in one and "#SBATCH --array=1-2%3" in two
    for text in (one, two):
        assert "#SBATCH --gpus-per-task=1" in text and "#SBATCH --partition=gpu" in text
        assert "#SBATCH --cpus-per-task=4" in text and "#SBATCH --time=02:00:00" in text
        assert f"{Path(sys.executable).absolute()} -m dropcli ablate --grid --seeds 10 --out {tmp_path}" in text
    assert '--shard "$((SLURM_ARRAY_TASK_ID + 0))/5"' in one and '--shard "$((SLURM_ARRAY_TASK_ID + 3))/5"' in two
    merge, submit = paths[2].read_text(), paths[3].read_text()
    assert f"-m dropcli merge {tmp_path}" in merge and "gpus-per-task" not in merge
    assert submit.count("sbatch --parsable") == 3 and "--dependency=afterany:$dep" in submit


def test_submitted_through_a_stand_in_sbatch_the_study_is_merged(tmp_path, fake_sbatch):
    out = tmp_path / "study"
    result = runner.invoke(app, ["slurm", *GRID, "--out", str(out), "--shards", "3", "--max-array-size", "3",
                                 "--submit"])
    assert result.exit_code == 0, result.output
    calls = fake_sbatch.read_text().splitlines()
    assert len(calls) == 3 and calls[-1].startswith("--parsable --dependency=afterany:")
    assert len(pd.read_csv(out / "runs.csv")) == 6 and (out / "summary.csv").exists()
    assert "Merged 6 of 6 cells from 3 shards" in (out / "slurm" / "logs" / "merge.out").read_text()
    whole = runner.invoke(app, ["ablate", *GRID, "--out", str(tmp_path / "whole")])
    assert whole.exit_code == 0
    a, b = (pd.read_csv(p / "runs.csv").sort_values(["keep_prob_mean", "seed"]).reset_index(drop=True)
            for p in (out, tmp_path / "whole"))
    assert a["test_accuracy"].equals(b["test_accuracy"]) and a["final_cost"].equals(b["final_cost"])


def test_a_failed_shard_is_named_by_the_merge_job(tmp_path, fake_sbatch, monkeypatch):
    out = tmp_path / "study"
    monkeypatch.setenv("FAKE_SBATCH_FAIL", "array-1.sbatch:2")
    result = runner.invoke(app, ["slurm", *GRID, "--out", str(out), "--shards", "3", "--max-array-size", "3",
                                 "--submit"])
    assert result.exit_code == 0, result.output
    log = (out / "slurm" / "logs" / "merge.out").read_text()
    assert "Merged 4 of 6 cells" in log and "rerun shard(s) 2 of 3" in log


def test_submit_without_sbatch_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    result = runner.invoke(app, ["slurm", *GRID, "--out", str(tmp_path / "s"), "--shards", "2", "--submit"])
    assert result.exit_code == 1 and "sbatch is not on PATH" in result.stderr
    assert (tmp_path / "s" / "slurm" / "submit.sh").exists()


def test_more_shards_than_cells_is_a_usage_error(tmp_path):
    result = runner.invoke(app, ["slurm", *GRID, "--out", str(tmp_path / "s"), "--shards", "7"])
    assert result.exit_code == 2 and "more than the 6 cells" in result.stderr
