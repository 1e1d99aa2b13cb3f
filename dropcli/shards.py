"""A study split over machines: a fixed partition of its cells into shards, and the exact merge.

    $ dropcli ablate --grid --seeds 10 --out DIR --shard 2/8     # on eight machines, K = 1..8
    $ dropcli merge DIR                                          # when they are done

Shard K of N is a fixed, deterministic set of the grid's cells (grid.partition, balanced by work).
It writes only its own folder, DIR/shards/K-of-N/, a study folder of its own with its own lock
and resume, so no two machines ever write one file and nothing relies on file locks over NFS.
`merge` combines the shards (and any rows already in DIR) into DIR's tables, dropping cells found
twice with identical results, refusing cells found twice with different ones and rows of cells
that are not in their shard's part of the grid, and naming the cells and shards still missing. It
rebuilds everything each time: rerunning it is safe.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pandas as pd

from dropcli.config import PLAIN_INT, too_long, trim
from dropcli.errors import DropcliError, UsageError
from dropcli.grid import cell_id_of, grid_of, partition
from dropcli.identity import describe_difference, same
from dropcli.plan import SHARD_DIR, StudyPlan, make_plan
from dropcli.study import (
    SHARDS,
    STUDY_FILE,
    check_rows,
    history_of,
    read_identity,
    study_folder,
)
from dropcli.tables import HISTORY_SCHEMA, RUNS_SCHEMA, check_history, csv_text, read_runs

PROVENANCE = ("group_train_seconds", "group_size", "device", "cpu", "engine", "workers", "threads", "finished_at",
              "dropcli_version", "torch_version", "group_epoch_seconds")  # how and when a cell ran: not part of its result
LABELS = ("subset",)  # a setting with several names for one value (tables.setting_columns), which check_rows has checked


def parse_shard(text: str) -> tuple[int, int]:
    """'2/8' -> (2, 8); 'slurm' reads SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT (an array 1-N).
    Raises ValueError naming --shard."""
    if text == "slurm":
        k, n = (trim(os.environ.get(v, "")) for v in ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT"))
        if not (PLAIN_INT.fullmatch(k) and PLAIN_INT.fullmatch(n)):
            raise ValueError("--shard slurm needs SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT (run it in an "
                             "sbatch --array=1-N job), or give --shard K/N")
    else:
        k, _, n = (trim(p) for p in text.partition("/"))
        if not (PLAIN_INT.fullmatch(k) and PLAIN_INT.fullmatch(n)):  # decimal digits, as every number option
            raise ValueError(f"--shard takes K/N, e.g. --shard 2/8 (got {text!r})")
    if said := too_long(k, n):
        raise ValueError(f"--shard {said}")
    k, n = int(k), int(n)
    if n < 1:
        raise ValueError(f"--shard {k}/{n}: N, the number of shards, must be at least 1, e.g. --shard 1/2")
    if not 1 <= k <= n:
        raise ValueError(f"--shard {k}/{n}: K must be in 1..{n}")
    return k, n


def shard_identities(out: Path) -> dict[Path, dict]:
    """{shard folder: its study.json} of out/shards/K-of-N/, in shard order, each checked to be a
    shard of one study run by one dropcli. Raises UsageError (no shards) or DropcliError."""
    base = out / SHARDS
    if base.is_symlink():
        raise DropcliError(f"{base} is a symbolic link; dropcli never reads shards through a link; replace it "
                           "with the shards' folder")
    folders = sorted((p for p in base.iterdir() if re.fullmatch(SHARD_DIR, p.name)),
                     key=lambda p: int(re.fullmatch(SHARD_DIR, p.name).group(1))) if base.is_dir() else []
    for f in folders:  # a shard's name on a link or a file is refused, not passed over as a missing shard
        if f.is_symlink() or not f.is_dir():
            raise DropcliError(f"{f} is {'a symbolic link' if f.is_symlink() else 'not a folder'}; dropcli reads "
                               f"shards only from the folders it made there: replace it with the shard's folder")
    if not folders:
        raise UsageError(f"{out} has no shards (folders shards/K-of-N/); run 'dropcli ablate ... --out {out} --shard K/N' first")
    identities = {}
    for f in folders:
        ident = read_identity(f)
        k, n = map(int, re.fullmatch(SHARD_DIR, f.name).groups())
        if ident is None or ident.get("shard") != {"index": k, "count": n}:
            raise DropcliError(f"{f} is not dropcli's shard {k} of {n} (its study.json names another or none); "
                               f"remove it from {base}")
        identities[f] = ident
    first = next(iter(identities.values()))
    counts = {ident["shard"]["count"] for ident in identities.values()}
    if len(counts) > 1:
        raise DropcliError(f"{base} mixes shards of {' and '.join(map(str, sorted(counts)))}-way splits; "
                           "keep one split's folders")
    for f, ident in identities.items():
        if not same(ident, first, ignore=("shard",)):
            raise DropcliError(f"{f} is a shard of another study ({describe_difference(ident, first, now='here')}); "
                               f"remove it, or rerun that shard with the same command and dropcli")
    return identities


def merge_plan(out: Path) -> tuple[StudyPlan, dict[Path, dict]]:
    """The StudyPlan of the whole study whose shards are in out/shards, and the shards' identities.
    Shards written by an earlier dropcli (another study.json format) are refused."""
    identities = shard_identities(out)
    first = next(iter(identities.values()))
    study = {k: v for k, v in first.items() if k not in ("shard", "dropcli_version")}
    spec, base = grid_of(study)
    plan = make_plan(spec, base, out, data=study.get("data"))  # refuses a root that holds another study
    if not same(plan.identity, study):
        raise DropcliError(f"the shards in {out / SHARDS} were written by another dropcli "
                           f"({describe_difference(study, plan.identity, now='here')}); merge them with that version")
    return plan, identities


def _gather(plan: StudyPlan, identities: dict[Path, dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every shard's rows (and the root's own), each refused unless its cell is in that source's part."""
    n = next(iter(identities.values()))["shard"]["count"]
    parts = partition(list(plan.all_cells), n)
    sources = [(f"shard {ident['shard']['index']}", f, parts[ident["shard"]["index"] - 1])
               for f, ident in identities.items()]
    shard_of = {cell_id_of(c): (k, n) for k, part in enumerate(parts, start=1) for c in part}
    if (plan.root / "runs.csv").exists():
        sources.insert(0, ("the merged study", plan.root, list(plan.all_cells)))
    runs, history = [], []
    for name, folder, cells in sources:
        if (folder / "runs.csv").exists():
            r = read_runs(folder / "runs.csv")
            ids = check_rows(r, folder / "runs.csv", cells, shard_of)
            runs.append(r.assign(_source=name, _id=ids))
            if (folder / "history.csv").exists():
                h = history_of(folder)
                hid = check_rows(h, folder / "history.csv", cells, shard_of)
                check_history(h, r, folder / "history.csv")
                history.append(h.assign(_source=name, _id=hid)[hid.isin(set(ids))])
    all_runs = pd.concat(runs, ignore_index=True) if runs else pd.DataFrame(columns=[*RUNS_SCHEMA, "_source", "_id"])
    hist = pd.concat(history, ignore_index=True) if history else pd.DataFrame(columns=[*HISTORY_SCHEMA, "_source", "_id"])
    return all_runs, hist


def merge(out: Path) -> dict:
    """Combine out/shards/*/ (and out's own rows) into out's runs.csv and history.csv.

    Returns {"cells", "merged", "duplicates", "missing": [cell ids], "rerun": [shard numbers],
    "shards" (the study's N), "found" (shard folders read), "identity"}. Raises UsageError (no shards; a root holding another study) and
    DropcliError (foreign shards or rows, conflicting copies of a cell, unwritable files)."""
    plan, identities = merge_plan(out)
    all_runs, hist = _gather(plan, identities)
    kept, duplicates = _deduplicate(all_runs)
    if len(hist):
        winners = dict(zip(kept["_id"], kept["_source"]))
        hist = hist[[winners.get(i) == s for i, s in zip(hist["_id"], hist["_source"])]]
    order = {cell_id_of(c): i for i, c in enumerate(plan.all_cells)}
    kept = kept.assign(_order=kept["_id"].map(order)).sort_values(["_order"], kind="stable")
    folder = study_folder(out)
    if read_identity(out) is None:
        folder.write_text(STUDY_FILE, json.dumps(plan.identity, indent=2, sort_keys=True) + "\n")
    if len(hist):
        hist = hist.assign(_order=hist["_id"].map(order)).sort_values(["_order", "step"], kind="stable")
        folder.write_text("history.csv", csv_text(hist[list(HISTORY_SCHEMA)], HISTORY_SCHEMA))
    folder.write_text("runs.csv", csv_text(kept[list(RUNS_SCHEMA)], RUNS_SCHEMA))
    n = next(iter(identities.values()))["shard"]["count"]
    done, missing, rerun = set(kept["_id"]), [], []
    for k, members in enumerate(partition(list(plan.all_cells), n), start=1):
        lacking = [cell_id_of(c) for c in members if cell_id_of(c) not in done]
        if lacking:
            rerun.append(k)
            missing += lacking
    return {"cells": len(plan.all_cells), "merged": len(kept), "duplicates": duplicates, "missing": missing,
            "rerun": rerun, "shards": n, "found": len(identities), "identity": plan.identity}


def _deduplicate(runs: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """One row per cell: copies that agree on every result column are dropped; copies that differ
    are refused."""
    if runs.empty:
        return runs, 0
    result_columns = [c for c in runs.columns if c not in PROVENANCE + LABELS and not c.startswith("_")]
    keep, dropped = [], 0
    for cell, rows in runs.groupby("_id", sort=False):
        if len(rows) > 1:
            values = rows[result_columns].astype(object).where(rows[result_columns].notna(), None)
            if len({tuple(v) for v in values.itertuples(index=False)}) > 1:
                where = " and ".join(rows["_source"].astype(str).unique())
                raise DropcliError(f"the cell {cell} has different results in {where}; delete the wrong copy "
                                   "(its shard folder, then rerun that shard) and merge again")
            dropped += max(0, int((rows["_source"] != "the merged study").sum()) - 1)  # merge's own copy is no duplicate
        keep.append(rows.index[0])
    return runs.loc[keep], dropped
