"""A study folder: what it holds, who may write it, and which rows it may hold.

    results/studies/<grid>-<hash>/      (or --out DIR)
      study.json    the grid, settings and data: a different study pointed at the folder is refused
      runs.csv      one row per finished cell;  history.csv  one row per cell and epoch
      summary.csv, ablation.png, differences.png, curves.png, report.html   rebuilt by `report`
      .dropcli-manifest.json   the files dropcli wrote here: the only ones it replaces or deletes

A folder is claimed before any training: it must be new, empty, or this same study. Each lockstep
group is committed as it ends (commits.py: history.csv first and runs.csv last, atomic rewrites), so a
cell listed in runs.csv always has its history, and a rerun of the same command skips it. Every row
read back must belong to the study's grid (and to its shard): a foreign row refuses the file.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pandas as pd

from dropcli.config import TrainConfig
from dropcli.errors import DropcliError, StudyMismatch, UsageError
from dropcli.files import claim_folder, is_temporary, tracked_by_git
from dropcli.grid import STUDY_FORMAT, cell_id_of, cells_of
from dropcli.identity import describe_difference, grows, lifted, regrids, role, same
from dropcli.owned import MANIFEST, OwnedFolder
from dropcli.schemas import read_study_json
from dropcli.tables import (
    TableError,
    read_history,
    read_runs,
    row_cell_ids,
    setting_columns,
    setting_mismatch,
)

STUDY_FILE = "study.json"
# a study's own files: in a folder written before manifests, these are dropcli's (OwnedFolder legacy)
OUTPUTS = ("runs.csv", "history.csv", "summary.csv", "ablation.png", "curves.png", STUDY_FILE)
TABLES = (STUDY_FILE, "runs.csv", "history.csv")  # what ablate (and a shard) and merge write
REPORT_FILES = ("summary.csv", "ablation.png", "differences.png", "curves.png", "report.html")  # what report writes
STUDIES = Path("results/studies")  # where new studies go by default; the committed ones live beside it
SHARDS = "shards"  # a sharded study's subfolder: shards/K-of-N/ (shards.py)


def study_folder(out: Path) -> OwnedFolder:
    """The OwnedFolder of a study: the manifest's files, or a legacy study's OUTPUTS."""
    return OwnedFolder(out, legacy=OUTPUTS)


def default_folder(identity: dict) -> Path:
    """results/studies/<cells>cells-<hash of the identity>: the same command resumes the same folder,
    and a new study never lands in a committed one."""
    grid = identity["grid"]
    cells = math.prod(len(v) for v in grid.values())
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:10]
    return STUDIES / f"{cells}cells-{digest}"


def read_identity(out: Path) -> dict | None:
    """out/study.json checked by its schema (schemas.read_study_json); None where there is none.
    Raises DropcliError for a file that is there but not a dropcli study.json."""
    path = out / STUDY_FILE
    return read_study_json(path) if path.exists() or path.is_symlink() else None


def readable_study(out: Path) -> dict:
    """The identity (study.json) of the whole study in `out` with a runs.csv to report, or refuse:
    a file, a missing folder or a folder that is no study (UsageError, exit 2); a study with no
    finished cell, rows without a study.json, a shard's folder (DropcliError, exit 1)."""
    if not out.is_dir():
        raise UsageError(f"{out} is {'a file' if out.exists() else 'not there'}; give a study's folder, the --out "
                         "of dropcli ablate (it holds study.json and runs.csv)")
    identity, path = read_identity(out), out / "runs.csv"
    if not path.exists():
        raise (DropcliError(f"{path} does not exist yet: no cell has finished; run or resume 'dropcli ablate --out {out}'")
               if identity else UsageError(f"{out} is not a dropcli study (no study.json, no runs.csv); give the --out "
                                           "of dropcli ablate"))
    if identity is None:
        raise DropcliError(f"{out} has no study.json, so its rows cannot be checked against a grid; "
                           "report reads only study folders written by dropcli ablate or merge")
    if identity.get("shard"):
        raise DropcliError(f"{out / STUDY_FILE} belongs to {role(identity)}, not to a whole study; report the "
                           "study's own folder (the one that holds shards/) after 'dropcli merge'")
    return identity


def check_folder(out: Path, identity: dict, fresh: bool, grow: bool = False) -> dict | None:
    """Refuse, reading only, a folder that cannot become this study's: another study (unless fresh;
    with grow, unless this one holds its finished cells: _check_regrid), a study of an earlier format,
    or a folder that holds files and no study. Shared by --dry-run and the run, so a preview and a run
    refuse the same folders. Returns the study.json it read (None: none). Raises StudyMismatch (exit 2)."""
    if not out.exists():
        return None
    if not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder; choose another --out")
    old = read_identity(out)
    if old is None:
        others = sorted(p.name for p in out.iterdir() if p.name not in (".lock", MANIFEST) and not is_temporary(p.name))
        if others and not (out / MANIFEST).exists():
            raise StudyMismatch(f"{out} is not a dropcli study (it holds {others[0]} and no study.json); "
                                "use a new or empty --out")
        return None
    if old.get("shard") != identity.get("shard"):
        raise StudyMismatch(f"{out / STUDY_FILE} belongs to {role(old)}, not to {role(identity)}; give the "
                            "study's own folder (the one that holds shards/), or another --out")
    if old.get("format") != STUDY_FORMAT:
        raise StudyMismatch(f"{out} holds a study written by an earlier dropcli (format {old.get('format')}); "
                            f"'dropcli report {out}' still reads it; run new cells in another --out")
    if not same(old, identity) and not fresh:
        _check_regrid(out, old, identity, grow)
    return old


def _check_regrid(out: Path, old: dict, new: dict, grow: bool) -> None:
    """Let a whole study of `ablate` (grow) take the folder of a study with other values on the same axes
    where every finished cell (runs.csv) is one of its cells: it grows it (identity.grows), or drops cells
    that never finished (a growth stopped before it trained). Else StudyMismatch naming what would work."""
    differs = describe_difference(lifted(old), lifted(new))
    if not regrids(old, new):
        raise StudyMismatch(f"{out} holds another study ({differs}); use another --out (a study there takes more "
                            "seeds or axis values, at the same settings)")
    if not grow:
        raise StudyMismatch(f"{out} holds this study with other grid values ({differs}); only a whole-study "
                            "'dropcli ablate' (no --shard, not slurm) changes them: run that first, or use another --out")
    if grows(old, new):  # every cell of old is one of new: none of its finished cells is left out
        return
    cells, path = {cell_id_of(c) for c in cells_of(new)}, out / "runs.csv"
    stray = [k for k in (row_cell_ids(read_runs(path)) if path.exists() else []) if k not in cells]
    if stray:
        raise StudyMismatch(f"{out} holds this study with other grid values ({differs}), and its finished cell "
                            f"{stray[0]} is not in this grid; give all its values and add to them, or use another --out")


def check_fresh(out: Path) -> bool:
    """Refuse, reading only, what --fresh would refuse in `out`: a listed file committed to git
    (UsageError), or one that dropcli may not delete (changed since written, or listed without its
    content: DropcliError, OwnedFolder.remove_all). True when there is a study to delete."""
    if not out.is_dir() or read_identity(out) is None:
        return False
    folder = study_folder(out)
    committed = sorted(n for n in folder.owned() if tracked_by_git(out / n.rstrip("/")))
    if committed:
        raise UsageError(f"{out / committed[0]} is committed to git; --fresh never deletes committed results, "
                         "use another --out")
    folder.check_removable()
    return True


def claim(out: Path, identity: dict, fresh: bool, grow: bool = False) -> OwnedFolder:
    """Make `out` this study's folder (check_folder, then write study.json), or refuse. With fresh,
    first delete the files the manifest lists (and nothing else); with grow, a study whose finished
    cells this one holds (check_folder) takes its study.json. Returns the folder's OwnedFolder."""
    old = check_folder(out, identity, fresh, grow)
    claim_folder(out)
    folder = study_folder(out)
    if fresh and check_fresh(out):
        folder.remove_all()
        old = None
    if old is None or not same(old, identity):
        folder.write_text(STUDY_FILE, json.dumps(identity, indent=2, sort_keys=True) + "\n")
    return folder


def check_rows(table: pd.DataFrame, path: Path, cells: list[TrainConfig], shard_of: dict | None = None) -> pd.Series:
    """Each row's cell key, refusing (TableError, one line) a row whose cell is not one of `cells`
    (the study's grid, or the shard's part of it): a foreign row would count in the summary.
    shard_of: {cell key: (K, N)} of the whole grid, to say which shard a row of another shard is of."""
    keys = row_cell_ids(table)
    allowed = {cell_id_of(c) for c in cells}
    for i, key in enumerate(keys):
        if key not in allowed:
            where = (f"which belongs to shard {shard_of[key][0]} of {shard_of[key][1]}, not to this one; delete the row"
                     if shard_of and key in shard_of else "which is not in the grid of the folder's study.json"
                     + ("" if len(allowed) else " (which is empty)") + ": if study.json was changed, restore it; "
                     "delete only a row another study made")
            raise TableError(f"{path} row {i + 2} holds the cell {key}, {where}, or restore the file from a copy")
    _check_settings(table, path, keys, cells)
    return keys


def _check_settings(table: pd.DataFrame, path: Path, keys: pd.Series, cells: list[TrainConfig]) -> None:
    """Refuse (TableError naming row and column) a row of a cell of the study whose other settings
    (tables.setting_columns: epochs, data set, batch size, ...) are not the ones the study gives it."""
    wanted = {cell_id_of(c): (c, setting_columns(c)) for c in cells}
    recorded = table["validation_size"].notna().tolist() if "validation_size" in table else [False] * len(table)
    for column in [c for c in setting_columns(cells[0]) if c in table] if cells else []:
        for i, (key, got) in enumerate(zip(keys, table[column].tolist())):
            if (want := setting_mismatch(*wanted[key], column, got, recorded[i])) is not None:
                raise TableError(f"{path} row {i + 2}, column {column}: {got!r} is not {want!r}, the setting this study "
                                 "gives the cell: if study.json was changed, restore it; delete only a row another study made")


def done_keys(out: Path, cells: list[TrainConfig]) -> set[str]:
    """Keys of the cells in out/runs.csv, each checked to be one of `cells` (check_rows)."""
    path = out / "runs.csv"
    return set(check_rows(read_runs(path), path, cells)) if path.exists() else set()


def unfinished(out: Path) -> str | None:
    """A note for a study folder whose grid has cells not yet in its runs.csv (a run stopped, a
    study grown), or None: the comparisons then rest on the seeds each pair has finished."""
    cells = cells_of(read_identity(out) or {})
    done = len(done_keys(out, cells))
    return None if done >= len(cells) else (f"{done} of {len(cells)} cells of this study have finished; the comparisons "
                                            f"use the seeds each pair shares (rerun its ablate command to finish it)")


def history_of(out: Path) -> pd.DataFrame:
    """out/history.csv, read with the settings of out/study.json (an older file's step, lr and
    hidden columns follow from them: tables.read_history)."""
    identity = read_identity(out)
    return read_history(out / "history.csv", identity["settings"] if identity else None)


def check_tables(out: Path, cells: list[TrainConfig]) -> None:
    """Refuse to resume into tables that are not dropcli's own, or hold foreign rows (before any training)."""
    done_keys(out, cells)
    if (out / "history.csv").exists():
        check_rows(history_of(out), out / "history.csv", cells)
