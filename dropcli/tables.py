"""dropcli's CSV tables: written for spreadsheets, read back only when they are dropcli's own.

CSV files are UTF-8, comma-separated, one snake_case header row, no index column. Numbers are
plain decimals (never 1e-05, never thousands separators): measured values to at most 10 decimals,
configuration values (keep probabilities, learning rate, max-norm) exactly, so that they read
back as the same floats, and p-values to 6 significant digits (5.1e-15 is written
0.0000000000000051, not 0). Missing values are empty cells, true and false are `true`, `false`.
Text cells that a spreadsheet would run as a formula (leading = + - @) get a leading quote;
numbers never do.

A study's runs.csv and history.csv are read back by `ablate` (to resume) and `report`. They are
checked against their schema: every column present and known, every cell of its type, every
cell key once. A table that fails is refused with one line naming the file, row and column, and
is never rewritten. A column added to a schema after files were written has the value such
files imply (ADDED, or derived from the file's other columns and the study's settings: DERIVED in
migrations.py), so older studies still read. A little over 250 lines on purpose: the schemas, the
rows that fill them, the one writer and the one reader stay in one place.
"""

from __future__ import annotations

import csv
import decimal
import io
import math
from pathlib import Path

import numpy as np
import pandas as pd

from dropcli.config import (
    PLAIN_INT,
    PLAIN_NUMBER,
    SUBSETS,
    TEST_SPLIT,
    TRAIN_SPLIT,
    TrainConfig,
    check_keep,
    fmt_keep,
    fmt_number,
    not_held,
)
from dropcli.errors import DropcliError
from dropcli.files import atomic_write, regular_file
from dropcli.grid import cell_id, fmt_hidden
from dropcli.migrations import RUNS_DERIVED, history_derived

# column -> kind: int, float (measured), exact (a configuration float), text; a trailing "?" allows empty cells.
# keep_probs is the per-layer text ('0.7', '0.8 0.7 0.7 0.5'), keep_prob_mean their mean (a number to plot).
CELL_SCHEMA = {"keep_probs": "text", "keep_prob_mean": "exact", "input_keep_prob": "exact", "max_norm": "exact?",
               "train_size": "int", "seed": "int"}
RUNS_SCHEMA = {
    # epochs_run and steps: epochs reached (the last may be partial) and Adam steps taken; eval_every: steps between validations
    **CELL_SCHEMA, "subset": "text", "validation_size": "int?", "epochs": "int", "epochs_run": "int", "steps": "int", "eval_every": "int",
    "hidden": "text", "init": "text", "lr": "exact", "batch_size": "int", "dataset": "text", "test_images": "int",
    "final_cost": "float?", "train_accuracy": "float?",
    "validation_accuracy": "float?", "test_accuracy": "float?", "generalization_gap": "float?", "test_loss": "float?",
    "best_epoch": "int?", "best_step": "int?", "test_accuracy_at_best": "float?", "test_accuracy_mc": "float?",
    "mc_samples": "int",
    # a lockstep group's cells train together: its wall time is the group's, shared by its group_size cells
    "group_size": "int", "group_train_seconds": "float", "device": "text", "cpu": "text", "engine": "text",
    # the processes that trained the study side by side, and the torch threads of the one that trained this cell
    "workers": "int", "threads": "int?",
    "precision": "text", "status": "text", "finished_at": "text", "dropcli_version": "text", "torch_version": "text",
}
# one row per validation: `step` Adam steps done, in `epoch` (the last may be partial); cost and train_batch_accuracy
# are means over the steps since the row before, group_epoch_seconds their wall time
HISTORY_SCHEMA = {**CELL_SCHEMA, "lr": "exact", "hidden": "text", "epoch": "int", "step": "int", "cost": "float?",
                  "train_batch_accuracy": "float?", "validation_accuracy": "float?", "group_epoch_seconds": "float"}
# columns of tables written before their renames: read under the new names (never rewritten in place)
RENAMED = {"keep_prob": "keep_prob_mean", "parallel_models": "group_size", "train_seconds": "group_train_seconds",
           "seconds": "group_epoch_seconds"}
# column -> its value in files written before the column existed (every dataset's test split has 10,000 images;
# before worker processes a study ran in one process, with a thread count nobody recorded)
ADDED = {"test_images": str(TEST_SPLIT), "workers": "1", "threads": "", "validation_size": ""}  # "": not recorded
CHOICES = {"status": ("ok", "diverged"), "subset": ("all", *SUBSETS)}
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
SIGNIFICANT_DIGITS = 6  # p-values: enough to recompute a Holm adjustment, and never rounded to 0


# the ranges a value must fall in (columns ending in "accuracy" are fractions, 0..1)
RANGES = {"test_images": (1, None), "train_size": (1, None),  # counts the summaries divide by
          "group_size": (1, None), "batch_size": (1, None), "epochs": (1, None), "eval_every": (1, None),
          "epochs_run": (0, None), "steps": (0, None), "mc_samples": (0, None), "best_epoch": (0, None),
          "best_step": (0, None), "epoch": (0, None), "step": (0, None), "cost": (0, None),  # cross-entropy, nats
          "group_train_seconds": (0, None), "group_epoch_seconds": (0, None)}  # wall times and counts
FINISHED = ("test_accuracy",)  # what a row whose status is ok always holds (a missing one would drop a seed)


def plain_number(x, exact: bool = False, digits: int | None = None) -> str:
    """Plain decimal, never an exponent; '' for NaN and infinities. Measured values are cut to 10
    decimals (no float noise such as 0.01899999999999996); exact ones keep every digit they need;
    with `digits`, that many significant digits (p-values: 0.0000000000000051234)."""
    if x is None or isinstance(x, str):
        return "" if x is None else x
    if isinstance(x, (bool, np.bool_)):
        return str(bool(x)).lower()
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if not math.isfinite(x):
        return ""
    if digits is not None:
        return np.format_float_positional(float(x), precision=digits, unique=False, fractional=False, trim="-")
    return fmt_number(x) if exact else np.format_float_positional(float(x), precision=10, unique=True, trim="-")


def neutralise(text: str) -> str:
    """Stop spreadsheets from running a text cell as a formula (CSV injection)."""
    return "'" + text if text.startswith(FORMULA_START) else text


def to_csv_text(df: pd.DataFrame, exact: tuple[str, ...] = (), significant: tuple[str, ...] = ()) -> str:
    """The CSV text of a table (see the module docstring); `exact` columns keep every digit,
    `significant` ones get SIGNIFICANT_DIGITS significant digits."""
    out = pd.DataFrame(index=df.index)
    for col in df.columns:
        s, digits = df[col], SIGNIFICANT_DIGITS if col in significant else None
        if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
            out[col] = [plain_number(v, col in exact, digits) for v in s.tolist()]
        else:
            out[col] = ["" if (v is None or (isinstance(v, float) and math.isnan(v)))
                        else (plain_number(v, col in exact, digits) if isinstance(v, (int, float, np.bool_))
                              else neutralise(str(v)))
                        for v in s.tolist()]
    return out.to_csv(index=False, lineterminator="\n")


def csv_text(df: pd.DataFrame, schema: dict | None = None, significant: tuple[str, ...] = ()) -> str:
    """A table's CSV text; with a schema, in its column order and with its exact columns;
    `significant` columns (p-values) with SIGNIFICANT_DIGITS significant digits."""
    if schema is not None:
        df = df[[c for c in schema if c in df.columns]]
        exact = tuple(c for c, kind in schema.items() if kind.startswith("exact"))
    else:
        exact = ()
    return to_csv_text(df, exact, significant)


def write_csv(df: pd.DataFrame, path: str | Path, schema: dict | None = None, significant: tuple[str, ...] = ()) -> Path:
    """Atomically write a table (csv_text) at `path`, a file outside any owned folder (a study's
    tables go through owned.OwnedFolder.write_text); returns the path."""
    text = csv_text(df, schema, significant)
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


class TableError(DropcliError):
    """A study table that is not dropcli's own; nothing was written."""


def _parse(value: str, kind: str):
    optional = kind.endswith("?")
    kind = kind.rstrip("?")
    if value == "":
        if optional:
            return None
        raise ValueError("is empty")
    if kind == "int":
        if not PLAIN_NUMBER.fullmatch(value):
            raise ValueError(f"{value!r} is not a whole number")
        whole = int(value) if PLAIN_INT.fullmatch(value) and len(value) <= 40 else None
        if whole is None:
            x = decimal.Decimal(value)  # '55000.0', '5.5e4': a whole number as a spreadsheet or pandas may save it
            if not (x.is_finite() and x == x.to_integral_value()):  # exact: no float rounds 1e-400 to 0, ...993.0 to ...992
                raise ValueError(f"{value!r} is not a whole number")
            whole = int(x) if x == 0 or x.adjusted() < 40 else 2**64  # 1e5000: no 5,000-digit int to say it is too big
        if not -(2**63) <= whole < 2**63:  # a column of whole numbers is int64 (pandas raised OverflowError)
            raise ValueError(f"{value[:30]!r} is past the whole numbers a table holds (up to 2^63 - 1)")
        return whole
    if kind in ("float", "exact"):
        if not PLAIN_NUMBER.fullmatch(value):
            raise ValueError(f"{value!r} is not a number (a decimal point, not a comma; no spaces or '_')")
        try:
            x = float(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a number (a decimal point, not a comma)") from None
        if said := not_held(value):
            raise ValueError(f"{value!r} is not a number a float can hold: {said}")
        if not math.isfinite(x):
            raise ValueError(f"{value!r} is not a finite number")
        return x
    return value


def _words(text: str) -> list[str]:
    """The numbers of a per-layer cell, between ASCII spaces (str.split also splits at line breaks,
    \x1c-\x1f and every Unicode space, which no file dropcli writes holds)."""
    return [t for t in text.split(" ") if t]


def _keep_label(text: str) -> str:
    """A keep_probs cell as dropcli writes it (config.fmt_keep): '1.0' -> '1', '0.70' -> '0.7';
    each number by the rule of every number cell (config.PLAIN_NUMBER: no '0.5_5', no '٠.٥')."""
    try:
        if _words(text):
            return fmt_keep(tuple(check_keep(_parse(t, "float")) for t in _words(text)))
    except ValueError:
        pass
    raise ValueError(f"{text!r} is not keep probabilities (numbers in (0, 1], one per layer, spaces between)")


def _widths_label(text: str) -> str:
    """A hidden cell as dropcli writes it: '512 512' (whole numbers, '512.0' read as 512)."""
    try:
        if _words(text):
            return " ".join(str(_parse(t, "int")) for t in _words(text))
    except ValueError:
        pass
    raise ValueError(f"{text!r} is not layer widths (whole numbers, spaces between)")


CANONICAL = {"keep_probs": _keep_label, "hidden": _widths_label}  # cells read as dropcli writes them


def read_table(path: str | Path, schema: dict, what: str = "dropcli study table",
               derived: dict | None = None) -> pd.DataFrame:
    """Read a table written with `schema`, or raise TableError naming the file, row and column.
    Rows are numbered as a spreadsheet shows them (the header is row 1). An older table's columns
    are read under their new names (RENAMED); a column it lacks that was added since (ADDED) reads
    as that column's old value on every row; `derived`: {column: function(parsed columns) ->
    values} for columns an older file lacks and implies (RUNS_DERIVED). The file is never rewritten."""
    path = Path(path)
    fix = "restore it from a copy, or point --out at a new folder"
    try:
        regular_file(path, what, fix)
    except DropcliError as e:
        raise TableError(str(e)) from None
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark: a spreadsheet saved it as "CSV UTF-8"
    except UnicodeDecodeError:
        raise TableError(f"{path} is not UTF-8 text, so not a {what}; {fix}") from None
    except OSError as e:
        raise TableError(f"cannot read {path}: {e.strerror}") from None
    rows = list(csv.reader(io.StringIO(text, newline="")))
    if not rows or not rows[0]:
        raise TableError(f"{path} has no header row, so it is not a {what}; {fix}")
    header = [RENAMED[c] if c in RENAMED and c not in schema else c for c in rows[0]]
    if len(header) == 1 and (";" in header[0] or "\t" in header[0]):
        raise TableError(f"{path} is not comma-separated (saved with ';' or tabs?); save it as CSV with commas, or {fix}")
    added = [c for c in ADDED if c in schema and c not in header]  # written before the column existed
    if added:
        header = header + added
        rows = [header] + [row + [ADDED[c] for c in added] if row else row for row in rows[1:]]
    implied = [c for c in (derived or {}) if c in schema and c not in header]  # derived from other columns
    missing = [c for c in schema if c not in header and c not in implied]
    unknown = [c for c in header if c not in schema]
    if missing or unknown or len(set(header)) != len(header):
        problem = (f"lacks column {missing[0]!r}" if missing else f"has an unknown column {unknown[0]!r}" if unknown
                   else "repeats a column")
        raise TableError(f"{path} {problem}, so it is not a {what}; {fix}")
    columns: dict[str, list] = {c: [] for c in header}
    for r, row in enumerate(rows[1:], start=2):
        if not row:
            raise TableError(f"{path} row {r} is empty; delete it, or {fix}")
        if len(row) != len(header):
            raise TableError(f"{path} row {r} has {len(row)} cells for {len(header)} columns "
                             f"(a decimal comma or a stray separator?); {fix}")
        for c, value in zip(header, row):
            try:
                v = _parse(value, schema[c])
                v = CANONICAL[c](v) if v is not None and c in CANONICAL else v  # as a spreadsheet may have saved it
            except ValueError as e:
                raise TableError(f"{path} row {r}, column {c}: {e}; {fix}") from None
            if c in CHOICES and v not in CHOICES[c]:
                raise TableError(f"{path} row {r}, column {c}: {v!r} is not one of {', '.join(CHOICES[c])}; {fix}")
            low, high = RANGES.get(c, (None, None)) if not c.endswith("accuracy") else (0, 1)
            if v is not None and ((low is not None and v < low) or (high is not None and v > high)):
                raise TableError(f"{path} row {r}, column {c}: {v!r} is outside {low}..{'' if high is None else high}; {fix}")
            columns[c].append(v)
    for c in implied:
        columns[c] = derived[c](columns)
    frame = pd.DataFrame({c: _column(columns[c], schema[c]) for c in schema})
    return frame


def _column(values: list, kind: str) -> pd.Series:
    kind = kind.rstrip("?")
    if kind == "int":
        if any(v is None for v in values):
            return pd.Series([math.nan if v is None else float(v) for v in values], dtype="float64")
        return pd.Series(values, dtype="int64")
    if kind in ("float", "exact"):
        return pd.Series([math.nan if v is None else v for v in values], dtype="float64")
    return pd.Series(values, dtype=object)


def cell_columns(c: TrainConfig) -> dict:
    """The CELL_SCHEMA columns of a cell."""
    return {"keep_probs": c.keep_label, "keep_prob_mean": c.mean_keep, "input_keep_prob": c.input_keep_prob,
            "max_norm": c.max_norm, "train_size": c.n_train, "seed": c.seed}


def config_columns(c: TrainConfig) -> dict:
    """The runs.csv columns besides the cell key (cell_columns, lr, hidden) that the cell's config
    alone decides: the settings a study gives every cell."""
    return {"subset": c.sampling, "validation_size": c.validation_size, "epochs": c.epochs, "eval_every": c.eval_interval, "init": c.init,
            "batch_size": c.batch_size, "dataset": c.dataset, "mc_samples": c.mc_samples, "precision": c.precision}


def setting_columns(c: TrainConfig) -> dict:
    """config_columns and keep_prob_mean, as study.check_rows compares them (a row whose values
    differ was made by another study). A tuple lists the values that all mean this setting: a
    subset of the whole training part is all of it, whether the row says 'all' (no --train-sizes;
    earlier dropcli) or the subset rule (--train-sizes naming the whole part, which study.json
    records as the same size, so its cells come back from it as 'all'). On the bundled MNIST (no
    --data-dir, whose files may hold more than 60,000 images) every rule means it: the study may have
    begun with another --subset, which then chose nothing (identity.without_inert); a row that does
    not record its validation_size (older files) is read by the narrower rule (setting_mismatch)."""
    whole = c.n_train == TRAIN_SPLIT - c.validation_size
    rules = ("all", *SUBSETS) if c.data_dir is None else (c.sampling, "all", c.subset)
    meanings = {"subset": tuple(dict.fromkeys((c.sampling, *rules)))} if whole else {}
    return {"keep_prob_mean": c.mean_keep, **config_columns(c), **meanings}


def setting_mismatch(c: TrainConfig, settings: dict, column: str, got, recorded: bool = True):
    """None where a row's value `got` in `column` means cell c's setting (settings: setting_columns(c),
    where a tuple lists the values that all mean it); else the value the study gives the cell.
    recorded: whether the row records its validation_size. A row of a file written before that
    column (False) is read with the study's validation_size and the narrower subset rule: the
    cell's own rule, or 'all'."""
    if column not in settings or (column == "validation_size" and not recorded):
        return None
    accepted = settings[column] if isinstance(settings[column], tuple) else (settings[column],)
    if column == "subset" and not recorded:
        accepted = tuple(a for a in accepted if a in (c.sampling, "all", c.subset))
    numeric = isinstance(got, (int, float)) and isinstance(accepted[0], (int, float))
    held = math.isclose(got, accepted[0], rel_tol=1e-9) if numeric else str(got) in map(str, accepted)
    return None if held else accepted[0]


def run_row(r, finished_at: str, workers: int = 1, threads: int | None = None) -> dict:
    """One runs.csv row (RUNS_SCHEMA's columns, in order): a train.RunResult with the config and
    provenance that made it. Accuracies are fractions (0-1); seconds are wall time of the group.
    workers: processes that trained the study side by side (1: this one alone); threads: torch
    threads of the process that trained the cell (default: this process's, torch.get_num_threads)."""
    import torch

    from dropcli.provenance import code_version, cpu_model

    c = r.config
    values = {**cell_columns(c), **config_columns(c), "hidden": fmt_hidden(c.hidden), "lr": c.lr,
              "epochs_run": r.epochs_run, "steps": r.steps_run, "test_images": r.test_images,
              "final_cost": r.final_cost, "train_accuracy": r.train_accuracy,
              "validation_accuracy": r.validation_accuracy, "test_accuracy": r.test_accuracy,
              "generalization_gap": r.train_accuracy - r.test_accuracy, "test_loss": r.test_loss,
              "best_epoch": r.best_epoch, "best_step": r.best_step, "test_accuracy_at_best": r.test_accuracy_at_best,
              "test_accuracy_mc": r.test_accuracy_mc, "group_size": r.parallel_models,
              "group_train_seconds": r.train_seconds, "device": r.device, "cpu": cpu_model(), "engine": r.engine,
              "workers": workers, "threads": torch.get_num_threads() if threads is None else threads,
              "status": r.status, "finished_at": finished_at,
              "dropcli_version": code_version(), "torch_version": torch.__version__}
    assert set(values) == set(RUNS_SCHEMA), "run_row must give every RUNS_SCHEMA column and no other"
    return {k: values[k] for k in RUNS_SCHEMA}


def history_rows(r) -> list[dict]:
    """HISTORY_SCHEMA rows of a train.RunResult: one per validation."""
    head = {**cell_columns(r.config), "lr": r.config.lr, "hidden": fmt_hidden(r.config.hidden)}
    return [{**head, "epoch": h["epoch"], "step": h["step"], "cost": h["cost"], "train_batch_accuracy": h["train_batch_accuracy"],
             "validation_accuracy": h["validation_accuracy"], "group_epoch_seconds": h["seconds"]} for h in r.history]


KEY_COLUMNS = ("keep_probs", "input_keep_prob", "max_norm", "train_size", "seed", "lr", "hidden")  # a row's cell


def row_cell_id(row) -> str:
    """The exact cell key (grid.cell_id) of one row of runs.csv or history.csv (a dict or a Series)."""
    mn = row["max_norm"]
    return cell_id(row["keep_probs"], row["input_keep_prob"], None if (mn is None or math.isnan(mn)) else mn,
                   row["train_size"], row["seed"], row["lr"], row["hidden"])


def row_cell_ids(table: pd.DataFrame) -> pd.Series:
    """Each row's exact cell key (see grid.cell_id)."""
    cols = table[list(KEY_COLUMNS)]
    return pd.Series([row_cell_id(dict(zip(KEY_COLUMNS, values))) for values in cols.itertuples(index=False)],
                     index=table.index, dtype=object)


def _first_repeat(keys: pd.Series) -> tuple[int, str] | None:
    """(spreadsheet row, key) of the first row whose key an earlier row has, or None."""
    dup = keys.duplicated()
    if not dup.any():
        return None
    i = int(np.flatnonzero(dup.to_numpy())[0])
    return i + 2, keys.iloc[i]


def read_runs(path: str | Path) -> pd.DataFrame:
    """A study's runs.csv (RUNS_SCHEMA, older column names migrated, older files' steps, eval_every and
    best_step derived: RUNS_DERIVED), checked: schema, ranges, a test accuracy in every finished row, and every cell once. Raises TableError (one
    line: file, row, column and the fix) for anything else."""
    runs = read_table(path, RUNS_SCHEMA, "dropcli runs table", RUNS_DERIVED)
    ok = runs["status"] == "ok"
    checks = [(ok & runs[c].isna(), c, "is empty in a row whose status is ok (a finished cell has it)") for c in FINISHED]
    checks += [  # what one training's row cannot hold together
        (~ok & runs["test_accuracy"].notna(), "test_accuracy", "in a row whose status is diverged (a diverged cell "
                                                                "is not evaluated)"),
        (ok & (runs["epochs_run"] < 1), "epochs_run", "in a row whose status is ok (a finished cell trained at least "
                                                        "one epoch)"),
        (runs["epochs_run"] > runs["epochs"], "epochs_run", "is more than the row's epochs"),
        (runs["best_epoch"] > runs["epochs_run"], "best_epoch", "is past the row's epochs_run"),
        (runs["best_step"] > runs["steps"], "best_step", "is past the row's steps")]
    for wrong, column, what in checks:
        if wrong.any():
            i = int(np.flatnonzero(wrong.to_numpy())[0])
            value = runs[column].iloc[i]
            raise TableError(f"{path} row {i + 2}, column {column}: {'' if pd.isna(value) else f'{value:g} '}{what}; "
                             "restore the file from a copy")
    repeat = _first_repeat(row_cell_ids(runs))
    if repeat:
        raise TableError(f"{path} row {repeat[0]} repeats the cell {repeat[1]}; delete one of the two rows, "
                         "or restore the file from a copy")
    return runs


def read_history(path: str | Path, settings: dict | None = None) -> pd.DataFrame:
    """A study's history.csv (HISTORY_SCHEMA, older column names migrated), checked: schema, and every
    cell's step once. settings: the study's (study.json's "settings"), from which a file written
    before the step, lr and hidden columns implies them (history_derived); without them such a file
    is refused. Raises TableError (one line: file, row, column and the fix) for anything else."""
    history = read_table(path, HISTORY_SCHEMA, "dropcli history table", history_derived(settings))
    repeat = _first_repeat(row_cell_ids(history) + "|step=" + history["step"].astype(str))
    if repeat:
        raise TableError(f"{path} row {repeat[0]} repeats step {repeat[1].rsplit('=', 1)[1]} of a cell; "
                         "restore the file from a copy")
    return history


def check_history(history: pd.DataFrame, runs: pd.DataFrame, path: str | Path) -> None:
    """Refuse (TableError, one line) a history.csv (read_history) that is not the record of the cells
    runs.csv (read_runs) lists: a row past its cell's steps or epochs_run, or a finished cell (status
    ok) without each of its validations, one every eval_every steps and after the last:
    ceil(steps / eval_every) rows (a row deleted by hand would drop a seed from the curves)."""
    done = runs.assign(_key=row_cell_ids(runs)).drop_duplicates("_key").set_index("_key")
    keys = row_cell_ids(history)
    for i, (key, step, epoch) in enumerate(zip(keys, history["step"], history["epoch"])):
        if key in done.index:
            for column, value, limit in (("step", step, "steps"), ("epoch", epoch, "epochs_run")):
                if value > done.at[key, limit]:
                    raise TableError(f"{path} row {i + 2}, column {column}: {value} is past the {done.at[key, limit]} "
                                     f"{limit} of its cell in runs.csv; restore the file from a copy")
    counts = keys.value_counts()
    for key, row in done[done["status"] == "ok"].iterrows():
        want, have = math.ceil(row["steps"] / row["eval_every"]), int(counts.get(key, 0))
        if have != want:
            raise TableError(f"{path} holds {have} validations of the finished cell {key}, not the {want} its runs.csv "
                             f"row makes (one every {row['eval_every']} of its {row['steps']} steps, and after the last); "
                             "restore the file from a copy")


def frame(rows: list[dict], schema: dict) -> pd.DataFrame:
    """Rows (dicts) as a table with the schema's columns; numeric columns as float64 (NaN for None)."""
    df = pd.DataFrame(rows, columns=list(schema))
    for c, kind in schema.items():
        if kind.rstrip("?") in ("float", "exact") or kind == "int?":
            df[c] = pd.to_numeric(df[c].astype(object).where(df[c].notna(), None), errors="coerce").astype("float64")
    return df
