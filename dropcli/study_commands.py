"""The bodies of ablate and report: run a study folder, then show its summary.

cli.py parses the grid; these functions run it, draw progress and print the summary table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dropcli.commands import duration
from dropcli.config import TrainConfig, fmt_max_norm, fmt_number
from dropcli.grid import cell_id_of
from dropcli.plan import StudyPlan, pending
from dropcli.terminal import Interrupted, Terminal


@dataclass
class Execution:
    """How `ablate` runs a plan: where, in groups of how many, with which executor."""

    device_name: str = "auto"
    parallel_models: int = 0  # cells per lockstep group; 0: the size measured fastest here
    executor: str = "local"  # or "ray"
    ray_address: str | None = None
    cpus_per_task: float = 1.0
    train_options: dict = field(default_factory=dict)  # keyword options of train.train_group


def run_ablate(plan: StudyPlan, how: Execution, dry_run: bool, term: Terminal, resume: str,
               metric: str = "test_accuracy", baseline: dict | None = None) -> None:
    """Preview (dry_run) or run the plan, drawing progress; then print the summary table."""
    from dropcli.ablate import StudyProgress, run_study
    from dropcli.device import check_precision, resolve_device
    from dropcli.plan import check_memory

    device = resolve_device("cpu" if how.executor == "ray" else how.device_name)  # Ray resolves on its workers
    if how.executor != "ray":
        check_precision(plan.base.precision, device)
        check_memory(plan, device)
    if dry_run:
        return dry_run_table(plan, device, how.parallel_models, term)
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
    if how.executor == "ray":
        ray = {"address": how.ray_address, "cpus_per_task": how.cpus_per_task, "log": term.note}
    out = plan.folder
    try:
        with term.progress() as progress:
            cells_task = progress.add_task("cells done", total=len(plan.cells))
            epoch_task = progress.add_task("epoch", total=plan.base.epochs, visible=ray is None)
            step_task = progress.add_task("batch", total=plan.base.steps_per_epoch, visible=ray is None)
            state["done"] = len(plan.cells) - len(plan.todo)
            progress.update(cells_task, completed=state["done"])
            counts = run_study(plan, how.device_name if ray else device, how.parallel_models, StudyProgress(
                on_group=on_group, on_epoch=lambda e, recs: progress.update(epoch_task, completed=e),
                on_step=lambda s, n: progress.update(step_task, completed=s), on_cell=on_cell),
                train_options=how.train_options, ray=ray)
        if counts["skipped"]:
            term.note(f"Resumed: {counts['skipped']} cells were already in {out / 'runs.csv'}, ran {counts['ran']}.")
        if counts["ran"] and not how.parallel_models:
            term.note(f"Trained in lockstep groups of up to {counts['parallel_models']} "
                      f"({'sized to the Ray cluster' if ray else 'measured fastest here'}).")
        if plan.shard:
            term.note(f"Shard {plan.shard[0]}/{plan.shard[1]}: {counts['total']} cells are in {out}; when every shard "
                      f"is done, combine them with: dropcli merge {plan.root}")
            return
        from dropcli.report import build_report

        summary = build_report(out, metric, baseline)
    except KeyboardInterrupt as e:
        interrupted(plan, e, term, resume)
    term.table(summary_table_for(summary, out))
    term.note(f"Wrote {', '.join(str(out / f) for f in ('runs.csv', 'summary.csv', 'history.csv', 'report.html'))} and the figures")


def interrupted(plan: StudyPlan, e: KeyboardInterrupt, term: Terminal, resume: str) -> None:
    """Say how many cells an interrupted run saved and how to resume; exit 128 + the signal."""
    out = plan.folder
    done = len(plan.cells) - len(pending(plan.cells, out)) if (out / "runs.csv").exists() else 0
    left = len(plan.cells) - done
    what = f"{done} of {len(plan.cells)} cells are saved in {out / 'runs.csv'}"
    term.note(f"Interrupted ({e.args[0] if e.args else 'SIGINT'}): {what}; "
              + (f"{left} remain. Resume with: {resume}" if left else "every cell is saved. "
                 f"Rebuild the summary with: dropcli report {out}"))
    raise SystemExit(e.exit_code if isinstance(e, Interrupted) else 130) from None


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


def run_slurm(plan: StudyPlan, grid_args: list[str], opts, submit: bool, term: Terminal) -> None:
    """Write the plan's Slurm scripts (slurm.write_scripts); with submit, submit what is not yet
    recorded as submitted (slurm_submit.py) and print the job ids."""
    from dropcli.files import study_lock
    from dropcli.slurm import arrays, check_args, check_out, write_scripts
    from dropcli.slurm_submit import described, read_record, submit_scripts
    from dropcli.study import claim

    out = plan.root
    check_out(out)  # a value that cannot go into a script is refused before the folder is claimed
    check_args(grid_args)
    if submit:
        read_record(out, opts.shards)  # jobs of another split are queued: refused before a script changes
    with study_lock(out):  # the study's folder, claimed for its shards and their merge
        claim(out, plan.identity, fresh=False).subfolder("slurm")
        paths = write_scripts(out, grid_args, opts)
    term.note(f"Wrote {', '.join(str(p) for p in paths)}")
    if not submit:
        term.result(f"bash {paths[-1]}    # submits {len(paths) - 2} array(s) and the merge job that waits for them")
        return
    spans = arrays(opts.shards, opts.max_array_size)
    record = submit_scripts(out, [(p, lo, hi) for p, (lo, hi) in zip(paths, spans)], opts.shards, paths[-2])
    if not record["new"]:
        term.note(f"Nothing to submit: every job is recorded in {out / 'slurm' / 'submitted.json'} "
                  f"({described(record)}); delete that file to submit the study again.")
        return
    for (lo, hi), path in zip(spans, paths):
        term.result(f"{record['arrays'][f'{lo}-{hi}']}  {path.name} (shards {lo}-{hi} of {opts.shards})"
                    + ("" if path.name in record["new"] else ", submitted before"))
    term.result(f"{record['merge']}  merge.sbatch (after every array task has ended)")
    term.note(f"Submitted. When the merge job has run, the study is in {out}; a failed shard is named in "
              f"{out / 'slurm' / 'logs' / 'merge.out'}.")


def summary_table_for(summary, out: Path):
    from dropcli.report import summary_table

    return summary_table(summary, title=f"Ablation summary ({out})")


def dry_run_table(plan: StudyPlan, device, parallel_models: int, term: Terminal) -> None:
    """The plan's cells with their lockstep group (or 'done'), and the time the rest would take."""
    from rich.table import Table

    from dropcli.groups import estimate_seconds, memory_cap, plan_groups

    todo = list(plan.todo)
    k = parallel_models or (memory_cap(device, todo) if todo else 1)
    groups = plan_groups(todo, k) if todo else []
    group_of = {cell_id_of(c): gi + 1 for gi, g in enumerate(groups) for c in g}
    table = Table(title=f"{len(plan.cells)} cells, {len(todo)} to run, in {plan.folder}")
    for name in ("keep", "input keep", "max-norm", "train size", "seed", "epochs", "group"):
        table.add_column(name, justify="right")
    for c in plan.cells:
        key = cell_id_of(c)
        table.add_row(c.keep_label, fmt_number(c.input_keep_prob), fmt_max_norm(c.max_norm), f"{c.n_train:,}",
                      str(c.seed), str(c.epochs), str(group_of[key]) if key in group_of else "done")
    term.table(table)
    if not todo:
        term.result(f"Nothing to run: every cell is already in {plan.folder / 'runs.csv'}.")
        return
    seconds = estimate_seconds(groups, device)
    how = "" if parallel_models else " (training measures the fastest group size first)"
    term.result(f"Would run {len(todo)} cells in {len(groups)} lockstep group(s) of up to {k} on {device}{how}; "
                f"estimated {duration(seconds)} (timed from a few steps on this machine). Nothing was trained.")


def run_report(out: Path, term: Terminal, metric: str = "test_accuracy", baseline: dict | None = None,
               margin: float | None = None, command: str | None = None) -> None:
    """Rebuild a study's summary.csv, figures and report.html; print the table and the conclusions."""
    from dropcli.conclusions import sentences
    from dropcli.config import EQUIVALENCE_MARGIN
    from dropcli.report import build_report

    summary = build_report(out, metric, baseline, EQUIVALENCE_MARGIN if margin is None else margin, command)
    term.table(summary_table_for(summary, out))
    for sentence in sentences(summary):
        term.result(sentence)
    written = [name for name in ("summary.csv", "ablation.png", "differences.png", "curves.png", "report.html")
               if (out / name).exists()]
    term.note(f"Wrote {', '.join(str(out / name) for name in written)}")
