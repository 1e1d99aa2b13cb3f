"""Running the cells of a study plan, here or on a Ray cluster, committing each group as it ends.

    $ dropcli ablate --grid                                   # 8 keep probabilities x 3 seeds
    $ dropcli ablate --keep-probs 0.5,1.0 --seeds 2 --epochs 1 --train-sizes 2000 --out /tmp/a

Every cell is exactly a `dropcli train` run. Cells that share shapes and step counts train
together as one stacked model (engine.py); each group is committed to the study folder
(study.py) as it ends, so a rerun of the same command skips what is done.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from dropcli.config import TrainConfig
from dropcli.errors import DropcliError
from dropcli.plan import StudyPlan, check_data, check_memory, open_study
from dropcli.provenance import utc_now
from dropcli.study import commit, commit_rows, rescue_folder


@dataclass
class StudyProgress:
    """Callbacks the CLI uses to draw progress; all optional. In the order they come: on_measure
    while the group size is measured (only with parallel_models 0 and more than one cell to run),
    on_plan once with the lockstep groups, then for each group on_group, its epochs' on_step and
    on_epoch (train.train_group's callbacks, about the group last announced), and on_cell for each
    committed cell. The Ray executor calls only on_plan and on_cell."""

    on_measure: Callable[[int, int], None] | None = None  # (cell-steps timed, to time): groups.measure_group_sizes
    on_plan: Callable[[list[list[TrainConfig]]], None] | None = None  # the groups about to run, in order
    on_group: Callable[[int, int, list[TrainConfig]], None] | None = None  # (group index, groups, cells)
    on_epoch: Callable[[int, list[dict]], None] | None = None  # (epoch, one record per cell)
    on_step: Callable[[int, int], None] | None = None  # (step, steps per epoch)
    on_cell: Callable[[dict], None] | None = None  # a finished, committed runs.csv row


def _counts(plan: StudyPlan, todo: list, ran: int, group_size: int) -> dict:
    return {"total": len(plan.cells), "skipped": len(plan.cells) - len(todo), "ran": ran,
            "parallel_models": group_size, "out": plan.folder}


def run_study(plan: StudyPlan, device, parallel_models: int = 0, progress: StudyProgress | None = None, data=None,
              train_options: dict | None = None, ray: dict | None = None) -> dict:
    """Train every cell of the plan not yet in its folder's runs.csv.

    device: a torch.device (resolved by the caller); parallel_models: cells per lockstep group (0:
    the size measured fastest here, groups.choose_parallel_models); data: a data.Dataset already
    loaded (else loaded here); train_options: keyword options of train.train_group; ray: options of
    ray_executor.RayCluster, to run the groups as Ray tasks while this process writes the folder.
    Returns counts {"total", "skipped", "ran", "parallel_models", "out"}. Raises DropcliError when
    the folder cannot be written (the group's results are then saved in a rescue folder, named in
    the message); KeyboardInterrupt propagates after the finished groups are saved."""
    if ray is not None:
        return _run_with_ray(plan, device, parallel_models, progress, train_options, ray)
    from dropcli.data import load_dataset
    from dropcli.groups import choose_parallel_models, plan_groups
    from dropcli.train import train_group

    progress = progress or StudyProgress()
    with open_study(plan) as todo:
        if not todo:
            return _counts(plan, todo, 0, 0)
        check_memory(plan, device)
        data = data or load_dataset(todo[0].dataset, todo[0].data_dir, device)
        check_data(plan, data.identity and data.identity["sha256"])
        k = parallel_models or choose_parallel_models(device, todo, on_progress=progress.on_measure)
        groups = plan_groups(todo, k)
        if progress.on_plan:
            progress.on_plan(groups)
        ran = 0
        for gi, group in enumerate(groups):
            if progress.on_group:
                progress.on_group(gi, len(groups), group)
            results = train_group(group, data, device, on_epoch=progress.on_epoch, on_step=progress.on_step,
                                  **(train_options or {}))
            ran += len(_commit_or_rescue(plan.folder, results, progress))
        return _counts(plan, todo, ran, k)


def _commit_or_rescue(out: Path, results: list, progress: StudyProgress) -> list[dict]:
    try:
        rows = commit(out, results, utc_now())
    except DropcliError as e:  # the folder could not be written: keep the group's results elsewhere
        rescue = rescue_folder()
        commit(rescue, results, utc_now())
        raise DropcliError(f"{e}; this group's {len(results)} finished cells are saved in {rescue} "
                           f"(runs.csv, history.csv); the earlier ones are in {out}") from None
    for row in rows:
        if progress.on_cell:
            progress.on_cell(row)
    return rows


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
            ran = []

            def on_rows(runs: list[dict], history: list[dict]) -> None:
                commit_rows(plan.folder, runs, history)
                ran.extend(runs)
                for row in runs:
                    if progress.on_cell:
                        progress.on_cell(row)

            groups = plan_groups(todo, k)
            if progress.on_plan:
                progress.on_plan(groups)
            report = cluster.run(groups, on_rows, train_options, ray.get("log"),
                                 data_sha256=(plan.identity.get("data") or {}).get("sha256"),
                                 on_data=lambda found: check_data(plan, found))
        finally:
            cluster.close()
        return {**_counts(plan, todo, len(ran), k), "ray": report}
