"""Keep-probability ablations: grid expansion and running the cells of a study folder.

    $ dropcli ablate --grid                                   # 8 keep probabilities x 3 seeds
    $ dropcli ablate --keep-probs 0.5,1.0 --seeds 2 --epochs 1 --train-sizes 2000 --out /tmp/a

Every cell is exactly a `dropcli train` run. Cells that share shapes and step counts train
together as one stacked model (engine.py); each group is committed to the study folder
(study.py) as it ends, so a rerun of the same command skips what is done.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from dropcli.config import AXES, TRAIN_SPLIT, GridSpec, TrainConfig, check_keep, check_max_norm, config_cell_key
from dropcli.errors import DropcliError
from dropcli.provenance import utc_now
from dropcli.study import check_tables, claim, commit, done_keys


def check_grid(grid: GridSpec, base: TrainConfig) -> None:
    """Raise ValueError for empty axes, values outside their range and oversized train sizes."""
    axes = {"--keep-probs": grid.keep_probs, "--input-keep-probs": grid.input_keep_probs,
            "--max-norms": grid.max_norms, "--train-sizes": grid.train_sizes, "seeds": grid.seeds}
    for name, values in axes.items():
        if not values:
            raise ValueError(f"{name} is empty; give at least one value")
    for keep in grid.keep_probs:
        if len(keep) not in (1, len(base.hidden)):
            raise ValueError(f"--keep-probs entry {':'.join(f'{k:g}' for k in keep)} has {len(keep)} values for "
                             f"{len(base.hidden)} hidden layers; give one value or {len(base.hidden)} joined by ':'")
        for k in keep:
            check_keep(k)
    for k in grid.input_keep_probs:
        check_keep(k)
    for c in grid.max_norms:
        check_max_norm(c)
    part = TRAIN_SPLIT - base.validation_size
    for n in grid.train_sizes:
        if n is not None and not base.batch_size <= n <= part:
            raise ValueError(f"--train-sizes value {n} is outside {base.batch_size}..{part} "
                             f"(batch size .. the training part after {base.validation_size} for validation)")
    for s in grid.seeds:
        if not 0 <= s < 2**63:
            raise ValueError(f"seed {s} is outside 0..2**63-1; seeds are whole numbers from 0")


def expand(grid: GridSpec, base: TrainConfig) -> list[TrainConfig]:
    """Every cell of the grid, ordered by train size, max-norm, input keep, keep probability, seed.
    Two values that make the same cell (0.5 and 0.5:0.5:0.5:0.5, or a value given twice) are refused."""
    check_grid(grid, base)
    cells = [base.replace(keep_prob=keep, input_keep_prob=ik, max_norm=mn, train_size=n, seed=seed)
             for n in grid.train_sizes for mn in grid.max_norms for ik in grid.input_keep_probs
             for keep in grid.keep_probs for seed in grid.seeds]
    seen: dict[str, TrainConfig] = {}
    for c in cells:
        key = config_cell_key(c)
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
    return [c for c in cells if config_cell_key(c) not in done]


def run_study(cells: list[TrainConfig], out: Path, identity: dict, device, parallel_models: int = 0,
              fresh: bool = False, progress: StudyProgress | None = None, data=None, train_options=None) -> dict:
    """Train every cell not yet in out/runs.csv; returns counts. KeyboardInterrupt propagates after
    the finished cells are saved (they always are: each group is committed as it ends)."""
    from dropcli.data import load_dataset
    from dropcli.files import study_lock
    from dropcli.groups import check_memory, choose_parallel_models, plan_groups
    from dropcli.train import train_group

    progress = progress or StudyProgress()
    with study_lock(out):
        claim(out, identity, fresh)
        check_tables(out)
        todo = pending(cells, out)
        if not todo:
            return {"total": len(cells), "skipped": len(cells), "ran": 0, "parallel_models": 0}
        check_memory(todo[0], device)
        data = data or load_dataset(todo[0].dataset, todo[0].data_dir, device)
        k = parallel_models or choose_parallel_models(device, todo, data)
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
        return {"total": len(cells), "skipped": len(cells) - len(todo), "ran": ran, "parallel_models": k}
