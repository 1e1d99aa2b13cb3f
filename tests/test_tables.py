"""dropcli's CSV tables: spreadsheet-clean on the way out, refused on the way in unless they are dropcli's own."""

import math

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dropcli.config import fmt_keep
from dropcli.grid import cell_id
from dropcli.tables import RUNS_SCHEMA, TableError, frame, read_runs, row_cell_id, row_cell_ids, write_csv

keep = st.floats(min_value=1e-9, max_value=1.0, exclude_min=False).filter(lambda k: k > 0)
finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6)
maybe = st.one_of(st.none(), finite, st.just(math.nan), st.just(math.inf))
fraction = st.one_of(st.none(), st.floats(0, 1), st.just(math.nan))  # accuracies: fractions, or missing
text = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=20)


@st.composite
def run_rows(draw):
    """Arbitrary cells, as run_row makes them: configuration values of any precision, measured
    values that may be missing, NaN or infinite, and free text that may look like a formula."""
    n = draw(st.integers(min_value=1, max_value=6))
    rows, seen = [], set()
    for _ in range(n):
        keeps = tuple(draw(st.lists(keep, min_size=1, max_size=3)))
        row = {"keep_probs": fmt_keep(keeps), "keep_prob_mean": sum(keeps) / len(keeps), "input_keep_prob": draw(keep),
               "max_norm": draw(st.one_of(st.none(), st.floats(min_value=1e-6, max_value=100))),
               "train_size": draw(st.integers(1, 55_000)), "seed": draw(st.integers(0, 2**63 - 1)),
               "subset": draw(st.sampled_from(["all", "random", "first"])), "epochs": draw(st.integers(1, 100)),
               "validation_size": draw(st.one_of(st.none(), st.integers(0, 59_999))),
               "epochs_run": draw(st.integers(0, 100)), "hidden": draw(text), "init": draw(text),
               "lr": draw(st.floats(min_value=1e-12, max_value=10)), "batch_size": draw(st.integers(1, 1000)),
               "dataset": draw(text), "test_images": draw(st.integers(1, 10_000)),
               "best_epoch": draw(st.one_of(st.none(), st.integers(1, 100))),
               "mc_samples": draw(st.integers(0, 1000)), "group_train_seconds": draw(st.floats(0, 1e6)),
               "group_size": draw(st.integers(1, 64)), "device": draw(text), "cpu": draw(text),
               "workers": draw(st.integers(1, 512)), "threads": draw(st.one_of(st.none(), st.integers(1, 512))),
               "engine": draw(text), "precision": draw(text), "status": draw(st.sampled_from(["ok", "diverged"])),
               "finished_at": draw(text), "dropcli_version": draw(text), "torch_version": draw(text)}
        for m in ("final_cost", "train_accuracy", "validation_accuracy", "test_accuracy", "generalization_gap",
                  "test_loss", "test_accuracy_at_best", "test_accuracy_mc"):
            row[m] = draw(fraction if m.endswith("accuracy") or m.endswith("accuracy_at_best") or m.endswith("_mc") else maybe)
        row.update(hidden=" ".join(map(str, draw(st.lists(st.integers(1, 4096), min_size=1, max_size=4)))),
                   steps=draw(st.integers(0, 10**6)), eval_every=draw(st.integers(1, 10**4)),
                   best_step=draw(st.one_of(st.none(), st.integers(1, 10**6))))
        ok = row["status"] == "ok"  # what one training's row holds together (read_runs)
        row["epochs_run"] = draw(st.integers(1 if ok else 0, row["epochs"]))
        row["best_epoch"] = draw(st.one_of(st.none(), st.integers(1, row["epochs_run"]))) if row["epochs_run"] else None
        row["best_step"] = draw(st.one_of(st.none(), st.integers(1, row["steps"]))) if row["steps"] else None
        if ok and not (row["test_accuracy"] or 0) > 0:
            row["test_accuracy"] = 0.5  # a finished cell has its accuracy
        elif not ok:
            row["test_accuracy"] = None  # a diverged one is not evaluated
        key = row_cell_id(row)
        if key not in seen:
            seen.add(key)
            rows.append(row)
    return rows


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=run_rows())
def test_runs_csv_round_trips_every_cell(tmp_path, rows):
    path = tmp_path / "runs.csv"
    write_csv(frame(rows, RUNS_SCHEMA), path, RUNS_SCHEMA)
    back = read_runs(path)
    assert list(back.columns) == list(RUNS_SCHEMA) and len(back) == len(rows)
    assert list(row_cell_ids(back)) == [cell_id(r["keep_probs"], r["input_keep_prob"], r["max_norm"], r["train_size"],
                                             r["seed"], r["lr"], r["hidden"]) for r in rows]  # configuration values come back exactly
    for r, (_, b) in zip(rows, back.iterrows()):
        for col, kind in RUNS_SCHEMA.items():
            want, got = r[col], b[col]
            if kind.startswith("text"):
                assert got == ("'" + want if want[:1] in "=+-@\t\r" else want)  # the formula guard, text only
            elif want is None or (isinstance(want, float) and not math.isfinite(want)):
                assert math.isnan(got)
            elif kind.startswith("exact") or kind.startswith("int"):
                assert got == want, col
            else:
                assert got == pytest.approx(want, abs=1e-10), col
    write_csv(back, tmp_path / "again.csv", RUNS_SCHEMA)  # what was read writes back unchanged
    assert (tmp_path / "again.csv").read_text() == path.read_text()


def test_numbers_are_plain_and_never_prefixed(tmp_path):
    df = pd.DataFrame({"name": ["=HYPERLINK(\"x\")", "+1", "-2", "@SUM(A1)", "plain"],
                       "value": [-0.0071, 1e-7, 123456789.5, -4.0, 0.1 + 0.2]})
    write_csv(df, tmp_path / "t.csv")
    text = (tmp_path / "t.csv").read_text()
    assert "-0.0071" in text and "'-0.0071" not in text and "0.0000001" in text and "e-" not in text
    assert "0.3," not in text and "\n+1" not in text  # measured values cut to 10 decimals: 0.3, not 0.30000000000000004
    back = pd.read_csv(tmp_path / "t.csv")
    assert back["name"].tolist() == ["'=HYPERLINK(\"x\")", "'+1", "'-2", "'@SUM(A1)", "plain"]
    assert back["value"].dtype.kind == "f"


def test_p_values_keep_significant_digits_as_plain_decimals(tmp_path):
    df = pd.DataFrame({"p": [5.123456789e-15, 0.00346123, 1.0, math.nan], "other": [5.123456789e-15, 0.5, 1.0, 2.0],
                       "flag": [True, False, None, True]})
    write_csv(df, tmp_path / "p.csv", significant=("p",))
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[1:] == ["0.00000000000000512346,0,true", "0.00346123,0.5,false", "1,1,", ",2,true"]
    assert "e" not in "".join(lines[1:]).replace("true", "").replace("false", "")  # no exponent anywhere
    assert pd.read_csv(tmp_path / "p.csv")["p"].iloc[0] == pytest.approx(5.12346e-15, rel=1e-9)


@pytest.fixture
def runs_csv(tmp_path):
    rows = [{col: 0 for col in RUNS_SCHEMA} for _ in range(3)]
    for i, r in enumerate(rows):
        r.update(keep_prob=0.5, keep_probs="0.5", input_keep_prob=1.0, max_norm=None, train_size=1000, seed=i,
                 subset="random", hidden="64 64", init="tutorial", lr=0.001, dataset="mnist", device="cpu", cpu="x",
                 engine="eager", precision="float32", status="ok", finished_at="2026-11-28T00:00:00+00:00",
                 dropcli_version="0.1.0", torch_version="2", test_accuracy=0.9 + i / 100, test_images=10_000, generalization_gap=-0.0071,
                 best_epoch=None, epochs=1, epochs_run=1, batch_size=100, eval_every=10, steps=10, group_size=1)
    path = tmp_path / "runs.csv"
    write_csv(frame(rows, RUNS_SCHEMA), path, RUNS_SCHEMA)
    return path


def edit(path, fn):
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(fn(lines)))
    return path.read_bytes()


def replace_cell(lines, row, col, value):
    header = lines[0].rstrip("\n").split(",")
    import csv
    import io

    cells = next(csv.reader(io.StringIO(lines[row - 1])))
    cells[header.index(col)] = value
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(cells)
    lines[row - 1] = out.getvalue()
    return lines


@pytest.mark.parametrize("change, fragment", [
    (lambda ls: replace_cell(ls, 3, "test_accuracy", "ninety"), "row 3, column test_accuracy: 'ninety' is not a number"),
    (lambda ls: replace_cell(ls, 2, "seed", "1.5"), "row 2, column seed: '1.5' is not a whole number"),
    (lambda ls: replace_cell(ls, 2, "seed", "7_77"), "row 2, column seed: '7_77' is not a whole number"),
    (lambda ls: replace_cell(ls, 3, "seed", "\u0663"), "row 3, column seed: '\u0663' is not a whole number"),
    (lambda ls: replace_cell(ls, 2, "test_accuracy", " 0.93"), "row 2, column test_accuracy: ' 0.93' is not a number"),
    (lambda ls: replace_cell(ls, 2, "test_accuracy", "0.9_3"), "row 2, column test_accuracy: '0.9_3' is not a number"),
    (lambda ls: replace_cell(ls, 2, "lr", "1e-400"), "row 2, column lr: '1e-400' is not a number a float can hold: a float "
                                                     "holds sizes from about 5e-324 to 1.8e308; 1e-400 would read as 0"),
    (lambda ls: replace_cell(ls, 2, "seed", "1e-400"), "row 2, column seed: '1e-400' is not a whole number"),
    (lambda ls: replace_cell(ls, 2, "final_cost", "2e308"), "row 2, column final_cost: '2e308' is not a number a float can hold"),
    (lambda ls: replace_cell(ls, 4, "test_accuracy", "0,93"), "row 4, column test_accuracy: '0,93' is not a number (a decimal point"),
    (lambda ls: ls[:3] + [ls[3].replace(",0.92,", ",0,92,")], "row 4 has 42 cells for 41 columns (a decimal comma"),
    (lambda ls: replace_cell(ls, 2, "status", "fine"), "row 2, column status: 'fine' is not one of ok, diverged"),
    (lambda ls: replace_cell(ls, 2, "status", "diverged"), "row 2, column test_accuracy: 0.9 in a row whose status is diverged"),
    (lambda ls: replace_cell(ls, 3, "epochs_run", "0"), "row 3, column epochs_run: 0 in a row whose status is ok"),
    (lambda ls: replace_cell(ls, 3, "epochs_run", "3"), "row 3, column epochs_run: 3 is more than the row's epochs"),
    (lambda ls: replace_cell(ls, 4, "best_epoch", "5"), "row 4, column best_epoch: 5 is past the row's epochs_run"),
    (lambda ls: replace_cell(ls, 2, "best_step", "99"), "row 2, column best_step: 99 is past the row's steps"),
    (lambda ls: replace_cell(ls, 2, "keep_probs", ""), "row 2, column keep_probs: is empty"),
    (lambda ls: replace_cell(ls, 3, "test_accuracy", ""), "row 3, column test_accuracy: is empty in a row whose status is ok"),
    (lambda ls: ls + ["\n"], "row 5 is empty; delete it"),
    (lambda ls: ls + [ls[1]], "row 5 repeats the cell keep=0.5|input_keep=1|max_norm=none|train_size=1000|lr=0.001|hidden=64 64|seed=0"),
    (lambda ls: [ls[0].replace(",test_loss", ",loss")] + ls[1:], "lacks column 'test_loss'"),
    (lambda ls: [ls[0].rstrip("\n") + ",notes\n"] + [x.rstrip("\n") + ",x\n" for x in ls[1:]], "unknown column 'notes'"),
    (lambda ls: [x.replace(",", ";") for x in ls], "is not comma-separated"),
    (lambda ls: [], "has no header row"),
])
def test_an_edited_table_is_refused_naming_row_and_column_and_left_alone(runs_csv, change, fragment):
    before = edit(runs_csv, change)
    with pytest.raises(TableError) as e:
        read_runs(runs_csv)
    assert fragment in str(e.value) and str(runs_csv) in str(e.value)
    assert runs_csv.read_bytes() == before


def test_a_table_a_spreadsheet_saved_with_a_byte_order_mark_reads_as_before(runs_csv):
    """Excel's "CSV UTF-8" and CRLF line ends: the same table (and a BOM inside a cell is still refused)."""
    before = read_runs(runs_csv)
    runs_csv.write_bytes(b"\xef\xbb\xbf" + runs_csv.read_bytes().replace(b"\n", b"\r\n"))
    pd.testing.assert_frame_equal(read_runs(runs_csv), before)
    edit(runs_csv, lambda ls: [ls[0].replace(",seed,", ",\ufeffseed,")] + ls[1:])
    with pytest.raises(TableError, match="lacks column 'seed'"):
        read_runs(runs_csv)


def test_a_table_saved_again_by_pandas_or_a_spreadsheet_reads_as_the_same_cells(tmp_path):
    """Keep 1 saved as '1.0', widths as '512.0', whole numbers as '55000.0' (a column with blanks
    turns float): the same cells, values and keys; an impossible keep is still refused."""
    from synthetic_study import write_study

    out = write_study(tmp_path / "s", keeps=(0.5, 0.7, 1.0), train_sizes=(1000, None), status=lambda *c: "ok" if c[-1] != 778 else "diverged")
    before = read_runs(out / "runs.csv")
    resaved = pd.read_csv(out / "runs.csv")
    resaved["keep_probs"] = resaved["keep_probs"].astype(float)  # what a spreadsheet's number format does
    resaved.to_csv(out / "runs.csv", index=False)
    text = (out / "runs.csv").read_text()
    assert ",1.0," in text and "55000" in text
    after = read_runs(out / "runs.csv")
    pd.testing.assert_frame_equal(after, before)
    assert list(row_cell_ids(after)) == list(row_cell_ids(before))
    resaved.loc[0, "keep_probs"] = 1.5
    resaved.to_csv(out / "runs.csv", index=False)
    with pytest.raises(TableError, match="row 2, column keep_probs: '1.5' is not keep probabilities"):
        read_runs(out / "runs.csv")


@pytest.mark.parametrize("text, value", [("9007199254740993.0", 9007199254740993), ("7.77e2", 777), ("0777.000", 777)])
def test_a_whole_number_saved_with_a_point_or_exponent_reads_exactly(runs_csv, text, value):
    """Read as a decimal, not through a float: 9007199254740993.0 had read as ...992."""
    edit(runs_csv, lambda ls: replace_cell(ls, 2, "seed", text))
    assert read_runs(runs_csv)["seed"].iloc[0] == value  # row 2 of the file: its first row of data


def test_a_deleted_row_or_header_only_is_still_a_table(runs_csv):
    edit(runs_csv, lambda ls: ls[:2] + ls[3:])
    assert list(read_runs(runs_csv)["seed"]) == [0, 2]
    edit(runs_csv, lambda ls: ls[:1])
    assert read_runs(runs_csv).empty


def test_a_runs_csv_from_before_test_images_reads_with_the_10000_image_test_split(runs_csv):
    def drop(lines):
        header = lines[0].rstrip("\n").split(",")
        i = header.index("test_images")
        return [",".join(c for j, c in enumerate(x.rstrip("\n").split(",")) if j != i) + "\n" for x in lines]

    edit(runs_csv, drop)
    assert "test_images" not in runs_csv.read_text()
    runs = read_runs(runs_csv)
    assert list(runs.columns) == list(RUNS_SCHEMA) and list(runs["test_images"]) == [10_000] * 3


def test_negative_numbers_survive_a_rewrite(runs_csv):
    runs = read_runs(runs_csv)
    write_csv(runs, runs_csv, RUNS_SCHEMA)
    assert ",-0.0071," in runs_csv.read_text() and "'-" not in runs_csv.read_text()


def test_a_runs_table_written_before_the_worker_columns_reads_as_one_process(tmp_path):
    from pathlib import Path

    committed = Path(__file__).resolve().parent.parent / "results" / "ablation" / "runs.csv"
    before = committed.read_text()
    assert "workers" not in before.splitlines()[0]  # written by an older dropcli (and renamed columns too)
    runs = read_runs(committed)
    assert list(runs.columns) == list(RUNS_SCHEMA) and (runs["workers"] == 1).all() and runs["threads"].isna().all()
    assert committed.read_text() == before  # read, never rewritten in place
    write_csv(runs, tmp_path / "runs.csv", RUNS_SCHEMA)
    assert read_runs(tmp_path / "runs.csv")["workers"].tolist() == runs["workers"].tolist()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(change=st.one_of(
    st.tuples(st.sampled_from(["group_train_seconds"]), st.floats(-1e6, -1e-6).map(repr)),
    st.tuples(st.sampled_from(["group_size", "batch_size", "epochs", "eval_every"]), st.integers(-1000, 0).map(str)),
    st.tuples(st.sampled_from(["steps", "epochs_run", "mc_samples", "best_epoch", "best_step"]),
              st.integers(-1000, -1).map(str)),
    st.tuples(st.just("test_accuracy"), st.just(""))), row=st.integers(2, 4))
def test_a_count_or_time_out_of_range_or_a_finished_cell_without_its_accuracy_is_refused(runs_csv, change, row):
    """A negative training time would make the summary's mean time negative, a group of 0 cells or a
    batch of 0 images is no run, and a row whose status is ok without a test accuracy would drop a
    seed from its configuration's mean without a word: each is refused naming the row and column."""
    column, value = change
    original = runs_csv.read_bytes()
    read_runs(runs_csv)  # as written, it is a table
    before = edit(runs_csv, lambda ls: replace_cell(ls, row, column, value))
    with pytest.raises(TableError, match=rf"row {row}, column {column}: "):
        read_runs(runs_csv)
    assert runs_csv.read_bytes() == before
    runs_csv.write_bytes(original)


@pytest.mark.parametrize("text", ["7_77", "\u0663", "5 5", "0x10", "1e3.5", "9" * 5000])
def test_whole_numbers_are_plain_decimal_digits(text):
    from dropcli.config import parse_ints

    with pytest.raises(ValueError, match="takes whole numbers"):
        parse_ints(text, "--seed-list")


@pytest.mark.parametrize("text", ["0.7_0", "\u0660.\u0667", "0.7 0", "0x1p-1", "1_0e-3"])
def test_option_numbers_are_plain_decimal_digits(text):
    """Options read numbers by the rule that reads table cells (config.PLAIN_NUMBER): Python's float()
    takes '0.7_0' as 0.7 and Arabic-Indic digits as their values."""
    from dropcli.grid import parse_keep_list

    with pytest.raises(ValueError, match="--keep-probs takes numbers"):
        parse_keep_list(text)
    assert parse_keep_list(" 0.7 ,1e0") == ((0.7,), (1.0,))


def test_a_baseline_names_each_axis_once():
    from dropcli.compare import parse_baseline

    with pytest.raises(ValueError, match="--baseline names keep twice; give each axis once"):
        parse_baseline("keep=1,keep=0.5")
    with pytest.raises(ValueError, match="--baseline train_size takes whole numbers"):
        parse_baseline("train_size=7_77")
    assert parse_baseline("keep=1, train_size=500") == {"keep_probs": "1", "train_size": 500}


@pytest.mark.parametrize("change, fragment", [
    (lambda ls: ls[:1] + ls[2:], "holds 2 validations of the finished cell keep=0.5|"),
    (lambda ls: ls[:1], "holds 0 validations of the finished cell"),
    (lambda ls: replace_cell(ls, 3, "step", "99999"), "row 3, column step: 99999 is past the"),
    (lambda ls: replace_cell(ls, 2, "epoch", "50"), "row 2, column epoch: 50 is past the 3 epochs_run of its cell"),
    (lambda ls: replace_cell(ls, 2, "cost", "-1"), "row 2, column cost: -1"),
])
def test_a_history_that_is_not_the_record_of_its_finished_cells_is_refused(tmp_path, change, fragment):
    """report and merge read history.csv against runs.csv: a finished cell's validation rows deleted
    (the curves would use fewer seeds than their title says), or a row past its cell's training."""
    from synthetic_study import write_study

    from dropcli.report import build_report

    study = write_study(tmp_path / "s", keeps=(0.5, 1.0), seeds=(777, 778))
    path = study / "history.csv"
    before = edit(path, change)
    with pytest.raises(TableError) as e:
        build_report(study)
    assert fragment in str(e.value) and str(path) in str(e.value) and "\n" not in str(e.value)
    assert path.read_bytes() == before and not (study / "summary.csv").exists()


SPACES = [chr(c) for c in range(0x110000) if chr(c).isspace() and chr(c) not in " \t"]  # 27: \n, \x1c, no-break, ideographic


@pytest.mark.parametrize("space", SPACES, ids=lambda c: f"U+{ord(c):04X}")
def test_a_number_has_only_spaces_and_tabs_around_it(space):
    """Every number an option or list reads (config.trim) may have spaces and tabs around it, and no
    other character Python calls a space: str.strip and float() had read '0.7\\x1c' and '5\\u3000' as
    numbers. Checked on each reader of numbers in options."""
    from dropcli.compare import parse_baseline
    from dropcli.config import parse_ints, parse_number
    from dropcli.grid import parse_keep_list, parse_widths_list
    from dropcli.shards import parse_shard

    assert parse_number(" \t0.7\t ", "--lr") == 0.7 and parse_ints("\t512 , 512 ", "--seed-list") == (512, 512)
    assert parse_widths_list(" 512x2 ") == ((512, 512),) and parse_shard(" 1 / 2 ") == (1, 2)
    for read in (lambda t: parse_number(t, "--lr"), lambda t: parse_ints(t, "--seed-list"), parse_keep_list,
                 parse_widths_list, lambda t: parse_shard(f"1/{t}"), lambda t: parse_baseline(f"keep={t}")):
        for text in (f"1{space}", f"{space}1"):
            with pytest.raises(ValueError):
                read(text)


@pytest.mark.parametrize("space", ["\x1c", "\u00a0", "\n"], ids=["x1c", "no-break", "newline"])
def test_number_options_take_only_spaces_and_tabs_around_a_number(space, tmp_path):
    """The typed options (cli_options.Int and Float, read by pydantic) follow config.trim too (were
    one accepted, the run is 2 steps long)."""
    from conftest import check_error
    from typer.testing import CliRunner

    from dropcli.cli import app

    for option, value in (("--batch-size", "100"), ("--lr", "0.001")):
        result = CliRunner().invoke(app, ["train", "--steps", "2", "--train-size", "200", "--device", "cpu",
                                          option, f"{value}{space}", "--out", str(tmp_path / "run")])
        check_error(result, 2, option)


@pytest.mark.parametrize("column, text", [
    ("keep_probs", "\u0660.\u0665"), ("keep_probs", "0.5_5"), ("keep_probs", "0.5\u30000.5"), ("keep_probs", "0.5\x1c0.5"),
    ("keep_probs", "0.5\n0.5"), ("keep_probs", "\xa00.5"), ("keep_probs", "1e-400"), ("hidden", "64\u300064"),
    ("hidden", "64\x1c64"), ("hidden", "64\n64"), ("hidden", "6_4 64"), ("hidden", "\uff16\uff14 64"),
])
def test_per_layer_cells_read_numbers_by_the_rule_of_every_cell(runs_csv, column, text):
    """keep_probs and hidden hold one number per layer between spaces; each is read as every number
    cell is (config.PLAIN_NUMBER), and only ASCII spaces separate them: str.split() and float() had
    read '٠.٥' as 0.5, '0.5_5' as 0.55 and '64\\u300064' as two layers of 64."""
    edit(runs_csv, lambda ls: replace_cell(ls, 2, column, text))
    with pytest.raises(TableError, match="row 2"):  # its column; a row broken at \x1c or \n, its cell count
        read_runs(runs_csv)
    edit(runs_csv, lambda ls: replace_cell(ls[:1] + ls[-2:], 2, column, " 0.50 " if column == "keep_probs" else "64  64.0 "))
    assert read_runs(runs_csv)[column].iloc[0] == ("0.5" if column == "keep_probs" else "64 64")


@pytest.mark.parametrize("column, text", [("seed", "9223372036854775808"), ("seed", "1e30"), ("train_size", "5e5000"),
                                          ("epochs", "-9223372036854775809"), ("steps", "1" * 4400)])
def test_a_whole_number_past_int64_is_refused_naming_its_cell(runs_csv, column, text):
    """A column of whole numbers is int64: pandas had raised OverflowError (a traceback) for 2^63."""
    edit(runs_csv, lambda ls: replace_cell(ls, 2, column, text))
    with pytest.raises(TableError, match=f"row 2, column {column}: .* is past the whole numbers a table holds"):
        read_runs(runs_csv)
