"""Keep-probability ablations: grid expansion, lockstep groups, resume bookkeeping.

    $ dropcli ablate --grid                                   # 8 keep probabilities x 3 seeds
    $ dropcli ablate --keep-probs 0.5,1.0 --seeds 2 --epochs 1 --train-sizes 2000 --out /tmp/a

Every cell is exactly a `dropcli train` run. Cells that share shapes and step counts train
together as one stacked model (engine.py); each finished cell is committed to runs.csv and
history.csv (atomic rewrites) before the next group starts, so a rerun of the same command
skips what is done. study.json pins the grid and settings; a different study is refused.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from dropcli.config import GridSpec, TrainConfig, check_keep, fmt_keep
from dropcli.errors import DropcliError
from dropcli.files import atomic_write_text, study_lock

STUDY_FORMAT = "dropcli-study/1"
OUTPUTS = ("runs.csv", "history.csv", "summary.csv", "ablation.png", "study.json")
AXES = ("keep_prob", "input_keep_prob", "train_size", "seed")


class StudyMismatch(DropcliError):
    """The output folder holds another study (a usage error: exit 2)."""


def check_grid(grid: GridSpec, base: TrainConfig) -> None:
    """Raise ValueError for empty axes, values outside (0, 1], duplicates and oversized train sizes."""
    axes = {"--keep-probs": grid.keep_probs, "--input-keep-probs": grid.input_keep_probs,
            "--train-sizes": grid.train_sizes, "seeds": grid.seeds}
    for name, values in axes.items():
        if not values:
            raise ValueError(f"{name} is empty; give at least one value")
        if len(set(values)) != len(values):
            dup = next(v for v in values if values.count(v) > 1)
            raise ValueError(f"{name} lists {dup if not isinstance(dup, tuple) else fmt_keep(dup)} twice; give each value once")
    for keep in grid.keep_probs:
        if len(keep) not in (1, len(base.hidden)):
            raise ValueError(f"--keep-probs entry {':'.join(f'{k:g}' for k in keep)} has {len(keep)} values for "
                             f"{len(base.hidden)} hidden layers; give one value or {len(base.hidden)} joined by ':'")
        for k in keep:
            check_keep(k)
    for k in grid.input_keep_probs:
        check_keep(k)
    part = 60_000 - base.validation_size
    for n in grid.train_sizes:
        if n is not None and not base.batch_size <= n <= part:
            raise ValueError(f"--train-sizes value {n} is outside {base.batch_size}..{part} "
                             f"(batch size .. the training part after {base.validation_size} for validation)")


def expand(grid: GridSpec, base: TrainConfig) -> list[TrainConfig]:
    """Every cell of the grid, ordered by train size, input keep, keep probability, seed."""
    check_grid(grid, base)
    return [base.replace(keep_prob=keep, input_keep_prob=ik, train_size=n, seed=seed)
            for n in grid.train_sizes for ik in grid.input_keep_probs for keep in grid.keep_probs
            for seed in grid.seeds]


def cell_key(keep_probs: str, input_keep_prob: float, train_size: int, seed: int) -> str:
    return f"{keep_probs}|{float(input_keep_prob):g}|{int(train_size)}|{int(seed)}"


def config_key(c: TrainConfig) -> str:
    return cell_key(c.keep_label, c.input_keep_prob, c.n_train, c.seed)


def study_identity(grid: GridSpec, base: TrainConfig) -> dict:
    settings = {k: v for k, v in base.to_dict().items() if k not in AXES}
    return {"format": STUDY_FORMAT, "settings": settings,
            "grid": {"keep_probs": [fmt_keep(k) for k in grid.keep_probs],
                     "input_keep_probs": list(grid.input_keep_probs),
                     "train_sizes": [base.replace(train_size=n).n_train for n in grid.train_sizes],
                     "seeds": list(grid.seeds)}}


def _describe_difference(old: dict, new: dict) -> str:
    for section in ("settings", "grid"):
        for k in sorted(set(old.get(section, {})) | set(new.get(section, {}))):
            a, b = old.get(section, {}).get(k), new.get(section, {}).get(k)
            if json.dumps(a) != json.dumps(b):
                return f"{k} {a} there, {b} now"
    return "a different format"


def read_identity(out: Path) -> dict | None:
    try:
        return json.loads((out / "study.json").read_text())
    except (OSError, ValueError):
        return None


def _same(old: dict | None, identity: dict) -> bool:
    return old is not None and json.dumps(old, sort_keys=True) == json.dumps(identity, sort_keys=True)


def same_study(out: Path, identity: dict) -> bool:
    return _same(read_identity(out), identity)


def prepare_out(out: Path, identity: dict, fresh: bool) -> None:
    """Refuse a folder holding another study; with fresh, clear the old study's files."""
    study = out / "study.json"
    if fresh:
        for name in OUTPUTS:
            (out / name).unlink(missing_ok=True)
    if study.exists():
        old = read_identity(out)
        if not _same(old, identity):
            raise StudyMismatch(f"{out} holds another study ({_describe_difference(old or {}, identity)}); "
                                "use --out NEWDIR, or --fresh to replace it")
    elif (out / "runs.csv").exists():
        raise StudyMismatch(f"{out} has a runs.csv that no dropcli study.json describes; use --out NEWDIR, or --fresh to replace it")
    atomic_write_text(study, json.dumps(identity, indent=2, sort_keys=True) + "\n")


def done_keys(out: Path) -> set[str]:
    path = out / "runs.csv"
    if not path.exists():
        return set()
    from dropcli.report import read_runs

    return set(row_keys(read_runs(path)))


def run_row(r, finished_at: str) -> dict:
    from dropcli.checkpoint import versions

    c = r.config
    row = {"keep_prob": sum(c.keep_prob) / len(c.keep_prob), "keep_probs": c.keep_label,
           "input_keep_prob": c.input_keep_prob, "train_size": c.n_train, "seed": c.seed, "epochs": c.epochs,
           "epochs_run": len(r.history), "hidden": " ".join(map(str, c.hidden)), "init": c.init, "lr": c.lr,
           "batch_size": c.batch_size, "dataset": c.dataset, "final_cost": r.final_cost,
           "train_accuracy": r.train_accuracy, "validation_accuracy": r.validation_accuracy,
           "test_accuracy": r.test_accuracy, "generalization_gap": r.train_accuracy - r.test_accuracy,
           "test_loss": r.test_loss}
    if c.mc_samples:
        row["test_accuracy_mc"] = r.test_accuracy_mc if r.test_accuracy_mc is not None else math.nan
        row["mc_samples"] = c.mc_samples
    v = versions()
    row.update(train_seconds=r.train_seconds, parallel_models=r.parallel_models, device=r.device,
               precision=c.precision, status=r.status, finished_at=finished_at,
               dropcli_version=v["dropcli"], torch_version=v["torch"])
    return row


def history_rows(r) -> list[dict]:
    c = r.config
    head = {"keep_prob": sum(c.keep_prob) / len(c.keep_prob), "keep_probs": c.keep_label,
            "input_keep_prob": c.input_keep_prob, "train_size": c.n_train, "seed": c.seed}
    return [{**head, **h} for h in r.history]


def row_keys(table: pd.DataFrame) -> pd.Series:
    cols = table[["keep_probs", "input_keep_prob", "train_size", "seed"]]
    return pd.Series([cell_key(*row) for row in cols.itertuples(index=False)], index=table.index, dtype=object)


def append_rows(path: Path, rows: list[dict]) -> None:
    """Add rows to a table, first dropping any rows of the same cells: history left by a commit
    that was cut off before its runs.csv rows were written."""
    from dropcli.report import read_runs, write_csv

    new = pd.DataFrame(rows)
    if path.exists():
        old = read_runs(path)
        old = old[~row_keys(old).isin(set(row_keys(new)))]
        new = pd.concat([old, new], ignore_index=True)
    write_csv(new, path)


@dataclass
class StudyProgress:
    """Callbacks the CLI uses to draw progress; all optional."""

    on_group: Callable[[int, int, list[TrainConfig]], None] | None = None  # (group index, groups, cells)
    on_epoch: Callable[[int, list[dict]], None] | None = None
    on_step: Callable[[int, int], None] | None = None
    on_cell: Callable[[dict], None] | None = None  # a finished, committed runs.csv row


def run_study(cells: list[TrainConfig], out: Path, identity: dict, device, parallel_models: int = 0,
              fresh: bool = False, progress: StudyProgress | None = None) -> dict:
    """Train every cell not yet in out/runs.csv; returns counts. KeyboardInterrupt propagates after
    the finished cells are saved (they always are: each group is committed as it ends)."""
    from dropcli.data import load_dataset
    from dropcli.groups import auto_parallel_models, plan_groups
    from dropcli.train import train_group

    progress = progress or StudyProgress()
    with study_lock(out):
        prepare_out(out, identity, fresh)
        done = done_keys(out)
        todo = [c for c in cells if config_key(c) not in done]
        if not todo:
            return {"total": len(cells), "skipped": len(cells), "ran": 0}
        data = load_dataset(todo[0].dataset, todo[0].data_dir, device)
        k = parallel_models or auto_parallel_models(device, todo)
        groups = plan_groups(todo, k)
        ran = 0
        for gi, group in enumerate(groups):
            if progress.on_group:
                progress.on_group(gi, len(groups), group)
            results = train_group(group, data, device, on_epoch=progress.on_epoch, on_step=progress.on_step)
            # commit the group (its cells finish together): runs.csv last, so a listed cell has its history
            stamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
            rows = [run_row(r, stamp) for r in results]
            append_rows(out / "history.csv", [h for r in results for h in history_rows(r)])
            append_rows(out / "runs.csv", rows)
            ran += len(rows)
            for row in rows:
                if progress.on_cell:
                    progress.on_cell(row)
        return {"total": len(cells), "skipped": len(cells) - len(todo), "ran": ran}


def build_report(out: Path) -> pd.DataFrame:
    """summary.csv and ablation.png from runs.csv alone."""
    from dropcli.data import TITLES
    from dropcli.report import plot, read_runs, summarise, write_csv

    path = out / "runs.csv"
    if not path.exists():
        raise DropcliError(f"{path} does not exist; run 'dropcli ablate --out {out}' first")
    try:
        runs = read_runs(path)
        summary = summarise(runs)
    except (KeyError, ValueError, pd.errors.ParserError) as e:
        raise DropcliError(f"{path} is not a dropcli runs table ({e}); point to a folder written by 'dropcli ablate'") from None
    write_csv(summary, out / "summary.csv")
    seeds = runs["seed"].nunique()
    title = (f"{TITLES.get(runs['dataset'].iloc[0], runs['dataset'].iloc[0])}, {int(runs['epochs'].iloc[0])} epochs, "
             f"{seeds} seed{'s' if seeds != 1 else ''} per point, hidden {runs['hidden'].iloc[0]}")
    plot(summary, out / "ablation.png", title)
    return summary
