"""No value a user passes to `dropcli slurm` can add a line to a generated script: arbitrary text
(control characters, quotes, unicode, spaces) into every option that reaches a script is either
refused with exit 2 and nothing written, or written so that every line of every script is
printable and bash, POSIX shlex and sbatch (tests/fake_sbatch.py's model of its directive parser)
read each value back whole, inside its own line and argument. Options parsed into numbers reach the
scripts as the parsed value (e.g. --lr '1\u2028' as 1.0), paths and Slurm's names as typed."""

import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from fake_sbatch import arguments
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from dropcli.cli import app
from dropcli.data import FILES
from dropcli.slurm import unprintable

runner = CliRunner()
GRID = ["--keep-probs", "0.5,1.0", "--seeds", "2", "--epochs", "1", "--train-sizes", "500", "--validation-size", "100",
        "--device", "cpu"]
OPTIONS = ["--out", "--partition", "--time", "--account", "--data-dir", "--device", "--keep-probs", "--hidden",
           "--train-sizes", "--seed-list", "--input-keep-probs", "--max-norms", "--lr", "--seeds", "--epochs",
           "--batch-size", "--mc-samples", "--precision", "--subset", "--init", "--cpus-per-task", "--gpus-per-task",
           "--max-parallel", "--max-array-size"]  # every option whose value reaches a script (--dataset would download)
NASTY = ["my study", "a\nb", "x\rtouch X", "'", '"', "#", "%a", "%%", "\\", "$(touch X)", "`id`", "é", "\u2028",
         "a\tb", "\x00", "\x1b[31m", "gpu\ntouch X", "04:00:00\n#SBATCH --wrap=x", "--help", "-", "😀", " ", ""]
values = st.one_of(st.sampled_from(NASTY), st.text(max_size=12),
                   st.lists(st.sampled_from(NASTY + ["a", "0.5", "1", ","]), max_size=4).map("".join))
DUMP = "import json, sys; print(json.dumps(sys.argv[1:]))"  # stands in for python -m dropcli: prints its arguments


def files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


def data_folder(root: Path, name: str) -> str:
    """A --data-dir named `name` under root, holding four small valid IDX files (the plan hashes
    them) where the name can be a folder; else the path as given."""
    path = root / "data" / name.replace("/", "_")
    if "\x00" not in name:
        try:
            path.mkdir(parents=True, exist_ok=True)
            for f, shape in zip(FILES, [(700, 28, 28), (700,), (10, 28, 28), (10,)]):
                header = bytes([0, 0, 8, len(shape)]) + b"".join(d.to_bytes(4, "big") for d in shape)
                (path / f).write_bytes(header + bytes(int(np.prod(shape))))
        except OSError:
            pass
    return str(path)


def check_script(path: Path, expect: dict[str, str]) -> list[str]:
    """bash reads the script; every line is printable and of the script's own kinds; every #SBATCH
    line is one argument, with the `expect`ed values whole; run (the dropcli command replaced by an
    argument dump), bash passes the arguments POSIX shlex reads in its exec line. Returns them."""
    text = path.read_text()
    assert subprocess.run(["bash", "-n", str(path)], capture_output=True).returncode == 0, text
    found, command = {}, None
    for line in text.split("\n")[1:]:
        assert unprintable(line) is None, line
        if line.startswith("#SBATCH "):
            (arg,) = arguments(line[len("#SBATCH"):])
            key, value = arg.split("=", 1)
            found[key] = value
        elif line.startswith("exec "):
            command = shlex.split(line)[4:]  # exec, python, -c, DUMP
        else:
            assert line in ("", "set -euo pipefail", "set -uo pipefail") or line.startswith("# shard K"), line
    for key, value in expect.items():
        assert found.get(key) == value, (key, found)
    env = {**os.environ, "SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "2"}
    ran = subprocess.run(["bash", str(path)], capture_output=True, text=True, env=env)
    assert ran.returncode == 0, ran.stderr
    argv = json.loads(ran.stdout)
    if "SLURM_ARRAY_TASK_ID" in command[-1]:  # --shard "$((SLURM_ARRAY_TASK_ID + 0))/2", which bash computes
        command = command[:-1] + ["1/2"]
    assert argv == command
    return argv


VALID = {"--partition": "gpu", "--time": "04:00:00", "--account": "proj", "--device": "cpu", "--keep-probs": "0.5,1.0",
         "--hidden": "32,32", "--train-sizes": "500", "--seed-list": "1,2", "--input-keep-probs": "1.0",
         "--max-norms": "none", "--lr": "0.001", "--out": "study", "--data-dir": "data", "--seeds": "3", "--epochs": "2",
         "--batch-size": "50", "--mc-samples": "2", "--precision": "bf16", "--subset": "first", "--init": "xavier",
         "--cpus-per-task": "1", "--gpus-per-task": "1", "--max-parallel": "2", "--max-array-size": "3"}


def option_values(option: str):
    """Arbitrary text, a valid value with nasty text around it (which parsers may accept), and the
    valid value (so every option is also seen written)."""
    nasty = st.one_of(st.sampled_from(NASTY), st.text(max_size=4))
    around = st.tuples(nasty, nasty).map(lambda t: t[0] + VALID[option] + t[1])
    return st.one_of(values, around, around, st.just(VALID[option]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_no_path_can_add_a_line_to_a_script(monkeypatch, data):
    option = data.draw(st.sampled_from(["--out", "--data-dir"]))
    written(monkeypatch, option, data.draw(option_values(option)))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_no_value_can_add_a_line_to_a_script(monkeypatch, data):
    option = data.draw(st.sampled_from([o for o in OPTIONS if o not in ("--out", "--data-dir")]))
    written(monkeypatch, option, data.draw(option_values(option)))


def written(monkeypatch, option: str, value: str) -> None:
    """dropcli slurm with `option value`: refused with exit 2 and nothing written, or every script
    checked by check_script."""
    monkeypatch.setattr("dropcli.slurm.dropcli_command", lambda: [sys.executable, "-c", DUMP])
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        out = root / "o" / (value.replace("/", "_") if option == "--out" else "study")
        if option == "--data-dir":
            value = data_folder(root, value)
        args = ["slurm", *GRID, "--shards", "2", "--out", str(out)] + ([option, value] if option != "--out" else [])
        before = files(root)
        result = runner.invoke(app, args)
        assert "Traceback" not in result.output, result.output
        event(f"{option} {'refused' if result.exit_code else 'written'}")
        if result.exit_code:
            assert result.exit_code == 2, result.output
            err = result.stderr.strip().splitlines()
            assert len(err) == 1 and err[0].startswith("Error: "), result.output
            assert files(root) == before, "a refused command wrote files"
            return
        raw = str(out) if option == "--out" else value
        if option in ("--out", "--data-dir", "--partition", "--time", "--account"):  # these reach a script as typed
            assert unprintable(raw) is None, "a value that can end a line passed"
        folder = out.resolve()
        logs = str(folder / "slurm" / "logs").replace("%", "%%")
        expect = {o: value for o in ("--partition", "--time", "--account") if o == option}
        argv = check_script(folder / "slurm" / "array-1.sbatch", {**expect, "--output": f"{logs}/array-1-%a.out"})
        assert argv[0] == "ablate" and argv[-4:] == ["--out", str(folder), "--shard", "1/2"]
        if option == "--data-dir":
            assert argv[argv.index(option) + 1] == str(Path(value))
        merge = check_script(folder / "slurm" / "merge.sbatch", {**expect, "--output": f"{logs}/merge.out"})
        assert merge == ["merge", str(folder)]
        assert subprocess.run(["bash", "-n", str(folder / "slurm" / "submit.sh")]).returncode == 0
