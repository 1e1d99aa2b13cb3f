"""The study folder: claimed exclusively, never mixed with another study or a run, --fresh only for studies."""

import json
import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dropcli.config import TrainConfig
from dropcli.errors import StudyMismatch, UsageError
from dropcli.grid import GridSpec, study_identity
from dropcli.owned import MANIFEST
from dropcli.study import OUTPUTS, claim, default_folder

BASE = TrainConfig(hidden=(32, 32), epochs=1, validation_size=500, batch_size=50)
GRID = GridSpec(keep_probs=((0.5,), (1.0,)), train_sizes=(500,), seeds=(1, 2))


def identity(**kw):
    return study_identity(GRID, BASE.replace(**kw))


def test_a_new_or_empty_folder_becomes_the_study(tmp_path):
    claim(tmp_path / "new" / "deeper", identity(), fresh=False)
    assert json.loads((tmp_path / "new" / "deeper" / "study.json").read_text()) == json.loads(json.dumps(identity()))
    (tmp_path / "empty").mkdir()
    claim(tmp_path / "empty", identity(), fresh=False)
    claim(tmp_path / "empty", identity(), fresh=False)  # the same study again: resumes


def test_a_folder_that_is_not_a_study_is_refused_and_left_alone(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "history.csv").write_text("epoch,cost\n1,0.5\n")
    (run / "model.safetensors").write_bytes(b"weights")
    with pytest.raises(StudyMismatch, match="is not a dropcli study .*history.csv.* use a new or empty --out"):
        claim(run, identity(), fresh=False)
    with pytest.raises(StudyMismatch, match="is not a dropcli study"):
        claim(run, identity(), fresh=True)
    assert (run / "history.csv").read_text() == "epoch,cost\n1,0.5\n" and (run / "model.safetensors").exists()
    assert not (run / "study.json").exists()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(["study.json", "runs.csv", "history.csv"]), check=st.booleans())
def test_a_folder_left_by_a_kill_mid_write_is_claimed_but_a_users_look_alike_is_not(tmp_path, name, check):
    """SIGKILL between mkstemp and the manifest's first record leaves dropcli's own temporary file
    (and the lock): the study still starts there. A user's file of another shape is refused."""
    import tempfile

    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    (folder / ".lock").touch()
    made = tempfile.mkstemp(dir=folder, prefix=".write-check.") if check else \
        tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    os.close(made[0])
    claim(folder, identity(), fresh=False)
    assert (folder / "study.json").exists()
    other = Path(tempfile.mkdtemp(dir=tmp_path))
    (other / f".{name}.tmp").write_text("mine")  # not the shape dropcli writes
    with pytest.raises(StudyMismatch, match="is not a dropcli study"):
        claim(other, identity(), fresh=False)


def test_another_study_is_refused_without_suggesting_deletion(tmp_path):
    claim(tmp_path, identity(), fresh=False)
    with pytest.raises(StudyMismatch) as e:
        claim(tmp_path, identity(epochs=2), fresh=False)
    assert "epochs 1 there, 2 now" in str(e.value) and "--fresh" not in str(e.value)
    with pytest.raises(StudyMismatch, match="eval_every not set there, 1 now"):  # history every step, not every epoch
        claim(tmp_path, identity(eval_every=1), fresh=False, grow=True)


def test_fresh_removes_only_the_files_dropcli_wrote(tmp_path):
    folder = claim(tmp_path, identity(), fresh=False)
    for name in OUTPUTS[:-1]:
        folder.write_text(name, "x")
    folder.subfolder("shards").folder.joinpath("mine.txt").write_text("the user's")  # a user file in our folder
    (tmp_path / "notes.txt").write_text("mine")
    claim(tmp_path, identity(epochs=2), fresh=True)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != ".lock") == [MANIFEST, "notes.txt", "shards",
                                                                               "study.json"]
    assert (tmp_path / "shards" / "mine.txt").read_text() == "the user's"
    assert json.loads((tmp_path / "study.json").read_text()) == json.loads(json.dumps(identity(epochs=2)))


def test_fresh_never_deletes_committed_results(tmp_path):
    repo = tmp_path / "repo"
    study = repo / "results" / "ablation"
    claim(study, identity(), fresh=False).write_text("runs.csv", "committed")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "add", "."], check=True)
    with pytest.raises(UsageError, match="is committed to git; --fresh never deletes committed results"):
        claim(study, identity(), fresh=True)
    assert (study / "runs.csv").read_text() == "committed"


def test_default_folders_keep_new_studies_apart_from_committed_ones():
    a, b = default_folder(identity()), default_folder(identity(epochs=2))
    assert a != b and a == default_folder(identity())  # the same command resumes its own folder
    assert a.parts[:2] == ("results", "studies") and a.name.startswith("4cells-")


def test_out_that_is_a_file_is_a_usage_error(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(UsageError, match="is a file, not a folder"):
        claim(tmp_path / "f", identity(), fresh=False)


_SETTINGS = {"keep_prob_mean": "0.3", "subset": "first",  # a whole-part row of this study says 'all' or 'random'
             "epochs": "4", "init": "xavier", "batch_size": "50",
             "dataset": "kmnist", "mc_samples": "5", "precision": "bf16", "eval_every": "7"}


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(column=st.sampled_from(sorted(_SETTINGS)), row=st.integers(0, 3))
def test_a_row_made_with_other_settings_than_the_study_is_refused(tmp_path_factory, column, row):
    """A runs.csv row whose cell key is in the grid but whose settings are not the study's (another
    data set, more epochs, a keep mean that is not its keep_probs') is a foreign row: it would count
    in the summary as this study's. The report refuses the file naming the row and column."""
    import csv

    from synthetic_study import write_study

    from dropcli.report import build_report
    from dropcli.tables import TableError

    folder = write_study(tmp_path_factory.mktemp("s") / "study", keeps=(0.5, 1.0), seeds=(777, 778))
    rows = list(csv.reader((folder / "runs.csv").open(newline="")))
    rows[row + 1][rows[0].index(column)] = _SETTINGS[column]
    with (folder / "runs.csv").open("w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)
    with pytest.raises(TableError, match=rf"runs.csv row {row + 2}, column {column}: .* study gives the cell"):
        build_report(folder)
    assert not (folder / "summary.csv").exists()


axis_values = {"keep_probs": [(0.5,), (0.7,), (1.0,)], "input_keep_probs": [0.8, 1.0], "train_sizes": [500, 1000],
               "seeds": [1, 2, 3, 4]}


@st.composite
def nested_grids(draw):
    """Two grids over the same axes: `small` takes a non-empty part of each axis of `big`, or not."""
    big, small = {}, {}
    for axis, values in axis_values.items():
        chosen = draw(st.lists(st.sampled_from(values), min_size=1, unique=True))
        big[axis] = tuple(chosen)
        part = draw(st.lists(st.sampled_from(values), min_size=1, unique=True))  # may hold values big lacks
        small[axis] = tuple(part)
    return GridSpec(**small), GridSpec(**big)


@settings(max_examples=150, deadline=None)
@given(grids=nested_grids(), epochs=st.sampled_from([1, 2]))
def test_a_study_grows_exactly_when_every_cell_of_the_old_is_a_cell_of_the_new(grids, epochs):
    """identity.grows: more values on the same axes, the same settings and data; so the finished
    rows of the old study are all cells of the new one (what lets ablate keep them)."""
    from dropcli.grid import cell_id_of, expand
    from dropcli.identity import grows, same

    small, big = grids
    old, new = study_identity(small, BASE), study_identity(big, BASE.replace(epochs=epochs))
    cells_old = {cell_id_of(c) for c in expand(small, BASE)}
    cells_new = {cell_id_of(c) for c in expand(big, BASE.replace(epochs=epochs))}
    assert grows(old, new) == (epochs == 1 and cells_old <= cells_new)
    assert not grows({**old, "shard": {"index": 1, "count": 2}}, new) and (not same(old, new) or grows(old, new))


def test_a_study_grown_by_seeds_takes_the_new_study_json_and_a_shrunk_one_is_refused(tmp_path):
    claim(tmp_path, identity(), fresh=False)
    more = study_identity(GridSpec(keep_probs=((0.5,), (1.0,)), train_sizes=(500,), seeds=(1, 2, 3)), BASE)
    with pytest.raises(StudyMismatch, match="only a whole-study 'dropcli ablate'"):
        claim(tmp_path, more, fresh=False)  # growing is ablate's choice (grow=True), never a shard's or slurm's
    claim(tmp_path, more, fresh=False, grow=True)
    assert json.loads((tmp_path / "study.json").read_text())["grid"]["seeds"] == [1, 2, 3]
    claim(tmp_path, identity(), fresh=False, grow=True)  # no cell finished: back to 2 seeds (a mistyped growth)
    assert json.loads((tmp_path / "study.json").read_text())["grid"]["seeds"] == [1, 2]
    with pytest.raises(StudyMismatch, match=r"another study \(epochs 1 there, 2 now\)"):
        claim(tmp_path, identity(epochs=2), fresh=False, grow=True)


def test_one_learning_rate_grows_into_several_and_one_width_into_several():
    """lr and hidden are settings while a study has one value (study.json's older shape) and axes
    with more: a study at lr 0.001 grows into lrs 0.001, 0.003, its cells all kept."""
    from dropcli.grid import cell_id_of, expand
    from dropcli.identity import grows

    one = study_identity(GRID, BASE)
    more = GridSpec(keep_probs=((0.5,), (1.0,)), train_sizes=(500,), seeds=(1, 2), lrs=(0.001, 0.003),
                    hiddens=((32, 32), (64, 64)))
    assert "lr" in one["settings"] and "lrs" in study_identity(more, BASE)["grid"]
    assert grows(one, study_identity(more, BASE))
    assert {cell_id_of(c) for c in expand(GRID, BASE)} <= {cell_id_of(c) for c in expand(more, BASE)}
    other = GridSpec(keep_probs=((0.5,), (1.0,)), train_sizes=(500,), seeds=(1, 2), lrs=(0.01, 0.003))
    assert not grows(one, study_identity(other, BASE))  # lr 0.001's cells are not in it


@pytest.mark.parametrize("setting, value", [("lr", 0.5), ("epochs", 7), ("dataset", "kmnist")])
def test_a_changed_study_json_is_named_as_the_file_to_restore(tmp_path, setting, value):
    """A study.json whose settings were changed by hand makes every row foreign: the refusal says to
    restore study.json, and to delete only a row another study made (it advised deleting good rows)."""
    import json

    from synthetic_study import write_study

    from dropcli.report import build_report
    from dropcli.tables import TableError

    study = write_study(tmp_path / "s", keeps=(0.5, 1.0), seeds=(777, 778))
    doc = json.loads((study / "study.json").read_text())
    doc["settings"][setting] = value
    (study / "study.json").write_text(json.dumps(doc))
    with pytest.raises(TableError, match="if study.json was changed, restore it; delete only a row another study made"):
        build_report(study)


def test_a_grid_change_is_noted_for_a_grown_study_and_never_for_a_shard_rerun(tmp_path):
    """plan.regrid compares a folder's study.json with that folder's own identity: a shard's folder
    holds the shard's, so rerunning a shard is no change of grid values."""
    from dataclasses import replace

    from dropcli.plan import make_plan, open_study
    from dropcli.study import claim

    spec = GridSpec(keep_probs=((0.5,), (1.0,)), seeds=(1, 2))
    base = TrainConfig(hidden=(16,), epochs=1, train_size=200, validation_size=100, batch_size=50)
    with open_study(make_plan(spec, base, tmp_path / "s", shard=(1, 2))):
        pass  # the shard's folder claimed as its run claims it
    assert make_plan(spec, base, tmp_path / "s", shard=(1, 2)).regrid_note is None
    whole = make_plan(spec, base, tmp_path / "w")
    claim(whole.folder, whole.folder_identity, False)
    assert make_plan(spec, base, tmp_path / "w").regrid_note is None
    grown = make_plan(replace(spec, seeds=(1, 2, 3)), base, tmp_path / "w", grow=True)
    assert "holds this study with other grid values" in grown.regrid_note


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.sampled_from([None, 500, 1000, 4000]), min_size=1, max_size=3, unique=True),
       subset=st.sampled_from(["random", "first"]), validation=st.sampled_from([5000, 56000]))
def test_the_rows_a_study_writes_pass_the_check_of_its_study_json(sizes, subset, validation):
    """The cells a run trains (expanded from the command line) and the cells its study.json gives
    back (report, merge, resume) are the same cells with the same settings, whatever names the whole
    training part: a --train-sizes value equal to it labels its rows with the subset rule (which
    draws every image, in file order: the same training), and study.json records only the size. A data-size study whose 55,000-image rows said 'random' was refused by
    its own report ("'random' is not 'all', the setting this study gives the cell")."""
    import pandas as pd

    from dropcli.grid import cells_of, expand, fmt_hidden
    from dropcli.study import check_rows
    from dropcli.tables import cell_columns, config_columns

    base = TrainConfig(validation_size=validation, subset=subset)
    grid = GridSpec(keep_probs=((0.5,), (1.0,)), train_sizes=tuple(sizes), seeds=(1, 2))
    try:
        trained = expand(grid, base)
    except ValueError:  # None and 4000 are one cell where the training part is 4,000 images
        return
    rows = pd.DataFrame([{**cell_columns(c), **config_columns(c), "lr": c.lr, "hidden": fmt_hidden(c.hidden)}
                         for c in trained])
    back = cells_of(study_identity(grid, base))
    assert len(check_rows(rows, Path("runs.csv"), back)) == len(trained)
    other = rows.assign(subset=["first" if s == "random" else "random" for s in rows["subset"]])
    if any(c.n_train < 60_000 - validation for c in trained):  # a part of the training images: the rule counts
        with pytest.raises(Exception, match="column subset"):
            check_rows(other, Path("runs.csv"), back)
