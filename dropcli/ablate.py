"""Keep-probability ablations: grid expansion and running the cells of a study folder.

    $ dropcli ablate --grid                                   # 8 keep probabilities x 3 seeds
    $ dropcli ablate --keep-probs 0.5,1.0 --seeds 2 --epochs 1 --train-sizes 2000 --out /tmp/a

Every cell is exactly a `dropcli train` run. Cells that share shapes and step counts train
together as one stacked model (engine.py); each group is committed to the study folder
(study.py) as it ends, so a rerun of the same command skips what is done.
"""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from dropcli.config import AXES, MAX_CELLS, GridSpec, TrainConfig, cell_id_of
from dropcli.errors import DropcliError
from dropcli.provenance import utc_now
from dropcli.study import check_tables, claim, commit, done_keys


def expand(grid: GridSpec, base: TrainConfig) -> list[TrainConfig]:
    """Every cell of the grid, ordered by train size, max-norm, input keep, keep probability, seed.
    Each cell is a TrainConfig, which checks its values; an empty axis, or two values that make the
    same cell (0.5 and 0.5:0.5:0.5:0.5, or a value given twice), are refused."""
    for name, values in zip(("--keep-probs", "--input-keep-probs", "--max-norms", "--train-sizes", "seeds"),
                            (grid.keep_probs, grid.input_keep_probs, grid.max_norms, grid.train_sizes, grid.seeds)):
        if not values:
            raise ValueError(f"{name} is empty; give at least one value")
    size = len(grid.keep_probs) * len(grid.input_keep_probs) * len(grid.max_norms) * len(grid.train_sizes) * len(grid.seeds)
    if size > MAX_CELLS:
        raise ValueError(f"the grid has {size:,} cells, more than {MAX_CELLS:,}; give fewer values or seeds")
    cells = [base.replace(keep_prob=keep, input_keep_prob=ik, max_norm=mn, train_size=n, seed=seed)
             for n in grid.train_sizes for mn in grid.max_norms for ik in grid.input_keep_probs
             for keep in grid.keep_probs for seed in grid.seeds]
    seen: dict[str, TrainConfig] = {}
    for c in cells:
        key = cell_id_of(c)
        if key in seen:
            raise ValueError(f"the grid lists one cell twice ({key.replace('|', ', ')}); give each value once")
        seen[key] = c
    return cells


assert AXES == ("keep_prob", "input_keep_prob", "max_norm", "train_size", "seed")  # expand() replaces these


@dataclass
class StudyProgress:
    """Callbacks the CLI uses to draw progress; all optional."""

    on_group: Callable[[int, int, list[TrainConfig]], None] | None = None  # (group index, groups, cells)
    on_epoch: Callable[[int, list[dict]], None] | None = None
    on_step: Callable[[int, int], None] | None = None
    on_cell: Callable[[dict], None] | None = None  # a finished, committed runs.csv row


def pending(cells: list[TrainConfig], out: Path) -> list[TrainConfig]:
    done = done_keys(out)
    return [c for c in cells if cell_id_of(c) not in done]


@contextlib.contextmanager
def opened(out: Path, identity: dict, fresh: bool, cells: list[TrainConfig]) -> Iterator[list[TrainConfig]]:
    """Lock and claim the study folder, refuse tables that are not dropcli's own, and yield the
    cells still to run; the lock is held until the block ends."""
    from dropcli.files import study_lock

    with study_lock(out):
        claim(out, identity, fresh)
        check_tables(out)
        yield pending(cells, out)


def run_study(cells: list[TrainConfig], out: Path, identity: dict, device, parallel_models: int = 0,
              fresh: bool = False, progress: StudyProgress | None = None, data=None, train_options=None,
              shard: tuple[int, int] | None = None, ray: dict | None = None) -> dict:
    """Train every cell not yet in out/runs.csv; returns counts. KeyboardInterrupt propagates after
    the finished cells are saved (they always are: each group is committed as it ends). With
    shard=(K, N), only shard K's cells, in out/shards/K-of-N/ (shards.py); with ray (options of
    ray_executor.RayCluster), the groups run as Ray tasks and this process writes the folder."""
    if shard is not None:
        from dropcli.shards import partition, shard_folder, shard_identity

        k, n = shard
        cells, out, identity = partition(cells, n)[k - 1], shard_folder(out, k, n), shard_identity(identity, k, n)
        if not cells:
            return {"total": 0, "skipped": 0, "ran": 0, "parallel_models": 0, "out": out}
    if ray is not None:
        return _run_with_ray(cells, out, identity, device, parallel_models, fresh, progress, train_options, ray)
    from dropcli.data import load_dataset
    from dropcli.groups import check_memory, choose_parallel_models, plan_groups
    from dropcli.train import train_group

    progress = progress or StudyProgress()
    with opened(out, identity, fresh, cells) as todo:
        if not todo:
            return {"total": len(cells), "skipped": len(cells), "ran": 0, "parallel_models": 0, "out": out}
        check_memory(todo[0], device)
        data = data or load_dataset(todo[0].dataset, todo[0].data_dir, device)
        k = parallel_models or choose_parallel_models(device, todo)
        groups = plan_groups(todo, k)
        ran = 0
        for gi, group in enumerate(groups):
            if progress.on_group:
                progress.on_group(gi, len(groups), group)
            results = train_group(group, data, device, on_epoch=progress.on_epoch, on_step=progress.on_step,
                                  **(train_options or {}))
            try:
                rows = commit(out, results, utc_now())
            except DropcliError as e:  # the folder could not be written: keep the group's results elsewhere
                rescue = Path(tempfile.mkdtemp(prefix="dropcli-rescued-cells-"))
                commit(rescue, results, utc_now())
                raise DropcliError(f"{e}; this group's {len(results)} finished cells are saved in {rescue} "
                                   f"(runs.csv, history.csv); the earlier ones are in {out}") from None
            ran += len(rows)
            for row in rows:
                if progress.on_cell:
                    progress.on_cell(row)
        return {"total": len(cells), "skipped": len(cells) - len(todo), "ran": ran, "parallel_models": k, "out": out}


def _run_with_ray(cells, out: Path, identity: dict, device_name: str, parallel_models: int, fresh: bool,
                  progress: StudyProgress | None, train_options, ray: dict) -> dict:
    """The groups as Ray tasks (ray_executor.py); this process alone writes `out`. Groups are sized
    so that every slot of the cluster gets work, unless --parallel-models says otherwise."""
    import math

    from dropcli.groups import plan_groups
    from dropcli.ray_executor import RayCluster
    from dropcli.study import commit_rows

    progress = progress or StudyProgress()
    with opened(out, identity, fresh, cells) as todo:
        if not todo:
            return {"total": len(cells), "skipped": len(cells), "ran": 0, "parallel_models": 0, "out": out}
        cluster = RayCluster(ray.get("address"), device_name, ray.get("cpus_per_task", 1.0), ray.get("gpus_per_task"))
        try:
            cap = 64 if cluster.gpus_per_task else 8
            k = parallel_models or max(1, min(cap, math.ceil(len(todo) / max(1, cluster.slots))))
            ran = []

            def on_rows(runs: list[dict], history: list[dict]) -> None:
                commit_rows(out, runs, history)
                ran.extend(runs)
                for row in runs:
                    if progress.on_cell:
                        progress.on_cell(row)

            report = cluster.run(plan_groups(todo, k), on_rows, train_options, ray.get("log"))
        finally:
            cluster.close()
        return {"total": len(cells), "skipped": len(cells) - len(todo), "ran": len(ran), "parallel_models": k,
                "out": out, "ray": report}
