"""dropcli slurm on a real one-node Slurm (tests/slurm_cluster.py: Debian's slurmctld, slurmd and
munge on localhost): the arrays and the dependent merge run for real from a study folder whose name
has a space, '#', '%' and parentheses; an array task cancelled with scancel is named by the merge
job's log; rerunning that shard and `dropcli merge` complete the study with the rows of a local run;
sbatch's own rejection and the injection attempts are refused. Where CI=true (as root) the
packages are installed if missing and these tests fail, never skip, when Slurm cannot start;
elsewhere they skip unless Slurm is installed and this is root."""

import os
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from conftest import assert_same_measured_rows, check_error, engine_required
from typer.testing import CliRunner

from dropcli.cli import app

REPO = Path(__file__).resolve().parents[1]
GRID = ["--keep-probs", "0.5,1.0", "--seeds", "3", "--epochs", "2", "--train-sizes", "1000", "--batch-size", "50",
        "--validation-size", "500", "--hidden", "32,32", "--device", "cpu", "--parallel-models", "1"]
runner = CliRunner()


@pytest.fixture(scope="module")
def slurm():
    from slurm_cluster import Unavailable, install, local_slurm, missing

    if os.geteuid() != 0:
        engine_required("the one-node Slurm runs its daemons as root")
    if missing():
        if os.environ.get("CI") != "true":
            pytest.skip(f"Slurm is not installed ({', '.join(missing())} missing): apt-get install slurmctld slurmd "
                        "slurm-client munge, or run with CI=true as root to have the tests install them")
        try:
            install()
        except Unavailable as e:
            engine_required(str(e))
    try:
        with local_slurm(Path(tempfile.mkdtemp(prefix="dropcli-slurm-"))) as env:
            yield env
    except Unavailable as e:
        engine_required(str(e))


@pytest.fixture
def on_slurm(slurm, monkeypatch):
    """This process (sbatch, squeue, and so the jobs, which inherit it) pointed at the test cluster,
    running this checkout's dropcli."""
    monkeypatch.setenv("SLURM_CONF", slurm["SLURM_CONF"])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    monkeypatch.chdir(REPO)
    return slurm


def queued(env: dict, jobs: list[str]) -> list[str]:
    proc = subprocess.run(["squeue", "-h", "-o", "%i %T", "-j", ",".join(jobs)], env=env, capture_output=True,
                          text=True)
    return proc.stdout.split("\n") if proc.stdout.strip() else []


def wait_until_done(env: dict, jobs: list[str], seconds: float = 300) -> None:
    end = time.monotonic() + seconds
    while queued(env, jobs):
        assert time.monotonic() < end, f"jobs still queued after {seconds:g} s: {queued(env, jobs)}"
        time.sleep(0.5)


def test_a_study_runs_on_a_real_slurm_and_a_cancelled_shard_is_rerun(on_slurm, tmp_path):
    out = tmp_path / "my study #1 (50%)"
    submit = ["slurm", *GRID, "--out", str(out), "--shards", "3", "--max-array-size", "3", "--max-parallel", "1",
              "--cpus-per-task", "1", "--time", "10", "--submit"]
    result = runner.invoke(app, submit)
    assert result.exit_code == 0, result.output
    (first, _), (second, _), (merge, _) = (line.split(None, 1) for line in result.stdout.splitlines())
    # shard 2 is array 1's task 2, held back by --max-parallel 1 while task 1 runs: cancel it
    cancel = subprocess.run(["scancel", f"{first}_2"], env=on_slurm, capture_output=True, text=True)
    assert cancel.returncode == 0, cancel.stderr
    wait_until_done(on_slurm, [first, second, merge])
    logs = out / "slurm" / "logs"
    assert sorted(p.name for p in logs.iterdir()) == ["array-1-1.out", "array-2-1.out", "merge.out"]
    assert "Shard 1/3: 2 cells are in" in (logs / "array-1-1.out").read_text()
    assert "Shard 3/3: 2 cells are in" in (logs / "array-2-1.out").read_text()
    merged = (logs / "merge.out").read_text()
    assert "Merged 4 of 6 cells from 2 of 3 shards" in merged and "rerun shard(s) 2 of 3" in merged, merged

    assert runner.invoke(app, ["ablate", *GRID, "--out", str(out), "--shard", "2/3"]).exit_code == 0
    done = runner.invoke(app, ["merge", str(out)])
    assert done.exit_code == 0 and "Merged 6 of 6 cells from 3 of 3 shards" in done.stderr, done.output
    local = tmp_path / "local"
    assert runner.invoke(app, ["ablate", *GRID, "--out", str(local)]).exit_code == 0
    assert_same_measured_rows(out, local)

    again = runner.invoke(app, submit)  # every job is recorded: nothing is submitted twice
    assert again.exit_code == 0 and "Nothing to submit (" in again.stderr and "every job is recorded in" in again.stderr, again.output


def test_sbatchs_own_rejection_is_one_line(on_slurm, tmp_path):
    out = tmp_path / "study"
    result = runner.invoke(app, ["slurm", *GRID, "--out", str(out), "--shards", "2", "--partition", "nosuch",
                                 "--submit"])
    assert result.exit_code == 1, result.output
    assert result.stderr.splitlines()[-1].startswith(f"Error: sbatch refused {out / 'slurm' / 'array-1.sbatch'} "
                                                     "(sbatch: error: "), result.stderr
    assert "nothing was submitted" in result.stderr and not (out / "slurm" / "submitted.json").exists()


@pytest.mark.parametrize("option,value", [("--partition", "debug\ntouch {x}"), ("--time", "10\n#SBATCH --wrap=touch {x}"),
                                          ("--account", "a\ntouch {x}"), ("--out", "{dir}/s\ntouch {x}")])
def test_injection_attempts_are_refused_before_sbatch(on_slurm, tmp_path, option, value):
    x = tmp_path / "INJECTED"
    value = value.format(x=x, dir=tmp_path)
    args = ["slurm", *GRID, "--shards", "2", "--submit"]
    args += [option, value] if option == "--out" else ["--out", str(tmp_path / "s"), option, value]
    check_error(runner.invoke(app, args), 2, "")
    before = subprocess.run(["squeue", "-h"], env=on_slurm, capture_output=True, text=True).stdout
    assert before == "" and not x.exists() and sorted(os.listdir(tmp_path)) == []


def test_the_longest_time_dropcli_writes_is_the_one_sbatch_stores(slurm, tmp_path):
    """The premise of slurm.MAX_TIME_MINUTES, on the real sbatch: the longest limit dropcli accepts is
    stored as given (one minute more, which dropcli refuses, Slurm 22.05 stored as 2957761-01:04:00)."""
    from dropcli.slurm import MAX_TIME_MINUTES

    script = tmp_path / "job.sh"
    script.write_text("#!/bin/bash\ntrue\n")
    stored = {}
    for minutes in (MAX_TIME_MINUTES,):
        sub = subprocess.run(["sbatch", "--hold", "--parsable", "--time", str(minutes), str(script)], env=slurm,
                             capture_output=True, text=True, check=True)
        job = sub.stdout.strip().split(";")[0]
        shown = subprocess.run(["scontrol", "show", "job", job], env=slurm, capture_output=True, text=True).stdout
        stored[minutes] = next(w for w in shown.split() if w.startswith("TimeLimit=")).removeprefix("TimeLimit=")
        subprocess.run(["scancel", job], env=slurm)
    days, clock = divmod(MAX_TIME_MINUTES, 1440)
    assert stored[MAX_TIME_MINUTES] == f"{days}-{clock // 60:02d}:{clock % 60:02d}:00"
