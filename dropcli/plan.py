"""One plan per study command: which cells, which folder, which identity, what is left to run.

    $ dropcli ablate --grid --out DIR --shard 2/8 --dry-run    # previews the same plan it would run

The CLI builds one StudyPlan (make_plan) and hands it down: `--dry-run`, the local run, Ray, the
Slurm scripts and `merge` all consume the same object, so a preview and a run cannot disagree.
Building it reads the folder and refuses what the run would refuse (another study, a folder that
is not a study, foreign rows), and writes nothing; `open_study` then locks and claims the folder
and recomputes the cells left under the lock.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from dropcli.config import EVAL_CHUNK, TrainConfig
from dropcli.errors import StudyMismatch, UsageError
from dropcli.grid import GridSpec, cell_id_of, expand, partition, study_identity
from dropcli.identity import describe_difference, lifted, regrids, same
from dropcli.owned import OwnedFolder
from dropcli.provenance import code_version
from dropcli.study import (
    REPORT_FILES,
    SHARDS,
    TABLES,
    check_folder,
    check_fresh,
    check_tables,
    claim,
    default_folder,
    done_keys,
    read_identity,
    study_folder,
)

SHARD_DIR = r"([1-9][0-9]*)-of-([1-9][0-9]*)"  # shards/K-of-N/, as dropcli names them (re.fullmatch: no "01-of-2", no "1-of-2\n")


def shard_folder(out: Path, k: int, n: int) -> Path:
    """Where shard K of N of the study in `out` writes: out/shards/K-of-N."""
    return out / SHARDS / f"{k}-of-{n}"


def shard_identity(identity: dict, k: int, n: int) -> dict:
    """A shard's study.json: the whole study's identity, the shard, and the code that runs it (all
    shards of a study must run the same dropcli)."""
    return {**identity, "shard": {"index": k, "count": n}, "dropcli_version": code_version()}


@dataclass(frozen=True)
class StudyPlan:
    """What one study command works on. `cells` are this command's (a shard's part, or all of the
    grid's), written to `folder` whose study.json is `folder_identity`; `todo` are those not yet in
    its runs.csv when the plan was made (all of them with fresh)."""

    spec: GridSpec
    base: TrainConfig
    root: Path  # the study's folder (--out)
    identity: dict  # the whole study's identity (root/study.json)
    all_cells: tuple[TrainConfig, ...]  # the grid's cells, in its order
    shard: tuple[int, int] | None
    cells: tuple[TrainConfig, ...]
    folder: Path
    folder_identity: dict
    todo: tuple[TrainConfig, ...]
    fresh: bool = False
    grow: bool = False  # a whole study that may add seeds or axis values to the one in its folder
    regrid: str | None = None  # how the folder's study differs (in grid values) where this one changes it

    @property
    def regrid_note(self) -> str | None:
        """One line on what the run does to a study in its folder whose grid values it changes; None otherwise."""
        done = len(self.cells) - len(self.todo)
        return (f"{self.folder} holds this study with other grid values ({self.regrid}): its {done} finished "
                f"cell{'s' if done != 1 else ''} stay, and the run makes study.json this grid") if self.regrid else None

    @property
    def cell_bytes(self) -> int:
        """Bytes one cell needs while training (the largest network of the plan; see cell_bytes)."""
        return max(cell_bytes(c) for c in self.cells) if self.cells else 0


def check_shards_agree(root: Path, identity: dict) -> None:
    """Refuse, reading only, a study folder whose shards/K-of-N/ hold shards of another study (a whole
    run or another shard there would mix two studies in one folder), whatever --fresh says (it
    deletes only this run's own files). A shard folder without a study.json is left to merge's
    checks. Raises StudyMismatch (exit 2)."""
    base = root / SHARDS
    if base.is_symlink() or not base.is_dir():
        return
    for folder in sorted(p for p in base.iterdir() if re.fullmatch(SHARD_DIR, p.name) and not p.is_symlink()):
        other = read_identity(folder) if folder.is_dir() else None
        # a shard's own; merge checks that one dropcli ran them all
        if other is not None and not same(other, identity, ignore=("shard", "dropcli_version")):
            whole = {k: v for k, v in other.items() if k not in ("shard", "dropcli_version")}
            raise StudyMismatch(f"{folder} is a shard of " + (
                "this study with other grid values; a sharded study keeps its grid (its shards and merge "
                "split that one): use another --out" if regrids(whole, identity) else
                f"another study ({describe_difference(other, identity, now='now')}); use another --out"))


def make_plan(spec: GridSpec, base: TrainConfig, out: Path | None = None, shard: tuple[int, int] | None = None,
              fresh: bool = False, data: dict | None = None, grow: bool = False) -> StudyPlan:
    """The plan of a grid (see StudyPlan). out None: the default folder of the identity. data: the
    data set's identity (name, sha256) recorded in study.json. grow: a whole study (no shard) may
    change the grid values of the one in `out` where its finished cells stay cells of the grid
    (study.check_folder: more seeds or axis values, identity.grows, or fewer that never finished). Raises ValueError for a bad grid, UsageError/StudyMismatch for a folder the run would
    refuse, TableError for foreign tables."""
    everything = tuple(expand(spec, base))  # first: a bad value is named by its grid option
    identity = study_identity(spec, base, data)
    root = Path(out) if out is not None else default_folder(identity)
    check_shards_agree(root, identity)
    if shard is None:
        cells, folder, folder_identity = everything, root, identity
    else:
        k, n = shard
        if n > len(everything):
            raise UsageError(f"--shard {k}/{n}: the study has only {len(everything)} cells; use at most "
                             f"{len(everything)} shards")
        cells, folder = tuple(partition(list(everything), n)[k - 1]), shard_folder(root, k, n)
        folder_identity = shard_identity(identity, k, n)
        check_folder(root, identity, fresh=False)  # the study's own folder: new, this study, or its shards
    grow = grow and shard is None
    old = check_folder(folder, folder_identity, fresh, grow)  # its study.json, read once
    new = folder_identity  # a shard's folder holds the shard's study.json, not the whole study's
    regrid = describe_difference(lifted(old), lifted(new)) if old and not fresh and not same(old, new) else None
    if fresh:
        check_fresh(folder)  # what --fresh would refuse to delete, refused by the preview too
    check_outputs(outputs(root, shard))
    todo = cells if fresh else pending(cells, folder)
    return StudyPlan(spec, base, root, identity, everything, shard, cells, folder, folder_identity, tuple(todo), fresh,
                     grow, regrid)


def outputs(root: Path, shard: tuple[int, int] | None = None) -> list[tuple[OwnedFolder, tuple[str, ...]]]:
    """Every name a study command writes, by folder: a whole study's tables and report (ablate and
    merge; slurm, whose merge job writes them), or a shard's tables, the folders above them and
    what merge will write in the study's folder (refused before the first shard trains, not after
    the last)."""
    if shard is None:
        return [(study_folder(root), TABLES + REPORT_FILES)]
    shards = root / SHARDS
    name = shard_folder(root, *shard).name
    return [(study_folder(root), (SHARDS + "/",) + TABLES + REPORT_FILES), (OwnedFolder(shards), (name + "/",)),
            (study_folder(shards / name), TABLES)]


def check_outputs(places: list[tuple[OwnedFolder, tuple[str, ...]]]) -> None:
    """Refuse, reading only and before anything is trained or written, the first name of `places`
    (outputs) that holds a file dropcli may not replace (a user's file, one changed since dropcli
    wrote it, or a link: OwnedFolder.check). Shared by every command and its --dry-run.
    Raises UsageError (DropcliError for a link), one line naming the file and the fix."""
    for folder, names in places:
        if folder.folder.is_dir():
            folder.check(names)


def pending(cells: tuple[TrainConfig, ...] | list[TrainConfig], folder: Path) -> list[TrainConfig]:
    """The cells not yet in folder/runs.csv (check_tables refuses foreign rows first); the same for a
    preview and a run, whether or not the folder's study.json is there yet (a run writes it first)."""
    if not (folder / "runs.csv").exists():
        return list(cells)
    check_tables(folder, list(cells))
    done = done_keys(folder, list(cells))
    return [c for c in cells if cell_id_of(c) not in done]


@contextlib.contextmanager
def open_study(plan: StudyPlan) -> Iterator[list[TrainConfig]]:
    """Lock and claim the plan's folder (its parents claimed as the study's), and yield the cells
    still to run, recomputed under the lock; the lock is held until the block ends."""
    from dropcli.files import study_lock

    if plan.shard is not None:
        claim_shard_parents(plan)
    with study_lock(plan.folder):
        claim(plan.folder, plan.folder_identity, plan.fresh, plan.grow)
        yield pending(plan.cells, plan.folder)


def claim_shard_parents(plan: StudyPlan) -> None:
    """root/shards/ and root/shards/K-of-N/ as folders dropcli made (listed in their parents'
    manifests), so that --fresh on the root later deletes them and nothing else."""
    from dropcli.files import claim_folder

    claim_folder(plan.root)
    shards = study_folder(plan.root).subfolder(SHARDS)
    OwnedFolder(shards.folder).subfolder(plan.folder.name)


def check_data(plan: StudyPlan, found: str | None) -> None:
    """Refuse (DropcliError, one line) training on data whose SHA-256 `found` (data_identity of the
    bytes loaded, 64 hex digits) is not the one the plan's study.json records: its files changed
    after the plan was made. found None (data made in memory, in tests) or a study without a data
    record is not checked."""
    from dropcli.errors import DropcliError

    recorded = plan.identity.get("data")
    if found and recorded is not None and found != recorded["sha256"]:
        raise DropcliError(f"the data loaded for training has sha256 {found[:12]}, but the study records "
                           f"{recorded['sha256'][:12]} ({plan.root / 'study.json'}): its files changed since the "
                           "command started; restore them, or start the study anew in another --out")


def cell_bytes(c: TrainConfig) -> int:
    """Memory one cell needs while training, in bytes: float32 parameters, gradients and Adam's two
    moments, a step's activations and masks, and an evaluation chunk of EVAL_CHUNK rows."""
    from dropcli.model import param_count

    return 4 * 4 * param_count(c.sizes) + 4 * 3 * c.batch_size * sum(c.sizes) + 4 * 2 * EVAL_CHUNK * max(c.sizes)


def check_memory(plan_or_cell, device) -> None:
    """Refuse (UsageError), before allocating anything, a network that cannot fit in the device's
    free memory (device.free_bytes)."""
    from dropcli.device import free_bytes

    c = plan_or_cell if isinstance(plan_or_cell, TrainConfig) else max(plan_or_cell.cells, key=cell_bytes)
    need, free = cell_bytes(c), free_bytes(device)
    if need > free:
        raise UsageError(f"the {'-'.join(map(str, c.sizes))} network needs about {need / 2**30:,.1f} GiB to train "
                         f"and {device} has {free / 2**30:,.1f} GiB free; use smaller --hidden widths")
