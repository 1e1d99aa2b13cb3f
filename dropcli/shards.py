"""A study split over machines: a fixed partition of its cells into shards, and the exact merge.

    $ dropcli ablate --grid --seeds 10 --out DIR --shard 2/8     # on eight machines, K = 1..8
    $ dropcli merge DIR                                          # when they are done

Shard K of N is a fixed, deterministic set of the grid's cells, balanced by work (the costliest
cells are dealt out first, each to the least loaded shard, so every shard mixes expensive and
cheap cells). It writes only its own folder, DIR/shards/K-of-N/, a study folder of its own with
its own lock and resume, so no two machines ever write one file and nothing relies on file locks
over NFS. `merge` combines the shards (and any rows already in DIR) into DIR's tables, dropping
cells found twice with identical results, refusing cells found twice with different ones, and
naming the cells and shards still missing. It rebuilds everything each time: rerunning it is safe.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pandas as pd

from dropcli.config import TrainConfig, cell_id_of
from dropcli.errors import DropcliError, UsageError
from dropcli.provenance import code_version

SHARD_DIR = re.compile(r"^(\d+)-of-(\d+)$")
PROVENANCE = ("train_seconds", "parallel_models", "device", "cpu", "engine", "finished_at", "dropcli_version",
              "torch_version", "seconds")  # how and when a cell ran: not part of its result


def parse_shard(text: str) -> tuple[int, int]:
    """'2/8' -> (2, 8); 'slurm' reads SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT (an array 1-N)."""
    if text == "slurm":
        try:
            k, n = int(os.environ["SLURM_ARRAY_TASK_ID"]), int(os.environ["SLURM_ARRAY_TASK_COUNT"])
        except (KeyError, ValueError):
            raise ValueError("--shard slurm needs SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT (run it in an "
                             "sbatch --array=1-N job), or give --shard K/N") from None
    else:
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if not m:
            raise ValueError(f"--shard takes K/N, e.g. --shard 2/8 (got {text!r})")
        k, n = int(m.group(1)), int(m.group(2))
    if not 1 <= k <= n:
        raise ValueError(f"--shard {k}/{n}: K must be in 1..N")
    return k, n


def cost(c: TrainConfig) -> float:
    """Relative work of a cell: its training steps and its forward passes."""
    return c.epochs * (c.steps_per_epoch + c.validation_size / c.batch_size / 3) * sum(
        i * o for i, o in zip(c.sizes[:-1], c.sizes[1:]))


def partition(cells: list[TrainConfig], n: int) -> list[list[TrainConfig]]:
    """N shards of the cells, balanced by cost (longest first, each to the least loaded shard; ties
    by shard number), each in the grid's own order. Depends on the grid alone."""
    loads, members = [0.0] * n, [[] for _ in range(n)]
    order = sorted(range(len(cells)), key=lambda i: (-cost(cells[i]), i))
    for i in order:
        s = min(range(n), key=lambda j: (loads[j], j))
        loads[s] += cost(cells[i])
        members[s].append(i)
    return [[cells[i] for i in sorted(m)] for m in members]


def shard_folder(out: Path, k: int, n: int) -> Path:
    return out / "shards" / f"{k}-of-{n}"


def shard_identity(identity: dict, k: int, n: int) -> dict:
    """A shard's study.json: the whole study's identity, the shard, and the code that runs it (all
    shards of a study must run the same dropcli)."""
    return {**identity, "shard": {"index": k, "count": n}, "dropcli_version": code_version()}


def _difference(a: dict, b: dict) -> str:
    for section in ("settings", "grid"):
        for key in sorted(set(a.get(section, {})) | set(b.get(section, {}))):
            if json.dumps(a.get(section, {}).get(key)) != json.dumps(b.get(section, {}).get(key)):
                return f"{key} {json.dumps(a[section].get(key))} there, {json.dumps(b[section].get(key))} here"
    if a.get("dropcli_version") != b.get("dropcli_version"):
        return f"dropcli {a.get('dropcli_version')} there, {b.get('dropcli_version')} here"
    return "a different study format"


def merge(out: Path) -> dict:
    """Combine DIR/shards/*/ (and DIR's own rows) into DIR's runs.csv and history.csv; returns
    {"cells", "merged", "duplicates", "missing": [cell ids], "rerun": [shard numbers], "shards"}."""
    from dropcli.study import STUDY_FILE, read_identity
    from dropcli.tables import HISTORY_SCHEMA, RUNS_SCHEMA, read_history, read_runs, row_cell_ids, write_csv

    folders = sorted((p for p in (out / "shards").glob("*") if p.is_dir() and SHARD_DIR.match(p.name)),
                     key=lambda p: int(SHARD_DIR.match(p.name).group(1))) if (out / "shards").is_dir() else []
    if not folders:
        raise UsageError(f"{out} has no shards (folders shards/K-of-N/); run 'dropcli ablate ... --out {out} --shard K/N' first")
    identities = {}
    for f in folders:
        ident = read_identity(f)
        if ident is None or "shard" not in ident:
            raise DropcliError(f"{f} is not a dropcli shard (no study.json with a shard); remove it from {out / 'shards'}")
        identities[f] = ident
    first = identities[folders[0]]
    study = {k: v for k, v in first.items() if k not in ("shard", "dropcli_version")}
    counts = {ident["shard"]["count"] for ident in identities.values()}
    if len(counts) > 1:
        raise DropcliError(f"{out / 'shards'} mixes shards of {' and '.join(map(str, sorted(counts)))}-way splits; "
                           "keep one split's folders")
    for f, ident in identities.items():
        if {k: v for k, v in ident.items() if k != "shard"} != {**study, "dropcli_version": first["dropcli_version"]}:
            raise DropcliError(f"{f} is a shard of another study ({_difference(ident, first)}); "
                               f"remove it, or rerun that shard with the same command and dropcli")
    top = read_identity(out)
    if top is not None and json.dumps(top, sort_keys=True) != json.dumps(study, sort_keys=True):
        raise DropcliError(f"{out / STUDY_FILE} describes another study than its shards; merge into a new folder")
    n = counts.pop()
    from dropcli.study import cells_of

    cells = cells_of(study)
    sources = [(f"shard {identities[f]['shard']['index']}", f) for f in folders]
    if (out / "runs.csv").exists():
        sources.insert(0, ("the merged study", out))
    runs, history = [], []
    for name, folder in sources:
        if (folder / "runs.csv").exists():
            r = read_runs(folder / "runs.csv")
            runs.append(r.assign(_source=name))
            if (folder / "history.csv").exists():
                h = read_history(folder / "history.csv")
                history.append(h[row_cell_ids(h).isin(set(row_cell_ids(r)))].assign(_source=name))
    all_runs = pd.concat(runs, ignore_index=True) if runs else pd.DataFrame(columns=[*RUNS_SCHEMA, "_source"])
    all_runs["_id"] = row_cell_ids(all_runs) if len(all_runs) else []
    kept, duplicates = _deduplicate(all_runs)
    hist = pd.concat(history, ignore_index=True) if history else pd.DataFrame(columns=[*HISTORY_SCHEMA, "_source"])
    if len(hist):
        hist["_id"] = row_cell_ids(hist)
        winners = dict(zip(kept["_id"], kept["_source"]))
        hist = hist[[winners.get(i) == s for i, s in zip(hist["_id"], hist["_source"])]]
    order = {cell_id_of(c): i for i, c in enumerate(cells)}
    kept = kept.assign(_order=kept["_id"].map(order).fillna(len(order))).sort_values(["_order", "_id"], kind="stable")
    from dropcli.files import atomic_write_text

    atomic_write_text(out / STUDY_FILE, json.dumps(study, indent=2, sort_keys=True) + "\n")
    if len(hist):
        hist = hist.assign(_order=hist["_id"].map(order).fillna(len(order))).sort_values(["_order", "_id", "epoch"],
                                                                                           kind="stable")
        write_csv(hist[list(HISTORY_SCHEMA)], out / "history.csv", HISTORY_SCHEMA)
    write_csv(kept[list(RUNS_SCHEMA)], out / "runs.csv", RUNS_SCHEMA)
    missing, rerun = [], []
    done = set(kept["_id"])
    for k, members in enumerate(partition(cells, n), start=1):
        lacking = [cell_id_of(c) for c in members if cell_id_of(c) not in done]
        if lacking:
            rerun.append(k)
            missing += lacking
    return {"cells": len(cells), "merged": len(kept), "duplicates": duplicates, "missing": missing, "rerun": rerun,
            "shards": n, "identity": study}


def _deduplicate(runs: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """One row per cell: copies that agree on every result column are dropped; copies that differ
    are refused."""
    if runs.empty:
        return runs, 0
    result_columns = [c for c in runs.columns if c not in PROVENANCE and not c.startswith("_")]
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
