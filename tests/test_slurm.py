"""dropcli slurm: the scripts it writes, their checked values, and a stand-in sbatch (tests/fake_sbatch.py)
that reads the #SBATCH lines as Slurm 22.05 does and runs the array tasks one after another.
tests/test_slurm_real.py runs the same on a real Slurm."""

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import check_error
from fake_sbatch import arguments, directives
from typer.testing import CliRunner

from dropcli.cli import app
from dropcli.errors import DropcliError
from dropcli.owned import OwnedFolder
from dropcli.slurm import SlurmOptions, arrays, directive, write_scripts

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
    paths = write_scripts(OwnedFolder(tmp_path).subfolder("slurm"), tmp_path, ["--grid", "--seeds", "10"], SlurmOptions(
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
    assert len(calls) == 3 and calls[-1].startswith("--parsable --dependency=afterany:4001:4002 ")
    assert json.loads((out / "slurm" / "submitted.json").read_text()) == {
        "version": 1, "shards": 3, "arrays": {"1-2": "4001", "3-3": "4002"}, "merge": "4003"}
    assert result.stdout.splitlines()[0] == "4001  array-1.sbatch (shards 1-2 of 3)"
    assert len(pd.read_csv(out / "runs.csv")) == 6 and (out / "summary.csv").exists()
    assert "Merged 6 of 6 cells from 3 of 3 shards" in (out / "slurm" / "logs" / "merge.out").read_text()
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


@pytest.mark.parametrize("value", ["gpu", "gpu,cpu", "my_part-1.a"])
def test_partition_names(tmp_path, value):
    result = runner.invoke(app, ["slurm", *GRID, "--out", str(tmp_path / "s"), "--shards", "2", "--partition", value])
    assert result.exit_code == 0, result.output
    assert f"#SBATCH --partition={value}\n" in (tmp_path / "s" / "slurm" / "array-1.sbatch").read_text()


@pytest.mark.parametrize("value", ["30", "30:00", "04:00:00", "2-12", "2-12:30", "2-12:30:00", "UNLIMITED", "infinite",
                                   "35791393", "24855-03:13", "0:2147483580"])
def test_slurm_time_formats(tmp_path, value):
    result = runner.invoke(app, ["slurm", *GRID, "--out", str(tmp_path / "s"), "--shards", "2", "--time", value,
                                 "--account", "proj_42"])
    assert result.exit_code == 0, result.output
    for script in ("array-1.sbatch", "merge.sbatch"):
        text = (tmp_path / "s" / "slurm" / script).read_text()
        assert f"#SBATCH --time={value}\n" in text and "#SBATCH --account=proj_42\n" in text


@pytest.mark.parametrize("text,minutes", [("30", 30), ("30:01", 31), ("04:00:00", 240), ("2-12", 3600),
                                          ("2-12:30", 3630), ("2-12:30:01", 3631), ("0:0", 0), ("UNLIMITED", None)])
def test_time_minutes_reads_every_slurm_format(text, minutes):
    """Slurm's reading (sbatch(1) --time): 'MM:SS' is minutes and seconds, 'D-HH' days and hours;
    seconds round up to a whole minute."""
    from dropcli.slurm import time_minutes

    assert time_minutes(text) == minutes


@pytest.mark.parametrize("option,value,message", [
    ("--partition", "gpu\ntouch X", "--partition 'gpu\\ntouch X' is not a Slurm partition list; use names of letters"),
    ("--partition", "gpu,", "is not a Slurm partition list"),
    ("--partition", "gpu cpu", "is not a Slurm partition list"),
    ("--time", "04:00:00\ntouch X", "is not a Slurm time limit; use minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS or UNLIMITED"),
    ("--time", "4h", "is not a Slurm time limit"),
    ("--time", "1-2-3", "is not a Slurm time limit"),
    ("--time", "99999999999999999999999", "is longer than Slurm can hold (35791393 minutes"),
    ("--time", "35791394", "is longer than Slurm can hold"),  # Slurm 22.05 stored 4259175903 minutes
    ("--time", "24855-03:14", "is longer than Slurm can hold"),
    ("--time", "1491309-0", "is longer than Slurm can hold"),  # stored as 21:52:00
    ("--time", "596524:00:00", "is longer than Slurm can hold"),
    ("--time", "0:2147483581", "is longer than Slurm can hold"),
    ("--time", "9" * 5000, "is longer than Slurm can hold"),
    ("--time", "\u0664", "is not a Slurm time limit"),
    ("--time", "4:\u0660\u0660", "is not a Slurm time limit"),
    ("--cpus-per-task", "100000000000", "--cpus-per-task 100000000000 is more than Slurm takes; use at most 65533"),
    ("--gpus-per-task", "65534", "--gpus-per-task 65534 is more than Slurm takes"),
    ("--max-array-size", "4000002", "use at most 4000001"),
    ("--account", "a b", "--account 'a b' is not a Slurm account name"),
    ("--account", "acc\r", "is not a Slurm account name"),
    ("--device", "cuda:x", "unknown device 'cuda:x'; use auto, cpu, cuda, cuda:N or mps"),
    ("--device", "tpu", "use auto, cpu, cuda, cuda:N or mps"),
    ("--hidden", "32,32\n", "--hidden takes whole numbers (got '32,32\\n')"),  # a number has only spaces and tabs around it
    ("--keep-probs", "0.5,\n1.0", "--keep-probs takes numbers (got '\\n1.0')"),
])
def test_values_slurm_would_refuse_or_that_end_a_line_are_refused(tmp_path, option, value, message):
    result = runner.invoke(app, ["slurm", *GRID, "--out", str(tmp_path / "s"), "--shards", "2", option, value])
    check_error(result, 2, message)
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("name,message", [
    ("s\ntouch X", "holds the character \\n, which cannot go into a job script; use printable characters only"),
    ("s\u2028x", "holds the character \\u2028"),
    ("s\tx", "holds the character \\t"),
    ("s\\x", "holds a backslash, which Slurm reads in log file names as 'expand no %a'"),
])
def test_an_out_path_that_could_end_a_line_is_refused(tmp_path, name, message):
    result = runner.invoke(app, ["slurm", *GRID, "--out", str(tmp_path / name), "--shards", "2"])
    check_error(result, 2, message)
    assert list(tmp_path.iterdir()) == []


def test_what_ablate_would_refuse_is_refused_when_the_scripts_are_written(tmp_path):
    out = ["--out", str(tmp_path / "s"), "--shards", "2"]
    check_error(runner.invoke(app, ["slurm", *GRID, *out, "--data-dir", str(tmp_path / "nowhere")]), 2,
                "nowhere does not exist; give the folder that holds the four IDX files")
    (tmp_path / "a-file").write_text("not a folder")
    for command in (["slurm", *GRID, *out], ["ablate", *GRID, "--dry-run"], ["train"], ["evaluate", str(tmp_path)],
                    ["predict", str(tmp_path)]):
        check_error(runner.invoke(app, [*command, "--data-dir", str(tmp_path / "a-file")]), 2,
                    "a-file is not a folder; give the folder that holds the four IDX files")
    (tmp_path / "empty").mkdir()
    check_error(runner.invoke(app, ["slurm", *GRID, *out, "--data-dir", str(tmp_path / "empty")]), 1,
                "does not hold the four MNIST IDX files")
    check_error(runner.invoke(app, ["slurm", *GRID, *out, "--precision", "tf32"]), 2,
                "--precision tf32 runs on CUDA tensor cores, not on cpu")
    assert not (tmp_path / "s").exists()
    ok = runner.invoke(app, ["slurm", *GRID[:-4], "--device", "cuda:3", "--precision", "tf32", *out])
    assert ok.exit_code == 0, ok.output  # the login node has no GPU: the spelling is what is checked


def test_a_study_path_with_spaces_quotes_and_hashes_is_one_argument(tmp_path):
    out = tmp_path / "my study #1 (50%) 'q' \"é\""
    result = runner.invoke(app, ["slurm", *GRID, "--out", str(out), "--shards", "2", "--partition", "debug"])
    assert result.exit_code == 0, result.output
    found = directives((out / "slurm" / "array-1.sbatch").read_text())
    assert f"--output={str(out).replace('%', '%%')}/slurm/logs/array-1-%a.out" in found
    assert "--job-name=dropcli-my_study__1__50____q_____" in found and "--partition=debug" in found
    assert directives((out / "slurm" / "merge.sbatch").read_text())[1] == (
        f"--output={str(out).replace('%', '%%')}/slurm/logs/merge.out")
    import shlex  # the line printed to copy runs the submit script, not 'bash .../my' with '#1 ...' a comment
    line = next(line for line in result.stdout.splitlines() if line.startswith("bash "))
    assert shlex.split(line, comments=True)[:2] == ["bash", str(out / "slurm" / "submit.sh")]


def test_the_model_of_sbatchs_directive_parser():
    """As the real sbatch 22.05 read them (tests/test_slurm_real.py submits such lines)."""
    assert arguments(r' --output=/a\ b/x') == ["--output=/a", "b/x"]  # a backslash does not keep a space
    assert arguments(' --output="/a b/#x" --hold') == ["--output=/a b/#x", "--hold"]
    assert arguments(r' --output="/a \"b\" \\ \#"') == ['--output=/a "b" \\ #']
    assert arguments(" --output=/a#b") == ["--output=/a"]
    assert directive("--output", "/a b/'c' \"d\" #1 \\") == r'#SBATCH --output="/a b/\'c\' \"d\" \#1 \\"'


def test_a_rejected_submission_names_the_accepted_jobs_and_a_rerun_submits_only_the_rest(tmp_path, fake_sbatch,
                                                                                        monkeypatch):
    monkeypatch.setenv("FAKE_SBATCH_RUN", "0")
    monkeypatch.setenv("FAKE_SBATCH_REJECT", "array-2.sbatch")
    out = tmp_path / "study"
    args = ["slurm", *GRID, "--out", str(out), "--shards", "3", "--max-array-size", "3", "--submit"]
    failed = runner.invoke(app, args)  # after the "Wrote ..." note, one error line
    assert failed.exit_code == 1, failed.output
    assert failed.stderr.splitlines()[-1].startswith(
        f"Error: sbatch refused {out / 'slurm' / 'array-2.sbatch'} (sbatch: error: Batch job submission failed: Job "
        "violates accounting/QOS policy); submitted before it: shards 1-2 = job 4001, recorded in "
        f"{out / 'slurm' / 'submitted.json'}; fix the cause and rerun the same command: it submits only what")
    assert len(failed.stderr.splitlines()) == 2
    monkeypatch.delenv("FAKE_SBATCH_REJECT")
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    calls = [c.split()[-1].rsplit("/", 1)[-1] for c in fake_sbatch.read_text().splitlines()]
    assert calls == ["array-1.sbatch", "array-2.sbatch", "array-2.sbatch", "merge.sbatch"]  # array 1 once
    assert "--dependency=afterany:4001:4003 " in fake_sbatch.read_text().splitlines()[-1]
    assert again.stdout.splitlines() == ["4001  array-1.sbatch (shards 1-2 of 3), submitted before",
                                         "4003  array-2.sbatch (shards 3-3 of 3)",
                                         "4004  merge.sbatch (after every array task has ended)"]
    third = runner.invoke(app, args)
    assert third.exit_code == 0 and "Nothing to submit (shards 1-2 = job 4001, shards 3-3 = job 4003, merge = job 4004); every job is recorded in" in third.stderr
    assert len(fake_sbatch.read_text().splitlines()) == 4
    check_error(runner.invoke(app, [*args[:-5], "--shards", "2", "--submit"]), 2,
                "records jobs of this study split into 3 shards (shards 1-2 = job 4001, shards 3-3 = job 4003, "
                "merge = job 4004); rerun with --shards 3")
    assert "--array=1-2\n" in (out / "slurm" / "array-1.sbatch").read_text()  # the scripts of the record stay


def test_a_record_dropcli_did_not_write_is_refused(tmp_path, fake_sbatch):
    out = tmp_path / "study"
    assert runner.invoke(app, ["slurm", *GRID, "--out", str(out), "--shards", "3"]).exit_code == 0
    (out / "slurm" / "submitted.json").write_text('{"version": 1, "shards": 3, "arrays": {"1-2": "x; rm"}}')
    check_error(runner.invoke(app, ["slurm", *GRID, "--out", str(out), "--shards", "3", "--submit"]), 2,
                "submitted.json exists and was not written by dropcli; move it away")  # not in the manifest
    from dropcli.slurm_submit import read_record

    with pytest.raises(DropcliError, match="is not a record of submitted jobs that dropcli wrote; check that none of"):
        read_record(out, 3)  # and its reader refuses it by its shape
    for odd in ('"shards": 3, "arrays": {}, "merge": "\u0664\u0660\u0660\u0661"',  # would go into --dependency
                '"shards": true, "arrays": {}, "merge": null', '"shards": 3, "arrays": {"1-2": "\u00b2"}, "merge": null',
                '"shards": 3, "arrays": {"2-1": "7"}, "merge": null', '"shards": 3, "arrays": {"1-4": "7"}, "merge": null',
                '"shards": 3, "arrays": {"1-2": "12345678901"}, "merge": null'):
        (out / "slurm" / "submitted.json").write_text('{"version": 1, ' + odd + "}")
        with pytest.raises(DropcliError, match="is not a record of submitted jobs that dropcli wrote"):
            read_record(out, 3 if "true" not in odd else 1)
    (out / "slurm" / "submitted.json").write_text('{"version": true, "shards": 3, "arrays": {}, "merge": null}')
    with pytest.raises(DropcliError, match="is not a record of submitted jobs that dropcli wrote"):
        read_record(out, 3)
    (out / "slurm" / "submitted.json").write_text('{"version": 1, "shards": 3, "arrays": {}, "merge": NaN}')
    with pytest.raises(DropcliError, match="holds NaN, which JSON does not allow; delete it if no job of it runs"):
        read_record(out, 3)
    assert not fake_sbatch.exists()


def test_a_path_byte_the_locale_cannot_decode_is_written_as_that_byte(tmp_path):
    """Under a C locale 'é' in a path arrives as two surrogates (Python's surrogateescape); the
    scripts hold the path's own bytes, so they name the folder the user typed."""
    raw = os.fsencode(tmp_path) + b"/study \xff\xc3\xa9"
    out = os.fsdecode(raw)
    result = runner.invoke(app, ["slurm", *GRID, "--out", out, "--shards", "2"])
    assert result.exit_code == 0, result.output
    script = (Path(out) / "slurm" / "merge.sbatch").read_bytes()
    assert raw + b"/slurm/logs/merge.out" in script
    assert len(script.splitlines()) == len(script.decode("utf-8", "replace").splitlines())  # no line added
    assert subprocess.run(["bash", "-n", Path(out) / "slurm" / "merge.sbatch"]).returncode == 0
