"""Every command as a batch job sees it: stdout and stderr redirected to one file, on consoles that
are not UTF-8 (PYTHONIOENCODING=ascii; an old cluster's C locale), with paths holding '[', ']' and
letters outside ASCII. Progress lines reach the file while the work runs, a stopped job's file
shows how far it got, no traceback, and the exit codes the README documents (0; 1 failure; 2 usage)."""

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import console_script

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--hidden", "32,32", "--batch-size", "50", "--validation-size", "500", "--device", "cpu"]
GRID = ["--keep-probs", "0.5,1.0", "--seeds", "2", "--epochs", "1", "--train-sizes", "500", *TINY]
ENVIRONMENTS = {
    "ascii": {"PYTHONIOENCODING": "ascii"},
    "C locale": {"LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"},
}


class Job:
    """`dropcli ARGS > log 2>&1` in `env`, the file readable while it runs."""

    def __init__(self, script, args, env, log: Path):
        self.log = log
        self.file = open(log, "wb")
        clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONIOENCODING", "LC_ALL", "LANG", "PYTHONUTF8")}
        self.proc = subprocess.Popen([*script, *map(str, args)], stdout=self.file, stderr=subprocess.STDOUT,
                                     env={**clean, "PYTHONPATH": str(ROOT), "COLUMNS": "110", **env}, cwd=log.parent)

    def text(self) -> str:
        return self.log.read_bytes().decode("utf-8", "backslashreplace")

    def wait_for(self, fragment: str, timeout=300) -> bool:
        """Whether `fragment` reached the file while the job was still running."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            running = self.proc.poll() is None
            if fragment in self.text():
                return running
            if not running:
                return False
            time.sleep(0.05)
        return False

    def finish(self, code: int, timeout=300) -> str:
        self.proc.wait(timeout=timeout)
        self.file.close()
        text = self.text()
        assert self.proc.returncode == code, text
        assert "Traceback" not in text and "UnicodeEncodeError" not in text and "Exception ignored" not in text, text
        return text


@pytest.mark.parametrize("name", ENVIRONMENTS)
def test_every_command_in_a_batch_log(tmp_path, name):
    env, script = ENVIRONMENTS[name], console_script(tmp_path)
    run = lambda args, log: Job(script, args, env, tmp_path / log)  # noqa: E731
    r, s = tmp_path / "run [bold]é[/]", tmp_path / "study [x]ü"

    job = run(["train", "--epochs", "3", "--train-size", "5000", *TINY, "--out", r], "train.log")
    assert job.wait_for("epoch 1/3 done"), job.text()  # each epoch's line while it trains
    text = job.finish(0)
    assert "Loading the data (mnist) ..." in text and "epoch 3/3 done" in text and "Saved run to" in text
    assert "[bold]" in text and "[/]" in text  # the path as typed, never read as markup

    text = run(["evaluate", r, "--mc-samples", "2", "--csv", tmp_path / "per class [1].csv"], "evaluate.log").finish(0)
    assert "MC dropout accuracy (2 passes)" in text and "Wrote per-class accuracy" in text and "[1].csv" in text
    text = run(["evaluate", r, "--mc-curve", "1,2", "--repeats", "1"], "curve.log").finish(0)
    assert "Dropout passes" in text and "Monte-Carlo dropout" in text
    text = run(["predict", r, "--index", "0", "--mc-samples", "3"], "predict.log").finish(0)
    assert "+/- 0." in text  # ± where the console has no ±

    job = run(["ablate", *GRID, "--parallel-models", "1", "--out", s], "stopped.log")
    assert job.wait_for("cell 1/4 done ("), job.text()  # a finished cell's line while the others train
    job.proc.send_signal(signal.SIGTERM)
    text = job.finish(128 + signal.SIGTERM)  # a stopped job's log: how far it got, and how to go on
    assert "Training 4 cells one at a time" in text and "test accuracy 0." in text
    assert "Interrupted (SIGTERM): " in text.strip().splitlines()[-1] and "Resume with: dropcli ablate" in text
    text = run(["ablate", *GRID, "--parallel-models", "1", "--out", s], "ablate.log").finish(0)
    assert "Resumed: " in text and "Ablation summary" in text and "Wrote study.json, runs.csv, history.csv, summary.csv" in text
    assert "study [x]" in text and re.search(r"\d\.\d{2} \* ", text)  # the best row's star, as ASCII
    assert name != "C locale" or f"in {s}\n" in text  # an undecodable byte of the path written as that byte
    rows = [line for line in text.splitlines() if line.startswith(("|", "│", "┃", "+", "┏", "┗"))]
    assert len(rows) >= 5 and len({len(line) for line in rows}) == 1, rows  # the header as wide as its rows
    text = run(["ablate", *GRID, "--out", tmp_path / "preview", "--dry-run"], "dry.log").finish(0)
    assert "Timing a few steps of each group shape ..." in text and "Nothing was trained" in text

    summary = (s / "summary.csv").read_bytes()
    text = run(["report", s, "--baseline", "keep=0.7"], "baseline.log").finish(2)
    assert "--baseline keep=0.7 is not in this study, whose keep values are 0.5, 1" in text
    assert (s / "summary.csv").read_bytes() == summary
    assert "Wrote summary.csv" in run(["report", s], "report.log").finish(0)

    run(["ablate", *GRID, "--out", tmp_path / "sharded", "--shard", "1/2"], "shard.log").finish(0)
    text = run(["merge", tmp_path / "sharded"], "merge.log").finish(1)
    assert "cells are missing" in text and "rerun shard(s) 2 of 2" in text
    text = run(["slurm", *GRID, "--out", tmp_path / "slurm [é]", "--shards", "2"], "slurm.log").finish(0)
    assert "Wrote " in text and "submit.sh" in text
    text = run(["train", "--keep-prob", "2", "--out", tmp_path / "never"], "usage.log").finish(2)
    assert text.startswith("Error: ") and len(text.strip().splitlines()) == 1


@pytest.mark.parametrize("delay", [0.25, 0.4, 0.6, 0.9, 1.3, 2.0, 3.0])
def test_ctrl_c_at_any_moment_ends_with_one_line(tmp_path, delay):
    """SIGINT while the console script imports, loads the data or trains: exit 130 and one line."""
    proc = subprocess.Popen([*console_script(tmp_path), "train", "--epochs", "30", "--train-size", "500", *TINY,
                             "--out", tmp_path / "r"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=tmp_path)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    err = err.decode()
    lines = [x for x in err.splitlines() if not x.startswith(("Loading the data", "Training ", "epoch "))]
    if proc.returncode == 0:  # the machine was fast enough to finish first
        pytest.skip("finished before the interrupt")
    assert proc.returncode == 130, err
    assert len(lines) == 1 and lines[0].startswith("Interrupted"), err
    assert "Traceback" not in err and "Exception ignored" not in err
    assert not (tmp_path / "r").exists()
