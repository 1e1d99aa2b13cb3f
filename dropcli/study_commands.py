"""The bodies of ablate and report: run a study folder, then show its summary.

cli.py parses the grid; these functions run it, draw progress and print the summary table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dropcli.commands import duration
from dropcli.config import GridSpec, TrainConfig, cell_id_of, fmt_max_norm, fmt_number
from dropcli.terminal import Interrupted, Terminal


@dataclass
class StudyRun:
    """What `ablate` was asked to run, and how."""

    cells: list[TrainConfig]
    spec: GridSpec
    base: TrainConfig
    device_name: str
    out: Path
    parallel_models: int = 0
    fresh: bool = False
    shard: tuple[int, int] | None = None
    executor: str = "local"
    ray_address: str | None = None
    cpus_per_task: float = 1.0
    train_options: dict = field(default_factory=dict)


def run_ablate(job: StudyRun, dry_run: bool, term: Terminal, resume: str, metric: str = "test_accuracy",
               baseline: dict | None = None) -> None:
    from dropcli.ablate import StudyProgress, run_study
    from dropcli.device import check_precision, resolve_device
    from dropcli.groups import check_memory
    from dropcli.study import done_keys, study_identity

    identity = study_identity(job.spec, job.base)
    if job.executor == "ray":
        device = job.device_name  # resolved on the workers
    else:
        device = resolve_device(job.device_name)
        check_precision(job.base.precision, device)
        check_memory(job.cells[0], device)
    out, cells = job.out, job.cells
    if job.shard:
        from dropcli.shards import partition, shard_folder

        cells, out = partition(job.cells, job.shard[1])[job.shard[0] - 1], shard_folder(job.out, *job.shard)
    if dry_run:
        if job.executor == "ray":
            device = resolve_device("cpu")
        return dry_run_table(cells, out, identity if not job.shard else _shard_identity(identity, job.shard),
                             device, job.parallel_models, job.fresh, term)
    state = {"done": 0}

    def on_group(gi: int, n: int, group: list[TrainConfig]) -> None:
        c = group[0]
        progress.update(epoch_task, description=f"group {gi + 1}/{n}: {len(group)} cells, {c.n_train:,} images",
                        total=c.epochs, completed=0)
        progress.update(step_task, total=c.steps_per_epoch, completed=0)

    def on_cell(row: dict) -> None:
        state["done"] += 1
        progress.update(cells_task, completed=state["done"])

    ray = None
    if job.executor == "ray":
        ray = {"address": job.ray_address, "cpus_per_task": job.cpus_per_task, "log": term.note}
    try:
        with term.progress() as progress:
            cells_task = progress.add_task("cells done", total=len(cells))
            epoch_task = progress.add_task("epoch", total=job.base.epochs, visible=ray is None)
            step_task = progress.add_task("batch", total=job.base.steps_per_epoch, visible=ray is None)
            ident = identity if not job.shard else _shard_identity(identity, job.shard)
            state["done"] = len(cells) - len(_todo(cells, out, ident, job.fresh))
            progress.update(cells_task, completed=state["done"])
            counts = run_study(job.cells, job.out, identity, device, job.parallel_models, job.fresh, StudyProgress(
                on_group=on_group, on_epoch=lambda e, recs: progress.update(epoch_task, completed=e),
                on_step=lambda s, n: progress.update(step_task, completed=s), on_cell=on_cell),
                train_options=job.train_options, shard=job.shard, ray=ray)
        if counts["skipped"]:
            term.note(f"Resumed: {counts['skipped']} cells were already in {out / 'runs.csv'}, ran {counts['ran']}.")
        if counts["ran"] and not job.parallel_models:
            term.note(f"Trained in lockstep groups of up to {counts['parallel_models']} "
                      f"({'sized to the Ray cluster' if ray else 'measured fastest here'}).")
        if job.shard:
            term.note(f"Shard {job.shard[0]}/{job.shard[1]}: {counts['total']} cells are in {out}; when every shard "
                      f"is done, combine them with: dropcli merge {job.out}")
            return
        from dropcli.report import build_report

        summary = build_report(out, metric, baseline)
    except KeyboardInterrupt as e:
        done = len(done_keys(out)) if (out / "runs.csv").exists() else 0
        left = len(cells) - done
        what = f"{done} of {len(cells)} cells are saved in {out / 'runs.csv'}"
        term.note(f"Interrupted ({e.args[0] if e.args else 'SIGINT'}): {what}; "
                  + (f"{left} remain. Resume with: {resume}" if left else "every cell is saved. "
                     f"Rebuild the summary with: dropcli report {out}"))
        raise SystemExit(e.exit_code if isinstance(e, Interrupted) else 130) from None
    term.table(summary_table_for(summary, out))
    term.note(f"Wrote {', '.join(str(out / f) for f in ('runs.csv', 'summary.csv', 'history.csv', 'ablation.png', 'curves.png'))}")


def _shard_identity(identity: dict, shard: tuple[int, int]) -> dict:
    from dropcli.shards import shard_identity

    return shard_identity(identity, *shard)


def run_merge(out: Path, term: Terminal) -> None:
    """Merge the shards; rebuild the summary; exit 1 naming the shards to rerun while cells are missing."""
    from dropcli.errors import DropcliError
    from dropcli.report import build_report
    from dropcli.shards import merge

    result = merge(out)
    term.note(f"Merged {result['merged']} of {result['cells']} cells from {result['shards']} shards into {out / 'runs.csv'}"
              + (f" ({result['duplicates']} identical duplicates dropped)" if result["duplicates"] else ""))
    if result["merged"]:
        summary = build_report(out)
        term.table(summary_table_for(summary, out))
    if result["missing"]:
        shown = ", ".join(result["missing"][:3]) + (", ..." if len(result["missing"]) > 3 else "")
        shards = ",".join(map(str, result["rerun"]))
        raise DropcliError(f"{len(result['missing'])} cells are missing ({shown}); rerun shard(s) {shards} of "
                           f"{result['shards']} with the same command and --shard K/{result['shards']}, then merge again")


def run_slurm(out: Path, grid_args: list[str], opts, submit: bool, term: Terminal) -> None:
    from dropcli.slurm import submit as sbatch
    from dropcli.slurm import write_scripts

    paths = write_scripts(out, grid_args, opts)
    term.note(f"Wrote {', '.join(str(p) for p in paths)}")
    if submit:
        term.result(sbatch(out))
        term.note(f"Submitted. When the merge job has run, the study is in {out}; a failed shard is named in "
                  f"{out / 'slurm' / 'logs' / 'merge.out'}.")
    else:
        term.result(f"bash {paths[-1]}    # submits {len(paths) - 2} array(s) and the merge job that waits for them")


def _todo(cells, out: Path, identity: dict, fresh: bool) -> list:
    from dropcli.study import done_keys, same_study

    if fresh or not same_study(out, identity) or not (out / "runs.csv").exists():
        return cells
    try:
        done = done_keys(out)
    except Exception:  # a broken table is refused by run_study, with its own message
        return cells
    return [c for c in cells if cell_id_of(c) not in done]


def summary_table_for(summary, out: Path):
    from dropcli.report import summary_table

    return summary_table(summary, title=f"Ablation summary ({out})")


def dry_run_table(cells, out: Path, identity: dict, device, parallel_models: int, fresh: bool, term: Terminal) -> None:
    from rich.table import Table

    from dropcli.groups import estimate_seconds, memory_cap, plan_groups

    todo = _todo(cells, out, identity, fresh)
    k = parallel_models or (memory_cap(device, todo) if todo else 1)
    groups = plan_groups(todo, k) if todo else []
    group_of = {cell_id_of(c): gi + 1 for gi, g in enumerate(groups) for c in g}
    table = Table(title=f"{len(cells)} cells, {len(todo)} to run, in {out}")
    for name in ("keep", "input keep", "max-norm", "train size", "seed", "epochs", "group"):
        table.add_column(name, justify="right")
    for c in cells:
        key = cell_id_of(c)
        table.add_row(c.keep_label, fmt_number(c.input_keep_prob), fmt_max_norm(c.max_norm), f"{c.n_train:,}",
                      str(c.seed), str(c.epochs), str(group_of[key]) if key in group_of else "done")
    term.table(table)
    if not todo:
        term.result(f"Nothing to run: every cell is already in {out / 'runs.csv'}.")
        return
    seconds = estimate_seconds(groups, device)
    how = "" if parallel_models else " (training measures the fastest group size first)"
    term.result(f"Would run {len(todo)} cells in {len(groups)} lockstep group(s) of up to {k} on {device}{how}; "
                f"estimated {duration(seconds)} (timed from a few steps on this machine). Nothing was trained.")


def run_report(out: Path, term: Terminal, metric: str = "test_accuracy", baseline: dict | None = None) -> None:
    from dropcli.report import build_report

    summary = build_report(out, metric, baseline)
    term.table(summary_table_for(summary, out))
    term.note(f"Wrote {out / 'summary.csv'}, {out / 'ablation.png'} and {out / 'curves.png'}")
