"""Twin paths agree: what one path refuses, its twin refuses with the same words, because both call
one check. Preview and run, whole study and shard, train and ablate, local and Ray, evaluate and
predict, every Monte-Carlo path, ablate's and report's --baseline."""

import numpy as np
import pytest
from conftest import check_error
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

from dropcli.cli import app
from dropcli.compare import check_baseline, parse_baseline
from dropcli.config import TrainConfig
from dropcli.grid import GridSpec, expand

runner = CliRunner()
TINY = ["--hidden", "32,32", "--epochs", "1", "--batch-size", "50", "--validation-size", "500", "--device", "cpu"]
GRID = ["--keep-probs", "0.5,1.0", "--train-sizes", "500", *TINY]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A finished 2-seed study of keep 0.5 and 1."""
    out = tmp_path_factory.mktemp("twins") / "study"
    result = invoke("ablate", *GRID, "--seeds", "2", "--out", out)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory):
    """A run trained without dropout (keep 1.0 everywhere)."""
    out = tmp_path_factory.mktemp("twins") / "keep1"
    result = invoke("train", "--keep-prob", "1", "--train-size", "500", *TINY, "--out", out)
    assert result.exit_code == 0, result.output
    return out


def same_refusal(results, fragment):
    """Every result is the same one-line usage error (exit 2) holding fragment."""
    for r in results:
        check_error(r, 2, fragment)
    assert len({r.stderr.split(" (see ")[0] for r in results}) == 1, [r.stderr for r in results]


def test_preview_run_and_shard_refuse_another_grid_in_the_folder_alike(study):
    """Fewer seeds (seed 778's rows would be foreign) is another study for every path; more seeds
    grows it for ablate and its preview alike, never for a shard (test_study_commands runs that)."""
    before = sorted((p.name, p.stat().st_mtime_ns) for p in study.iterdir())
    same_refusal([invoke("ablate", *GRID, "--seeds", "1", "--out", study, "--dry-run"),
                  invoke("ablate", *GRID, "--seeds", "1", "--out", study)], "is not in this grid")
    for seeds in ("1", "3"):
        check_error(invoke("ablate", *GRID, "--seeds", seeds, "--out", study, "--shard", "1/2", "--dry-run"), 2,
                    "only a whole-study 'dropcli ablate'")
        check_error(invoke("ablate", *GRID, "--seeds", seeds, "--out", study, "--shard", "1/2"), 2,
                    "only a whole-study 'dropcli ablate'")
    assert invoke("ablate", *GRID, "--seeds", "3", "--out", study, "--dry-run").exit_code == 0
    assert sorted((p.name, p.stat().st_mtime_ns) for p in study.iterdir()) == before


def test_every_monte_carlo_path_refuses_a_run_without_dropout_alike(plain_run, tmp_path):
    digit = np.zeros((28, 28), dtype=np.uint8)
    digit[5:23, 12:16] = 255
    Image.fromarray(digit).save(tmp_path / "one.png")
    same_refusal([invoke("evaluate", plain_run, "--mc-samples", "5"),
                  invoke("predict", plain_run, "--index", "0", "--mc-samples", "5"),
                  invoke("predict", plain_run, tmp_path / "one.png", "--mc-samples", "5")],
                 "--mc-samples 5 needs dropout, and this run was trained with keep 1.0 everywhere")
    check_error(invoke("evaluate", plain_run, "--mc-curve", "1,2"), 2,
                "--mc-curve 1,2 needs dropout, and this run was trained with keep 1.0 everywhere")
    check_error(invoke("train", "--keep-prob", "1", "--mc-samples", "5", *TINY, "--out", tmp_path / "r"), 2,
                "--mc-samples 5 needs dropout, and the network has keep 1.0 everywhere")
    for command in (["ablate", "--dry-run", "--out", tmp_path / "s"], ["slurm", "--out", tmp_path / "s", "--shards", "1"]):
        check_error(invoke(*command, "--keep-probs", "1", "--seeds", "2", "--mc-samples", "5", *TINY), 2,
                    "--mc-samples 5 needs dropout, and every cell of the grid has keep 1.0 everywhere")
    assert invoke("ablate", "--dry-run", "--out", tmp_path / "s", *GRID, "--mc-samples", "5").exit_code == 0
    assert invoke("evaluate", plain_run).exit_code == 0 and invoke("predict", plain_run, "--index", "0").exit_code == 0
    assert not (tmp_path / "r").exists() and not (tmp_path / "s").exists()


def test_a_baseline_the_study_lacks_is_refused_before_anything_is_written(study, tmp_path):
    files = {name: (study / name).read_bytes() for name in ("summary.csv", "ablation.png", "curves.png")}
    stamps = {name: (study / name).stat().st_mtime_ns for name in files}
    fragment = "--baseline keep=0.7 is not in this study, whose keep values are 0.5, 1; e.g. --baseline keep=1"
    check_error(invoke("report", study, "--baseline", "keep=0.7"), 2, fragment)
    check_error(invoke("ablate", *GRID, "--seeds", "2", "--out", study, "--baseline", "keep=0.7"), 2, fragment)
    check_error(invoke("ablate", *GRID, "--seeds", "2", "--out", study, "--baseline", "keep=0.7", "--dry-run"), 2,
                fragment)
    check_error(invoke("report", study, "--baseline", "train_size=1000"), 2, "whose train_size values are 500")
    assert {name: (study / name).read_bytes() for name in files} == files
    assert {name: (study / name).stat().st_mtime_ns for name in files} == stamps
    assert invoke("report", study, "--baseline", "keep=0.5").exit_code == 0


AXES = st.fixed_dictionaries({
    "keep": st.lists(st.sampled_from([0.5, 0.7, 0.8, 1.0]), min_size=1, max_size=3, unique=True),
    "input_keep": st.lists(st.sampled_from([0.8, 1.0]), min_size=1, max_size=2, unique=True),
    "max_norm": st.lists(st.sampled_from([None, 3.0, 4.0]), min_size=1, max_size=2, unique=True),
    "train_size": st.lists(st.sampled_from([500, 1000]), min_size=1, max_size=2, unique=True),
})


@settings(max_examples=60, deadline=None)
@given(axes=AXES, key=st.sampled_from(["keep", "input_keep", "max_norm", "train_size"]),
       value=st.sampled_from(["0.5", "0.7", "1", "0.8", "3", "4", "none", "500", "1000"]))
def test_check_baseline_accepts_exactly_the_values_of_the_grid(axes, key, value):
    spec = GridSpec(keep_probs=tuple((k,) for k in axes["keep"]), input_keep_probs=tuple(axes["input_keep"]),
                    max_norms=tuple(axes["max_norm"]), train_sizes=tuple(axes["train_size"]), seeds=(1,))
    cells = expand(spec, TrainConfig(hidden=(8,), batch_size=50))
    try:
        baseline = parse_baseline(f"{key}={value}")
    except ValueError:
        return  # not a value of that axis at all ('none' as a keep probability)
    column = {"keep": "keep_probs", "input_keep": "input_keep_prob", "max_norm": "max_norm",
              "train_size": "train_size"}[key]
    there = {"keep_probs": [c.keep_label for c in cells], "input_keep_prob": [c.input_keep_prob for c in cells],
             "max_norm": [c.max_norm for c in cells], "train_size": [c.n_train for c in cells]}[column]
    if baseline[column] in there:
        check_baseline(baseline, cells)
    else:
        with pytest.raises(ValueError, match=f"--baseline {key}={value} is not in this study, whose {key} values are"):
            check_baseline(baseline, cells)


@pytest.mark.parametrize("args, fragment", [
    (["--hidden", "0"], "--hidden takes widths of at least 1"),
    (["--lr", "inf"], "--lr must be a positive number"),
    (["--batch-size", "0"], "--batch-size must be at least 1"),
    (["--epochs", "0"], "--epochs must be at least 1"),
    (["--validation-size", "-1"], "--validation-size must be in"),
    (["--batch-size", "600"], "lower --batch-size or raise --train-size"),
    (["--precision", "tf32"], "use --precision float32"),
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--device", "cuda:x"], "unknown device 'cuda:x'"),
])
def test_train_ablate_and_ray_refuse_the_same_settings_alike(args, fragment, tmp_path):
    """One refusal, word for word, where each command names the option it was given (train's
    --train-size is ablate's --train-sizes)."""
    train = invoke("train", "--train-size", "500", *TINY, *args, "--out", tmp_path / "r")
    grid = [invoke("ablate", *GRID, *args, "--dry-run", "--out", tmp_path / "s"),
            invoke("ablate", *GRID, *args, "--out", tmp_path / "s"),
            invoke("ablate", *GRID, *args, "--executor", "ray", "--out", tmp_path / "s")]
    same_refusal(grid, fragment)
    check_error(train, 2, fragment)
    said = grid[0].stderr.split(" (see ")[0]
    assert train.stderr.split(" (see ")[0] == said.replace("--train-sizes", "--train-size")
    assert ("--train-sizes" in said) == ("--train-size" in train.stderr)
    assert not (tmp_path / "r").exists() and not (tmp_path / "s").exists()


def test_evaluate_and_predict_refuse_a_missing_run_alike(tmp_path):
    results = [invoke("evaluate", tmp_path / "nothing"), invoke("predict", tmp_path / "nothing", "--index", "0")]
    for r in results:
        check_error(r, 2, "no checkpoint at")
    assert len({r.stderr for r in results}) == 1
