"""Committing finished cells: a commit costs its own rows, and writes what rendering the whole table would."""

import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_tables import run_rows

from dropcli.commits import StudyTables
from dropcli.errors import DropcliError
from dropcli.study import history_of
from dropcli.tables import HISTORY_SCHEMA, RUNS_SCHEMA, csv_text, frame, read_runs, row_cell_ids


@st.composite
def cells(draw):
    """Generated cells: (runs.csv row, its history.csv rows), one validation per step up to its steps."""
    out = []
    for row in draw(run_rows()):
        steps = max(1, min(row["steps"], 40))
        row = {**row, "steps": steps, "eval_every": 1, "best_step": None, "best_epoch": None}
        history = [{**{c: row[c] for c in HISTORY_SCHEMA if c in row}, "epoch": 1, "step": s,
                    "cost": draw(st.one_of(st.none(), st.floats(0, 1e6))), "train_batch_accuracy": draw(st.floats(0, 1)),
                    "validation_accuracy": draw(st.one_of(st.none(), st.floats(0, 1))),
                    "group_epoch_seconds": draw(st.floats(0, 1e5))}
                   for s in range(1, draw(st.integers(1, min(steps, 4))) + 1)]
        out.append((row, history))
    return out


def commit_all(folder, groups, shared: bool):
    """Commit each group of cells into the new folder: with one StudyTables (shared), or with a new
    one per commit, which reads the tables back every time (as every commit did before)."""
    folder.mkdir()
    tables = StudyTables(folder)
    for group in groups:
        (tables if shared else StudyTables(folder)).commit([r for r, _ in group], [h for _, hs in group for h in hs])
    return [(folder / name).read_bytes() for name in ("runs.csv", "history.csv")]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_commits_in_any_grouping_write_what_one_table_of_every_row_is(tmp_path_factory, data):
    made = data.draw(cells())
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(made) - 1)), max_size=len(made))))
    groups = [made[a:b] for a, b in zip([0, *cuts], [*cuts, len(made)]) if made[a:b]]
    whole = [csv_text(frame([r for r, _ in made], RUNS_SCHEMA), RUNS_SCHEMA).encode(),
             csv_text(frame([h for _, hs in made for h in hs], HISTORY_SCHEMA), HISTORY_SCHEMA).encode()]
    base = tmp_path_factory.mktemp("commits")
    assert commit_all(base / "shared", groups, shared=True) == whole
    assert commit_all(base / "fresh", groups, shared=False) == whole


REAL = Path(__file__).resolve().parent.parent / "results" / "ablation"  # a committed study's rows


def real_cells(n: int) -> list[tuple[dict, list[dict]]]:
    """The first n cells of the committed study REAL: (runs.csv row, history.csv rows), as commits take them."""
    def rows(df):
        return [{k: None if isinstance(v, float) and math.isnan(v) else v for k, v in r.items()} for r in df.to_dict("records")]

    runs, history = read_runs(REAL / "runs.csv"), history_of(REAL)
    ids, hids = row_cell_ids(runs), row_cell_ids(history)
    return [(rows(runs[ids == key])[0], rows(history[hids == key])) for key in ids[:n]]


def test_a_cut_off_commits_history_is_replaced_not_repeated(tmp_path):
    tables = StudyTables(tmp_path)
    (run1, hist1), (run2, hist2) = real_cells(2)
    tables.commit([run1], hist1)
    tables.commit([], hist2[:3])  # as a commit cut off between its history.csv and its runs.csv
    tables.commit([run2], hist2)  # the rerun commits the cell again, whole
    assert (tmp_path / "history.csv").read_bytes() == csv_text(frame(hist1 + hist2, HISTORY_SCHEMA), HISTORY_SCHEMA).encode()
    assert (tmp_path / "runs.csv").read_bytes() == csv_text(frame([run1, run2], RUNS_SCHEMA), RUNS_SCHEMA).encode()


def test_a_table_changed_between_commits_is_refused_not_overwritten(tmp_path):
    tables = StudyTables(tmp_path)
    (run1, hist1), (run2, hist2) = real_cells(2)
    tables.commit([run1], hist1)
    edited = (tmp_path / "runs.csv").read_text().replace(run1["cpu"], "another CPU")  # valid, not dropcli's
    (tmp_path / "runs.csv").write_text(edited)
    with pytest.raises(DropcliError, match="runs.csv has changed since dropcli wrote it"):
        tables.commit([run2], hist2)
    assert (tmp_path / "runs.csv").read_text() == edited


def test_rows_another_dropcli_wrote_between_commits_are_kept(tmp_path):
    mine, other = StudyTables(tmp_path), StudyTables(tmp_path)
    (run1, hist1), (run2, hist2), (run3, hist3) = real_cells(3)
    mine.commit([run1], hist1)
    other.commit([run2], hist2)  # the folder's manifest vouches for this write too
    mine.commit([run3], hist3)
    assert (tmp_path / "runs.csv").read_bytes() == csv_text(frame([run1, run2, run3], RUNS_SCHEMA), RUNS_SCHEMA).encode()
