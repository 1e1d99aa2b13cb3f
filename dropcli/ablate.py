"""Running the cells of a study plan: on worker processes, in this process, or on a Ray cluster.

    $ dropcli ablate --grid                                   # 8 keep probabilities x 3 seeds
    $ dropcli ablate --keep-probs 0.5,1.0 --seeds 2 --epochs 1 --train-sizes 2000 --out /tmp/a
    $ dropcli ablate --grid --workers 1                       # in this process, on all its threads

Every cell is exactly a `dropcli train` run. Cells that share shapes and step counts train
together as one stacked model (engine.py), and the groups train side by side on worker processes
(workers.py: one single-threaded worker per core); each group is committed to the study folder
(study.py) by this process as it ends, so a rerun of the same command skips what is done.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from dropcli.commits import StudyTables, commit_rows
from dropcli.config import AUTO_WORKERS, TrainConfig
from dropcli.errors import DropcliError
from dropcli.files import rescue_folder
from dropcli.layout import Layout
from dropcli.plan import StudyPlan, check_data, check_memory, open_study
from dropcli.provenance import utc_now


@dataclass
class StudyProgress:
    """Callbacks the CLI uses to draw progress; all optional, all called in this process. In the
    order they come: on_measure while the group size is measured (only with parallel_models 0, more
    than one cell to run, a grid that repays it and no cached answer), on_plan once with the
    lockstep groups, then for each group on_group, its epochs' on_step and on_epoch
    (train.train_group's callbacks, about the group last announced), and on_cell for each committed
    cell. With worker processes several groups train at once: on_group announces the one whose
    epochs and steps on_step and on_epoch report (the earliest still running, until it ends), steps
    arrive a few times a second, and the other running groups' steps and validations reach
    on_other, for the study's pace. The Ray executor calls only on_plan and on_cell."""

    on_measure: Callable[[int, int], None] | None = None  # (cell-steps timed, to time): groups.measure_group_sizes
    on_plan: Callable[..., None] | None = None  # (the groups about to run, in order; the worker processes)
    on_group: Callable[[int, int, list[TrainConfig]], None] | None = None  # (group index, groups, cells)
    on_epoch: Callable[[int, list[dict]], None] | None = None  # (epoch, one record per cell)
    on_step: Callable[[int, int], None] | None = None  # (step, steps per epoch)
    on_cell: Callable[[dict], None] | None = None  # a finished, committed runs.csv row
    on_other: Callable[..., None] | None = None  # (group index, "step", s, n) or (group index, "epoch", epoch, records)


def _counts(plan: StudyPlan, todo: list, ran: int, group_size: int, layout: Layout = Layout()) -> dict:
    import torch

    return {"total": len(plan.cells), "skipped": len(plan.cells) - len(todo), "ran": ran,
            "parallel_models": group_size, "workers": layout.workers,
            "threads": layout.threads or torch.get_num_threads(), "out": plan.folder}


def arrange(cells: list[TrainConfig], device, parallel_models: int = 0, workers: int = AUTO_WORKERS,
            progress: StudyProgress | None = None) -> tuple[Layout, int, list[list[TrainConfig]]]:
    """How to run `cells` on `device`: the process layout (workers.plan_layout; `workers` > 0 fixes
    it), the group size (`parallel_models`, else groups.choose_parallel_models at the workers'
    thread count, spread so that every worker gets the same number of groups) and the groups."""
    from dropcli.device import free_bytes
    from dropcli.groups import choose_parallel_models, plan_groups
    from dropcli.layout import fit_layout, plan_layout, spread
    from dropcli.plan import cell_bytes

    progress = progress or StudyProgress()
    layout = plan_layout(device, cells, workers)
    k = parallel_models
    if not k:
        k = spread(choose_parallel_models(device, cells, layout.threads, on_progress=progress.on_measure), len(cells),
                   layout.workers)
    groups = plan_groups(cells, k)
    group_bytes = max(len(g) for g in groups) * max(cell_bytes(c) for c in cells)
    return fit_layout(layout, len(groups), group_bytes, bool(workers), free_bytes(device)), k, groups


def run_study(plan: StudyPlan, device, parallel_models: int = 0, progress: StudyProgress | None = None, data=None,
              train_options: dict | None = None, ray: dict | None = None, workers: int = AUTO_WORKERS) -> dict:
    """Train every cell of the plan not yet in its folder's runs.csv.

    device: a torch.device (resolved by the caller); parallel_models: cells per lockstep group (0:
    chosen by arrange); workers: processes training groups side by side (0, config.AUTO_WORKERS:
    chosen by arrange; 1: this process alone; a script that runs workers needs the
    `if __name__ == "__main__":` guard);
    data: a data.Dataset already loaded (on the CPU, it is shared with the workers); train_options:
    keyword options of train.train_group; ray: options of ray_executor.RayCluster, to run the
    groups as Ray tasks while this process writes the folder.
    Returns counts {"total", "skipped", "ran", "parallel_models", "workers", "threads", "out"}.
    Raises DropcliError when the folder cannot be written (the group's results are then saved in a
    rescue folder, named in the message) or a worker died; KeyboardInterrupt propagates after the
    workers have stopped, every group finished before it saved."""
    if ray is not None:
        return _run_with_ray(plan, device, parallel_models, progress, train_options, ray)
    from dropcli.data import load_dataset

    progress = progress or StudyProgress()
    with open_study(plan) as todo:
        if not todo:
            return _counts(plan, todo, 0, 0)
        check_memory(plan, device)
        data = data or load_dataset(todo[0].dataset, todo[0].data_dir, device)
        check_data(plan, data.identity and data.identity["sha256"])
        layout, k, groups = arrange(todo, device, parallel_models, workers, progress)
        if progress.on_plan:
            progress.on_plan(groups, layout.workers)
        commit = _committer(plan.folder, progress)
        if layout.workers == 1:
            _run_here(groups, device, data, progress, train_options, commit)
        else:
            from dropcli.workers import WorkerPool

            load = (todo[0].dataset, todo[0].data_dir)
            if data.test.x.device.type != "cpu":  # the workers share a copy in the CPU's memory
                data = load_dataset(*load, "cpu")
                check_data(plan, data.identity and data.identity["sha256"])
            with WorkerPool(layout, str(device), data, train_options, load) as pool:  # the data shared with them
                pool.run(groups, commit, progress)
        return _counts(plan, todo, commit.ran, k, layout)


def _run_here(groups: list[list[TrainConfig]], device, data, progress: StudyProgress, train_options, commit) -> None:
    """Train the groups one after another in this process on `data` (a data.Dataset on `device`),
    committing each as it ends."""
    from dropcli.commits import result_rows
    from dropcli.train import train_group

    for gi, group in enumerate(groups):
        if progress.on_group:
            progress.on_group(gi, len(groups), group)
        results = train_group(group, data, device, on_epoch=progress.on_epoch, on_step=progress.on_step,
                              **(train_options or {}))
        commit(*result_rows(results, utc_now()))


def _committer(out: Path, progress: StudyProgress) -> Callable[[list[dict], list[dict]], None]:
    """commit(runs, history): write a finished group's rows to `out` (commits.StudyTables), or, where
    the folder cannot take them, to a rescue folder named in the DropcliError raised; on_cell for
    each committed row; commit.ran counts them."""
    tables = StudyTables(out)

    def commit(runs: list[dict], history: list[dict]) -> None:
        try:
            tables.commit(runs, history)
        except DropcliError as e:  # the folder could not be written: keep the group's results elsewhere
            rescue = rescue_folder()
            commit_rows(rescue, runs, history)
            raise DropcliError(f"{e}; this group's {len(runs)} finished cell{'s' if len(runs) != 1 else ''} "
                               f"{'are' if len(runs) != 1 else 'is'} saved in {rescue} "
                               f"(runs.csv, history.csv); the earlier ones are in {out}") from None
        commit.ran += len(runs)
        for row in runs:
            if progress.on_cell:
                progress.on_cell(row)

    commit.ran = 0
    return commit


def _run_with_ray(plan: StudyPlan, device_name: str, parallel_models: int, progress: StudyProgress | None,
                  train_options, ray: dict) -> dict:
    """The groups as Ray tasks (ray_executor.py); this process alone writes the folder. Groups are
    sized so that every slot of the cluster gets work, unless --parallel-models says otherwise."""
    from dropcli.groups import plan_groups
    from dropcli.ray_executor import RayCluster, check_reachable

    progress = progress or StudyProgress()
    check_reachable(ray.get("address"))  # before the study folder is touched: a wrong address is one line
    with open_study(plan) as todo:
        if not todo:
            return _counts(plan, todo, 0, 0)
        cluster = RayCluster(ray.get("address"), device_name, ray.get("cpus_per_task", 1.0), ray.get("gpus_per_task"))
        try:
            if ray.get("log"):
                ray["log"](cluster.describe())
            cap = 64 if cluster.gpus_per_task else 8
            k = parallel_models or max(1, min(cap, math.ceil(len(todo) / max(1, cluster.slots))))
            commit = _committer(plan.folder, progress)
            groups = plan_groups(todo, k)
            if progress.on_plan:
                progress.on_plan(groups)
            report = cluster.run(groups, commit, train_options, ray.get("log"),
                                 data_sha256=(plan.identity.get("data") or {}).get("sha256"),
                                 on_data=lambda found: check_data(plan, found))
        finally:
            cluster.close()
        return {**_counts(plan, todo, commit.ran, k, Layout(cluster.slots, max(1, int(cluster.cpus_per_task)))),
                "ray": report}
