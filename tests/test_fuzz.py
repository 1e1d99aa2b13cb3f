"""Arbitrary option values into every command: success, or exit 1 or 2 with one line on stderr;
never a traceback, never a half-written file."""

from enum import EnumMeta
from pathlib import Path

import pytest
from conftest import check_error
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from dropcli.cli import app

runner = CliRunner()
ROOT_FILES = {p.name for p in Path.cwd().iterdir() if not p.name.startswith(".")}  # caches come and go
TRAIN = ["train", "--epochs", "1", "--train-size", "200", "--hidden", "8", "--validation-size", "100",
         "--device", "cpu"]
ABLATE = ["ablate", "--keep-probs", "0.5,1", "--seeds", "1", "--epochs", "1", "--train-sizes", "200", "--hidden", "8",
          "--validation-size", "100", "--device", "cpu", "--dry-run"]
values = st.one_of(
    st.sampled_from(["0", "-1", "1e30", "-1e30", "inf", "-inf", "nan", "", " ", "1.5", "0.5,", ",", "0.5:0.5", "none",
                     "1,2,3", "99999999999999999999", "3.0", "abc", "-0", "0x10", "1e-300", "😀", "../..", "/dev/null",
                     "cuda", "cuda:7", "mps", "tf32", "bf16", "random", "first", "keep=1", "1/2", "2/1"]),
    st.integers(min_value=-10**6, max_value=10**6).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=8),
)


def check(result, tmp: Path) -> None:
    now = {p.name for p in Path.cwd().iterdir() if not p.name.startswith(".")}
    assert now == ROOT_FILES, f"wrote into the working folder: {now ^ ROOT_FILES}"
    assert result.exit_code in (0, 1, 2), (result.exit_code, result.output)
    assert "Traceback" not in result.output, result.output
    if result.exit_code:  # one line says why, the last; a failure may follow a log's progress lines
        err = result.stderr.strip().splitlines()
        assert err and err[-1].startswith(("Error: ", "Interrupted")), result.output
        assert not [line for line in err[:-1] if line.startswith(("Error", "Interrupted"))], result.output
        assert result.exit_code == 1 or len(err) == 1, result.output
        assert not any(words in err[-1] for words in ("Input should", "Value error")), err[-1]  # pydantic's, not ours
    assert not [p for p in tmp.rglob("*") if p.name.endswith(".tmp")]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("fuzz") / "run"
    assert runner.invoke(app, [*TRAIN, "--out", str(out)]).exit_code == 0
    return out


OPTIONS = {
    "train": ["--keep-prob", "--input-keep-prob", "--hidden", "--lr", "--batch-size", "--epochs", "--seed",
              "--max-norm", "--train-size", "--validation-size", "--subset", "--precision", "--mc-samples", "--device",
              "--init", "--dataset", "--out"],
    "ablate": ["--keep-probs", "--input-keep-probs", "--max-norms", "--train-sizes", "--seeds", "--seed-list",
               "--epochs", "--hidden", "--lr", "--batch-size", "--validation-size", "--precision", "--parallel-models", "--workers",
               "--device", "--shard", "--executor", "--baseline", "--metric", "--subset"],
    "evaluate": ["--split", "--mc-samples", "--mc-curve", "--repeats", "--device", "--csv"],
    "predict": ["--index", "--mc-samples", "--device"],
}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(option=st.sampled_from(OPTIONS["train"]), value=values)
def test_train(tmp_path, option, value):
    args = [*TRAIN, "--out", str(tmp_path / "r")]
    if option in ("--epochs", "--hidden", "--batch-size") and value.strip().isascii() and value.strip().isdigit() and int(value) > 1000:
        value = "1000"  # a valid request for hours of work: it would run, slowly
    if option == "--out":
        value = str(tmp_path / value) if value else value  # anything the user types, but inside tmp_path
    check(runner.invoke(app, [*args, option, value]), tmp_path)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(option=st.sampled_from(OPTIONS["ablate"]), value=values)
def test_ablate(tmp_path, option, value):
    check(runner.invoke(app, [*ABLATE, "--out", str(tmp_path / "s"), option, value]), tmp_path)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(option=st.sampled_from(OPTIONS["evaluate"]), value=values)
def test_evaluate(run_dir, tmp_path, option, value):
    if option == "--csv":
        value = str(tmp_path / value) if value else str(tmp_path)
    if option == "--mc-curve":
        value = value[:12]  # many thousands of passes would only be slow
    check(runner.invoke(app, ["evaluate", str(run_dir), option, value, *(["--repeats", "1"]
                                                                          if option == "--mc-curve" else [])]), tmp_path)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(option=st.sampled_from(OPTIONS["predict"]), value=values)
def test_predict(run_dir, tmp_path, option, value):
    if option == "--mc-samples" and value.isascii() and value.isdigit() and int(value) > 1000:
        value = "1000"
    check(runner.invoke(app, ["predict", str(run_dir), option, value]), tmp_path)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=values)
def test_report_and_merge_on_anything(tmp_path, value):
    check(runner.invoke(app, ["report", str(tmp_path / value) if value else value]), tmp_path)
    check(runner.invoke(app, ["merge", str(tmp_path / value) if value else value]), tmp_path)


def test_a_line_separator_in_a_path_stays_on_one_line(tmp_path):
    result = runner.invoke(app, ["report", str(tmp_path / "a\x85b\nc")])
    check(result, tmp_path)
    assert "a\\x85b\\nc" in result.stderr


def numeric_options():
    """(command path, its required arguments, option, bad values) for every option of every command that Typer checks
    as a number or a choice, read from the app itself (so a new option is covered the day it is added)."""
    import typer.main

    def walk(command, path):
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk(sub, [*path, name])
        if not getattr(command, "commands", None):
            arguments = ["x" for p in command.params if p.param_type_name == "argument" and p.required]
            for p in command.params:
                kind = getattr(p.type_descriptor.annotation, "__name__", "")
                if p.param_type_name == "option" and not p.is_flag and (kind in ("int", "float") or
                                                                         isinstance(p.type_descriptor.annotation, EnumMeta)):
                    bad = ["abc", *(str(int(b + d)) for b, d in ((p.min, -1), (p.max, 1)) if b is not None)]
                    option = next(o for o in p.opts if o.startswith("--"))
                    yield pytest.param(path, arguments, option, bad, id=f"{' '.join(path)} {option}")

    return list(walk(typer.main.get_command(app), []))


@pytest.mark.parametrize("path, arguments, option, bad", numeric_options())
def test_every_numeric_or_choice_option_refuses_a_bad_value_in_dropclis_words(path, arguments, option, bad):
    """A word where a number or a choice belongs, and a number just outside the option's declared
    range: exit 2 and one line naming the option, what it takes and what was given, never
    pydantic's 'Input should be ...' (Typer checks types and ranges with pydantic)."""
    for value in bad:
        result = runner.invoke(app, [*path, option, value, *arguments])
        check_error(result, 2, option)
        line = result.stderr.strip().splitlines()[-1]
        assert "Input should" not in line and "Value error" not in line and value in line, line
