"""The study commands' edge (cli_studies.py, cli_options.py, plan.py): options parsed once, one plan
for a preview and a run, and nothing outside the study folder touched, whatever the folder holds."""

import os
from pathlib import Path

import pytest
from conftest import check_error
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from dropcli.cli import app
from dropcli.config import TrainConfig
from dropcli.errors import DropcliError, UsageError
from dropcli.files import study_lock
from dropcli.grid import GridSpec
from dropcli.owned import MANIFEST, OwnedFolder
from dropcli.plan import make_plan
from dropcli.study import claim

runner = CliRunner()
BASE = TrainConfig(hidden=(32, 32), epochs=1, validation_size=500, batch_size=50)
GRID = GridSpec(keep_probs=((0.5,), (1.0,)), train_sizes=(500,), seeds=(1, 2))
TINY = ["ablate", "--keep-probs", "0.5,1.0", "--seeds", "2", "--epochs", "1", "--train-sizes", "500",
        "--hidden", "32,32", "--validation-size", "500", "--batch-size", "50", "--device", "cpu"]


def snapshot(folder: Path) -> dict:
    """Every entry under folder (not following links): its kind and its bytes or link target."""
    out = {}
    for root, dirs, files in os.walk(folder, followlinks=False):
        for name in dirs + files:
            p = Path(root) / name
            rel = str(p.relative_to(folder))
            if p.is_symlink():
                out[rel] = ("link", os.readlink(p))
            elif p.is_dir():
                out[rel] = ("dir", None)
            else:
                out[rel] = ("file", p.read_bytes())
    return out


def test_a_preview_refuses_what_the_run_refuses(tmp_path):
    out = tmp_path / "s"
    make_plan(GRID, BASE, out)  # nothing written by a plan
    assert not out.exists()
    claim(out, make_plan(GRID, BASE, out).identity, fresh=False)
    for dry in ([], ["--dry-run"]):  # a 3-seed command on a 2-seed study: both exit 2, alike
        result = runner.invoke(app, [*TINY[:4], "3", *TINY[5:], "--out", str(out), *dry])
        check_error(result, 2, "holds another study (seeds [1, 2] there, [777, 778, 779] now)")


@pytest.mark.parametrize("axes, baseline, ok", [
    (["--keep-probs", "0.5"], [], False),  # a shell's ';' cut '0.5;1' short
    (["--keep-probs", "0.5,0.7", "--input-keep-probs", "0.8"], [], False),
    (["--keep-probs", "1", "--input-keep-probs", "0.8"], [], False),
    (["--keep-probs", "0.5,0.7"], ["--baseline", "keep=0.5"], True),
    (["--keep-probs", "0.5,1", "--input-keep-probs", "0.8,1"], [], True),
])
def test_a_grid_without_its_baseline_is_refused_before_it_trains(tmp_path, axes, baseline, ok):
    """The default baseline is no dropout: a grid without it would train and compare nothing, so
    ablate (and its preview, and a shard) refuses it unless --baseline names a cell it has."""
    rest = ["--seeds", "2", "--epochs", "1", "--train-sizes", "500", "--hidden", "32,32", "--device", "cpu"]
    for extra in (["--dry-run"], ["--shard", "1/2", "--dry-run"], []):
        result = runner.invoke(app, ["ablate", *axes, *rest, *baseline, "--out", str(tmp_path / "s"), *extra])
        if ok:
            assert result.exit_code == 0, result.output
            break
        check_error(result, 2, "the grid has no cell without dropout (keep 1, input keep 1)")
        assert not (tmp_path / "s").exists()


def test_the_lock_never_follows_a_link(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    study = tmp_path / "study"
    study.mkdir()
    (study / ".lock").symlink_to(victim)
    with pytest.raises(DropcliError, match="is a symbolic link; dropcli never follows links"):
        with study_lock(study):
            pass
    result = runner.invoke(app, [*TINY, "--out", str(study)])
    check_error(result, 1, "is a symbolic link")
    assert victim.read_text() == "precious"


def test_a_users_shards_folder_is_not_a_study_and_fresh_keeps_it(tmp_path):
    out = tmp_path / "mine"
    (out / "shards").mkdir(parents=True)
    (out / "shards" / "notes.txt").write_text("mine")
    for fresh in ([], ["--fresh"]):
        check_error(runner.invoke(app, [*TINY, "--out", str(out), *fresh]), 2, "is not a dropcli study (it holds shards")
        check_error(runner.invoke(app, [*TINY, "--out", str(out), "--shard", "1/2", *fresh]), 2, "is not a dropcli study")
    assert snapshot(out) == {"shards": ("dir", None), "shards/notes.txt": ("file", b"mine")}


def test_evaluate_csv_never_writes_over_a_file(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (tmp_path / "curve.png").write_text("a picture")
    (tmp_path / "x.csv").write_text("a table")
    (tmp_path / "y.png").write_text("a plot")
    check_error(runner.invoke(app, ["evaluate", str(run), "--mc-curve", "1,2", "--csv", str(tmp_path / "curve.png")]),
                2, "--csv names a .csv file")
    check_error(runner.invoke(app, ["evaluate", str(run), "--csv", str(tmp_path / "x.csv")]), 2, "exists already")
    check_error(runner.invoke(app, ["evaluate", str(run), "--mc-curve", "1,2", "--csv", str(tmp_path / "y.csv")]),
                2, "y.png exists already")
    assert (tmp_path / "curve.png").read_text() == "a picture" and (tmp_path / "x.csv").read_text() == "a table"
    assert (tmp_path / "y.png").read_text() == "a plot" and not (tmp_path / "y.csv").exists()


names = st.sampled_from(["runs.csv", "history.csv", "summary.csv", "ablation.png", "curves.png", "study.json",
                         "shards", "slurm", "notes.txt", ".lock", MANIFEST, "report.html"])
entries = st.lists(st.tuples(names, st.sampled_from(["file", "dir", "link"])), max_size=4, unique_by=lambda e: e[0])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries=entries, fresh=st.booleans(), shard=st.sampled_from([None, (1, 2)]))
def test_whatever_a_folder_holds_nothing_of_the_users_is_changed(tmp_path_factory, entries, fresh, shard):
    """Generated folders (files, folders and links to a file outside, under the names dropcli uses):
    claiming them for a study either refuses with one DropcliError, or leaves every entry the user
    had exactly as it was, and the link targets outside untouched."""
    top = tmp_path_factory.mktemp("case")
    outside = top / "outside.txt"
    outside.write_text("outside")
    out = top / "study"
    out.mkdir()
    for name, kind in entries:
        p = out / name
        if kind == "file":
            p.write_text("user data")
        elif kind == "dir":
            p.mkdir()
            (p / "inside.txt").write_text("user data")
        else:
            p.symlink_to(outside)
    before = snapshot(out)
    try:
        plan = make_plan(GRID, BASE, out, shard, fresh)
        from dropcli.plan import open_study

        with open_study(plan):
            pass
    except (DropcliError, ValueError):
        pass
    after = snapshot(out)
    assert outside.read_text() == "outside"
    for rel, value in before.items():
        assert after.get(rel) == value, f"{rel} changed"


def test_an_owned_folder_refuses_a_file_it_did_not_write(tmp_path):
    folder = OwnedFolder(tmp_path)
    folder.write_text("report.html", "mine")
    folder.write_text("report.html", "mine again")  # its own file: replaced
    (tmp_path / "b.txt").write_text("the user's")
    with pytest.raises(UsageError, match="exists and was not written by dropcli"):
        folder.write_text("b.txt", "x")
    (tmp_path / "c.txt").symlink_to(tmp_path / "b.txt")
    with pytest.raises(DropcliError, match="is a symbolic link"):
        folder.write_text("c.txt", "x")
    folder.remove_all()
    assert sorted(p.name for p in tmp_path.iterdir()) == [MANIFEST, "b.txt", "c.txt"]  # the manifest stays, empty
    (tmp_path / "summary.csv").write_text("the user's")  # after --fresh, a legacy name is no longer dropcli's
    with pytest.raises(UsageError, match="exists and was not written by dropcli"):
        OwnedFolder(tmp_path, legacy=("summary.csv",)).write_text("summary.csv", "x")
    (tmp_path / "runs.csv").symlink_to(tmp_path / "b.txt")  # a table is never read through a link
    from dropcli.tables import read_runs

    with pytest.raises(DropcliError, match="is a symbolic link"):
        read_runs(tmp_path / "runs.csv")
    os.mkfifo(tmp_path / "history.csv")  # nor from a FIFO, which would hang
    from dropcli.tables import read_history

    with pytest.raises(DropcliError, match="is not a regular file"):
        read_history(tmp_path / "history.csv")


def test_a_study_json_of_the_right_format_and_the_wrong_shape_is_one_line(tmp_path):
    for text in ('{"format": "dropcli-study/3", "settings": [], "grid": {}}',
                 '{"format": "dropcli-study/3", "settings": {}, "grid": {"keep_probs": ["abc"], "input_keep_probs": [1.0],'
                 ' "max_norms": ["none"], "train_sizes": [55000], "seeds": [1]}}',
                 '{"format": "dropcli-study/3", "settings": {}, "grid": {"keep_probs": ["0.5"], "input_keep_probs": [1.0],'
                 ' "max_norms": ["none"], "train_sizes": [55000], "seeds": [1]}, "shard": 5}',
                 "[" * 100_000 + "]" * 100_000, '{"format": "dropcli-study/9"}'):
        out = tmp_path / str(abs(hash(text)))
        out.mkdir()
        (out / "study.json").write_text(text)
        for args in ([*TINY, "--out", str(out)], ["merge", str(out)], ["report", str(out)]):
            result = runner.invoke(app, args)
            assert result.exit_code in (1, 2) and "Traceback" not in result.output, result.output
            assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert sorted(p.name for p in out.iterdir() if p.name != ".lock") == ["study.json"]
    with pytest.raises(DropcliError, match="written by another dropcli version"):
        make_plan(GRID, BASE, tmp_path / str(abs(hash('{"format": "dropcli-study/9"}'))))


def test_shards_trained_on_different_data_are_not_merged(tmp_path):
    """Shard 1 trains on one set of files, then the labels change: the study records its data by
    content (study.json's data), so shard 2 is refused before it trains on the new ones (merge's own
    check of foreign shards: test_shards)."""
    from test_data import fake_mnist_dir, write_idx

    data = tmp_path / "data"
    arrays = fake_mnist_dir(data, n_train=6000, n_test=200)
    args = [*TINY, "--data-dir", str(data), "--out", str(tmp_path / "s")]
    assert runner.invoke(app, [*args, "--shard", "1/2"]).exit_code == 0
    write_idx(data / "t10k-labels-idx1-ubyte.gz", (arrays[3] + 1) % 10)  # the test labels changed
    for shard in ("2/2", "1/2"):  # the other shard is refused before it trains, and shard 1 is not resumed
        check_error(runner.invoke(app, [*args, "--shard", shard]), 2, "1-of-2 is a shard of another study (data")
    assert not (tmp_path / "s" / "shards" / "2-of-2").exists()
    check_error(runner.invoke(app, ["merge", str(tmp_path / "s")]), 1, "rerun shard(s) 2 of 2")


def test_a_preview_counts_finished_cells_as_the_run_does_without_a_study_json(tmp_path):
    """A study whose study.json was deleted: the run writes it again and resumes its runs.csv (each
    row checked against the grid), so the preview counts the same cells as done."""
    out = tmp_path / "s"
    assert runner.invoke(app, [*TINY, "--out", str(out)]).exit_code == 0
    (out / "study.json").unlink()
    dry = runner.invoke(app, [*TINY, "--out", str(out), "--dry-run"])
    assert dry.exit_code == 0 and "Nothing to run: every cell is already in" in dry.stdout, dry.output
    again = runner.invoke(app, [*TINY, "--out", str(out)])
    assert again.exit_code == 0 and "Resumed: 4 cells were already in" in again.stderr, again.output
    assert (out / "study.json").exists()


@pytest.mark.parametrize("sizes", [(None,), (59_500,), (500,)], ids=["no-train-sizes", "the-whole-part", "500"])
def test_a_subset_rule_matters_only_with_a_subset(tmp_path, sizes):
    """A subset of all the training images is all of them, in order (data.subset_indices), so
    `--subset first` without a train size below the whole part (60,000 - validation_size) trains
    the same cells as without it: a study begun with one resumes with the other. Below the whole
    part the rule chooses the images and is part of the study."""
    from dropcli.errors import StudyMismatch

    out = tmp_path / "s"
    grid = GridSpec(keep_probs=((0.5,), (1.0,)), train_sizes=sizes, seeds=(1, 2))
    claim(out, make_plan(grid, BASE.replace(subset="first"), out).identity, fresh=False)
    if sizes == (500,):
        with pytest.raises(StudyMismatch, match='subset "first" there, "random" now'):
            make_plan(grid, BASE, out)
    else:
        assert make_plan(grid, BASE, out).identity["settings"]["subset"] == "random"
    first = 'subset "first" there' if sizes == (500,) else r"train_sizes \[\d+\] there, \[400\] now"
    with pytest.raises(StudyMismatch, match=first):  # a study of other images is another study
        make_plan(GridSpec(keep_probs=((0.5,), (1.0,)), train_sizes=(400,), seeds=(1, 2)), BASE, out)


def test_a_data_dir_keeps_the_subset_rule_in_the_study():
    """A --data-dir may hold more than MNIST's 60,000 training images, so 59,500 of them need not be
    its whole part: there the rule chooses images and stays part of the study (as it does for
    report's and merge's row checks, tables.setting_columns). A malformed identity is returned as is."""
    from dropcli.grid import study_identity
    from dropcli.identity import same, without_inert

    grid = GridSpec(keep_probs=((0.5,),), train_sizes=(59_500,), seeds=(1,))
    assert same(*(study_identity(grid, BASE.replace(subset=rule)) for rule in ("first", "random")))
    assert not same(*(study_identity(grid, BASE.replace(subset=rule, data_dir="/data/big")) for rule in ("first", "random")))
    for odd in ({"settings": []}, {"settings": None, "grid": {}}, {"settings": {"subset": "first"}, "grid": []}):
        assert without_inert(odd) is odd
