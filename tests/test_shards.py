"""A study split into shards: a fixed, balanced partition, and a merge that equals the whole run bit for bit."""

import json
import shutil

import pandas as pd
import pytest

from dropcli.ablate import StudyProgress, run_study
from dropcli.config import TrainConfig
from dropcli.device import resolve_device
from dropcli.errors import DropcliError, UsageError
from dropcli.grid import GridSpec, cell_id_of, cost, expand, partition
from dropcli.plan import make_plan
from dropcli.shards import merge, parse_shard, shard_identities
from dropcli.tables import TableError

CPU = resolve_device("cpu")
BASE = TrainConfig(hidden=(32, 32), epochs=1, validation_size=500, batch_size=50)
GRID = GridSpec(keep_probs=((0.5,), (0.8,), (1.0,)), train_sizes=(500, 1000), seeds=(1, 2))  # 12 cells
RESULT = ["keep_probs", "input_keep_prob", "train_size", "seed", "final_cost", "train_accuracy", "validation_accuracy",
          "test_accuracy", "test_loss", "best_epoch", "test_accuracy_at_best", "group_size"]


def cells(grid=GRID, base=BASE):
    return expand(grid, base)


def test_the_partition_is_fixed_balanced_and_complete():
    parts = partition(cells(), 3)
    assert parts == partition(cells(), 3)  # a function of the grid alone
    ids = [cell_id_of(c) for p in parts for c in p]
    assert sorted(ids) == sorted(cell_id_of(c) for c in cells()) and len(set(ids)) == 12
    loads = [sum(cost(c) for c in p) for p in parts]
    assert max(loads) <= 1.2 * min(loads)
    for p in parts:  # every shard mixes the expensive (1,000-image) and cheap (500-image) cells
        assert {c.n_train for c in p} == {500, 1000}
    assert partition(cells(), 20)[15] == []  # more shards than cells: some are empty


@pytest.mark.parametrize("text, expected", [("2/8", (2, 8)), (" 1 / 1 ", (1, 1))])
def test_parse_shard(text, expected):
    assert parse_shard(text) == expected


@pytest.mark.parametrize("text, fragment", [("0/3", r"K must be in 1\.\.3"), ("4/3", r"K must be in 1\.\.3"),
                                            ("\u0661/\u0662", "takes K/N"), ("\uff11/\uff12", "takes K/N"), ("1_0/20", "takes K/N"),
                                            ("1/2/3", "takes K/N"), ("1/" + "9" * 5000, "at most 30 digits"),
                                            ("1/0", "N, the number of shards, must be at least 1"),
                                            ("two", "takes K/N"), ("slurm", "needs SLURM_ARRAY_TASK_ID")])
def test_bad_shards(text, fragment, monkeypatch):
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID", raising=False)
    with pytest.raises(ValueError, match=fragment):
        parse_shard(text)


@pytest.mark.parametrize("k, n", [("1_0", "2_0"), ("\u0662", "3"), ("", "3"), ("2", "0x3")])
def test_slurm_array_variables_are_plain_numbers(monkeypatch, k, n):
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", k)
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", n)
    with pytest.raises(ValueError, match="needs SLURM_ARRAY_TASK_ID"):
        parse_shard("slurm")


def test_slurm_array_variables_name_the_shard(monkeypatch):
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "5")
    assert parse_shard("slurm") == (3, 5)


def run_shard(out, k, n, **kw):
    return run_study(make_plan(GRID, BASE, out, (k, n)), CPU, parallel_models=2, **kw)


def sorted_rows(path):
    return pd.read_csv(path, dtype={"keep_probs": str}).sort_values(["train_size", "keep_probs", "seed"]).reset_index(drop=True)


def test_three_shards_one_killed_and_rerun_merge_to_the_whole_run_bit_for_bit(tmp_path):
    whole = tmp_path / "whole"
    run_study(make_plan(GRID, BASE, whole), CPU, parallel_models=2)
    out = tmp_path / "split"
    run_shard(out, 1, 3)

    def killed(row):
        raise KeyboardInterrupt  # after its first group is committed

    with pytest.raises(KeyboardInterrupt):
        run_shard(out, 2, 3, progress=StudyProgress(on_cell=killed))
    assert len(pd.read_csv(out / "shards" / "2-of-3" / "runs.csv")) == 2
    report = merge(out)
    assert report["merged"] == 6 and report["rerun"] == [2, 3] and len(report["missing"]) == 6
    counts = run_shard(out, 2, 3)
    assert counts["skipped"] == 2 and counts["ran"] == 2
    run_shard(out, 3, 3)
    report = merge(out)
    assert report == {**report, "merged": 12, "missing": [], "rerun": [], "duplicates": 0}
    a, b = sorted_rows(out / "runs.csv"), sorted_rows(whole / "runs.csv")
    assert a[RESULT].equals(b[RESULT])  # bit for bit: CSV text compares every digit written
    ha, hb = (pd.read_csv(p / "history.csv").drop(columns="group_epoch_seconds") for p in (out, whole))
    key = ["train_size", "keep_prob_mean", "seed", "epoch"]
    assert ha.sort_values(key).reset_index(drop=True).equals(hb.sort_values(key).reset_index(drop=True))
    before = (out / "runs.csv").read_text()
    assert merge(out)["merged"] == 12 and (out / "runs.csv").read_text() == before  # merging again changes nothing
    assert json.loads((out / "study.json").read_text()) == json.loads((whole / "study.json").read_text())


def test_merge_refuses_rows_outside_their_shard_and_conflicting_copies(tmp_path):
    out = tmp_path / "s"
    for k in (1, 2):
        run_shard(out, k, 2)
    one = out / "shards" / "1-of-2" / "runs.csv"
    extra = pd.read_csv(one, dtype={"keep_probs": str}).iloc[:1]
    two = out / "shards" / "2-of-2" / "runs.csv"  # a cell of shard 1 in shard 2's table: counted twice before
    rows = pd.read_csv(two, dtype={"keep_probs": str})
    pd.concat([rows, extra]).to_csv(two, index=False)
    with pytest.raises(TableError, match=r"2-of-2/runs.csv row 8 holds the cell .*, which belongs to shard 1 of 2, "
                                         r"not to this one; delete the row"):
        merge(out)
    rows.to_csv(two, index=False)
    assert merge(out)["merged"] == 12
    shard = pd.read_csv(one, dtype={"keep_probs": str})
    shard.assign(test_accuracy=0.5).to_csv(one, index=False)  # shard 1's copy now disagrees with the merged one
    with pytest.raises(DropcliError, match="has different results in the merged study and shard 1; delete the wrong"):
        merge(out)
    merged = (out / "runs.csv").read_text()
    (out / "runs.csv").write_text(merged.replace("\n", "\n", 1) + "\n")  # the merged table edited by hand
    with pytest.raises(UsageError, match="runs.csv has changed since dropcli wrote it; dropcli replaces or deletes"):
        merge(out)  # refused before anything is written
    assert (out / "runs.csv").read_text() == merged + "\n"


def test_merge_refuses_a_foreign_shard_and_names_the_missing_ones(tmp_path):
    out = tmp_path / "s"
    run_shard(out, 1, 2)
    other = tmp_path / "other"
    run_study(make_plan(GRID, BASE.replace(epochs=2), other, (2, 2)), CPU, parallel_models=2)
    shutil.copytree(other / "shards" / "2-of-2", out / "shards" / "2-of-2")
    with pytest.raises(DropcliError, match=r"shards/2-of-2 is a shard of another study \(epochs 2 there, 1 here\)"):
        merge(out)
    shutil.rmtree(out / "shards" / "2-of-2")
    report = merge(out)
    assert report["rerun"] == [2] and len(report["missing"]) == 6
    for planted in ("link", "file"):  # a shard's name on a link or a file is named as such, not as a missing shard
        place = out / "shards" / "2-of-2"
        place.symlink_to(other / "shards" / "2-of-2") if planted == "link" else place.write_text("mine")
        with pytest.raises(DropcliError, match="shards/2-of-2 is " + ("a symbolic link" if planted == "link" else "not a folder")):
            merge(out)
        place.unlink()


def test_merge_keeps_rows_already_in_the_study_folder(tmp_path):
    out = tmp_path / "s"
    run_study(make_plan(GRID, BASE, out), CPU, parallel_models=2)  # the whole study, run locally
    run_shard(out, 1, 4)
    before = sorted_rows(out / "runs.csv")
    report = merge(out)
    assert report["merged"] == 12 and report["duplicates"] == 0 and not report["missing"]  # its own rows are no duplicates
    assert sorted_rows(out / "runs.csv")[RESULT].equals(before[RESULT])


@pytest.mark.parametrize("shard", [None, (1, 3), (2, 2)])
def test_a_folder_holding_shards_of_another_study_takes_no_other_study(tmp_path, shard):
    """Whole or sharded, a different study is refused by the plan (so by --dry-run too) before
    anything is written; the same study, whole or in another split, is not."""
    from dropcli.errors import StudyMismatch

    out = tmp_path / "s"
    run_shard(out, 1, 2)
    listing = sorted(p.relative_to(out) for p in out.rglob("*"))
    with pytest.raises(StudyMismatch, match=r"shards/1-of-2 is a shard of another study \(epochs 1 there, 2 now\)"):
        make_plan(GRID, BASE.replace(epochs=2), out, shard)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == listing
    assert make_plan(GRID, BASE, out, shard).identity["settings"]["epochs"] == 1


def test_merge_takes_copies_that_name_the_whole_training_part_differently(tmp_path):
    """A whole-training-part cell trains the same with or without --train-sizes naming that size
    (every image, in file order); its rows say 'all' or the subset rule ('random'), which
    check_rows takes as one setting. merge compared the label as a result and refused the copies."""
    base = TrainConfig(hidden=(16,), epochs=1, validation_size=59_000, batch_size=50)  # the whole part: 1,000 images
    grid = GridSpec(keep_probs=((0.5,), (1.0,)), seeds=(1, 2))
    out = tmp_path / "s"
    for k in (1, 2):
        run_study(make_plan(grid, base, out, (k, 2)), CPU, parallel_models=1)
    assert merge(out)["merged"] == 4
    first = sorted_rows(out / "runs.csv")["test_accuracy"].tolist()
    shutil.rmtree(out / "shards" / "1-of-2")
    named = GridSpec(keep_probs=grid.keep_probs, seeds=grid.seeds, train_sizes=(1000,))
    run_study(make_plan(named, base, out, (1, 2)), CPU, parallel_models=1)
    assert set(pd.read_csv(out / "shards" / "1-of-2" / "runs.csv")["subset"]) == {"random"}
    assert merge(out)["merged"] == 4
    assert sorted_rows(out / "runs.csv")["test_accuracy"].tolist() == first  # the same training, to the last digit


@pytest.mark.parametrize("sizes", [(None,), (1000,)], ids=["no-train-sizes", "the-whole-part"])
def test_a_subset_rule_that_chooses_nothing_resumes_and_merges(tmp_path, sizes):
    """--subset first where every train size is the whole part trains what --subset random does
    (identity.without_inert): a study begun with one resumes with the other, and their shards
    merge, to the last digit. Its rows say 'first', 'random' or 'all'; check_rows reads each as the
    setting (tables.setting_columns had refused 'first' after the identity check let it in)."""
    base = TrainConfig(hidden=(16,), epochs=1, validation_size=59_000, batch_size=50)  # the whole part: 1,000 images
    grid = GridSpec(keep_probs=((0.5,), (1.0,)), seeds=(1, 2), train_sizes=sizes)
    whole = tmp_path / "whole"
    run_study(make_plan(grid, base.replace(subset="first"), whole), CPU, parallel_models=1)
    resumed = run_study(make_plan(grid, base, whole), CPU, parallel_models=1)  # its rows are read and checked
    assert resumed["skipped"] == 4 and resumed["ran"] == 0
    out = tmp_path / "sharded"
    run_study(make_plan(grid, base.replace(subset="first"), out, (1, 2)), CPU, parallel_models=1)
    run_study(make_plan(grid, base, out, (2, 2)), CPU, parallel_models=1)
    assert merge(out)["merged"] == 4
    assert sorted_rows(out / "runs.csv")["test_accuracy"].tolist() == sorted_rows(whole / "runs.csv")["test_accuracy"].tolist()


@pytest.mark.parametrize("copy", ["01-of-2", "1-of-2\n", "0-of-2"])
def test_only_folders_named_as_dropcli_names_shards_are_shards(tmp_path, copy):
    """shards/K-of-N as dropcli writes it (plan.SHARD_DIR, matched whole): a copy named '01-of-2' or
    '1-of-2\\n' had been read as a second shard 1, and merge then blamed its own history.csv."""
    base = TrainConfig(hidden=(16,), epochs=1, validation_size=59_000, batch_size=50)
    grid = GridSpec(keep_probs=((0.5,), (1.0,)), seeds=(1,))
    out = tmp_path / "s"
    for k in (1, 2):
        run_study(make_plan(grid, base, out, (k, 2)), CPU, parallel_models=1)
    shutil.copytree(out / "shards" / "1-of-2", out / "shards" / copy)
    assert [p.name for p in shard_identities(out)] == ["1-of-2", "2-of-2"]
    assert merge(out)["merged"] == 2


def test_a_row_of_another_validation_split_is_refused_even_where_its_subset_chose_nothing(tmp_path):
    """runs.csv records each row's validation_size: 500 images after --validation-size 59000 are half
    the part, after 59,500 all of it, and a row of the first study copied into the second had been
    read as one of its cells (its subset 'first' counting as a rule that chooses nothing). A row of
    an older file (no validation_size) is read by the narrower rule: its own subset rule, or 'all'."""
    from dropcli.report import build_report

    grid = GridSpec(keep_probs=((0.5,), (1.0,)), seeds=(1,))
    other, mine = tmp_path / "other", tmp_path / "mine"
    half = TrainConfig(hidden=(16,), epochs=1, validation_size=59_000, batch_size=50, subset="first")
    run_study(make_plan(GridSpec(keep_probs=grid.keep_probs, seeds=grid.seeds, train_sizes=(500,)), half, other), CPU,
              parallel_models=1)
    run_study(make_plan(grid, half.replace(validation_size=59_500, subset="random"), mine), CPU, parallel_models=1)
    for name in ("runs.csv", "history.csv"):
        shutil.copy(other / name, mine / name)
    with pytest.raises(TableError, match="row 2, column validation_size: 59000 is not 59500"):
        build_report(mine)
    runs = pd.read_csv(mine / "runs.csv", dtype=str, keep_default_na=False).drop(columns="validation_size")
    runs.to_csv(mine / "runs.csv", index=False)  # as a file written before the column
    with pytest.raises(TableError, match="row 2, column subset: 'first' is not"):
        build_report(mine)
