"""The bodies of ablate and report: run a study folder, then show its summary.

cli.py parses the grid; these functions run it, draw progress and print the summary table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dropcli.boards import Row
from dropcli.commands import duration, load_modules
from dropcli.config import AUTO_WORKERS, fmt_max_norm, fmt_number
from dropcli.grid import cell_id_of, fmt_hidden
from dropcli.plan import StudyPlan, pending
from dropcli.streams import shell_command
from dropcli.study import REPORT_FILES, TABLES, unfinished
from dropcli.terminal import Terminal, as_interrupt, interrupt_code, interrupt_name, one_line


@dataclass
class Execution:
    """How `ablate` runs a plan: where, in groups of how many, with which executor."""

    device_name: str = "auto"
    parallel_models: int = 0  # cells per lockstep group; 0: chosen for this machine (groups.choose_parallel_models)
    executor: str = "local"  # or "ray"
    ray_address: str | None = None
    cpus_per_task: float = 1.0
    train_options: dict = field(default_factory=dict)  # keyword options of train.train_group
    workers: int = AUTO_WORKERS  # processes training groups side by side (config.AUTO_WORKERS: chosen by layout.plan_layout)


def run_ablate(plan: StudyPlan, how: Execution, dry_run: bool, term: Terminal, resume: str,
               metric: str = "test_accuracy", baseline: dict | None = None) -> None:
    """Preview (dry_run) or run the plan, showing its progress from the first moment
    (study_display.StudyDisplay); then print the summary table."""
    from dropcli.ablate import run_study
    from dropcli.study_display import StudyDisplay

    if plan.regrid_note:
        term.note(plan.regrid_note)
    if dry_run:
        return dry_run_table(plan, check_device(plan, how), how.parallel_models, term, how.workers)
    ray = None
    if how.executor == "ray":
        ray = {"address": how.ray_address, "cpus_per_task": how.cpus_per_task, "log": term.note}
    out, summary = plan.folder, None
    load_modules()  # the report code the end of the run needs is the code it started with
    try:
        with term.board() as board:
            display = StudyDisplay(board, list(plan.cells), list(plan.todo), ray=ray is not None)
            device = check_device(plan, how)
            display.status("loading the data")
            counts = run_study(plan, how.device_name if ray else device, how.parallel_models, display.callbacks(),
                               train_options=how.train_options, ray=ray, workers=how.workers)
            if not plan.shard:
                from dropcli.report import build_report  # loaded by load_modules before training
                display.status("writing the summary and plots")
                summary = build_report(out, metric, baseline)
    except BaseException as caught:
        if as_interrupt(caught) is None:
            raise
        interrupted(plan, as_interrupt(caught), term, resume)
    if counts["skipped"]:
        term.note_path(f"Resumed: {counts['skipped']} cells were already in", out / "runs.csv", f", ran {counts['ran']}.")
    if counts["ran"] and display.what_ran():
        why = (f"--parallel-models {how.parallel_models}" if how.parallel_models else
               "groups sized to the Ray cluster" if ray else "the group size chosen for this machine")
        on = "" if ray or counts["workers"] == 1 else f" on {counts['workers']} worker processes, {counts['threads']} thread{'' if counts['threads'] == 1 else 's'} each"
        term.note(f"Trained {display.what_ran()}{on} ({why}).")
    if plan.shard:
        term.note_path(f"Shard {plan.shard[0]}/{plan.shard[1]}: {counts['total']} cells are in", out)
        term.note_path("When every shard is done, combine them with:", shell_command("dropcli", "merge", plan.root))
        return
    show_summary(summary, out, term)
    term.wrote(out, [name for name in TABLES + REPORT_FILES if (out / name).exists()])


def check_device(plan: StudyPlan, how: Execution):
    """The device checks a local run and a Ray run share before anything starts: the --device
    spelling, and a precision the device cannot run (tf32 on a CPU). A local run also checks that
    the device exists here and the network fits its free memory; a Ray run leaves those to the
    machines its tasks land on. Returns the device the driver uses (a CPU under Ray)."""
    import torch

    from dropcli.device import check_precision, parse_device, resolve_device
    from dropcli.plan import check_memory

    if how.executor == "ray":  # the driver only writes the folder; the workers resolve the device
        named = parse_device(how.device_name)
        if named is not None and named.type != "cuda":
            check_precision(plan.base.precision, named)
        return torch.device("cpu")
    device = resolve_device(how.device_name)
    check_precision(plan.base.precision, device)
    check_memory(plan, device)
    return device


def interrupted(plan: StudyPlan, e: KeyboardInterrupt, term: Terminal, resume: str) -> None:
    """Say how many cells an interrupted run saved and how to resume; exit 128 + the signal."""
    out = plan.folder
    done = len(plan.cells) - len(pending(plan.cells, out)) if (out / "runs.csv").exists() else 0
    left = len(plan.cells) - done
    what = f"Interrupted ({interrupt_name(e)}): {done} of {len(plan.cells)} cells are saved in {out / 'runs.csv'};"
    if left:
        term.interrupted(f"{what} {left} remain. Resume with:", resume)
    else:
        term.interrupted(f"{what} every cell is saved. Rebuild the summary with:", shell_command("dropcli", "report", out))
    raise SystemExit(interrupt_code(e)) from None


def run_merge(out: Path, term: Terminal) -> None:
    """Merge the shards; rebuild the summary; exit 1 naming the shards to rerun while cells are missing."""
    from dropcli.errors import DropcliError
    from dropcli.report import build_report
    from dropcli.shards import merge

    with term.board() as board:
        board.add(Row("merging the shards"))
        result = merge(out)
        summary = build_report(out) if result["merged"] else None
    term.note_path(f"Merged {result['merged']} of {result['cells']} cells from {result['found']} of {result['shards']} shards into",
                   out / "runs.csv", f" ({result['duplicates']} identical duplicates dropped)" if result["duplicates"] else "")
    if summary is not None:
        show_summary(summary, out, term)
    if result["missing"]:
        shown = ", ".join(result["missing"][:3]) + (", ..." if len(result["missing"]) > 3 else "")
        shards = ",".join(map(str, result["rerun"]))
        raise DropcliError(f"{len(result['missing'])} cells are missing ({shown}); rerun shard(s) {shards} of "
                           f"{result['shards']} with the same command and --shard K/{result['shards']}, then merge again")


def run_slurm(plan: StudyPlan, grid_args: list[str], opts, submit: bool, term: Terminal) -> None:
    """Write the plan's Slurm scripts (slurm.write_scripts); with submit, submit what is not yet
    recorded as submitted (slurm_submit.py) and print the job ids."""
    from dropcli.files import study_lock
    from dropcli.owned import OwnedFolder
    from dropcli.plan import check_outputs
    from dropcli.slurm import arrays, check_args, check_out, script_names, write_scripts
    from dropcli.slurm_submit import described, read_record, submit_scripts
    from dropcli.study import claim, study_folder

    out = plan.root
    check_out(out)  # a value that cannot go into a script is refused before the folder is claimed
    check_args(grid_args)
    scripts = script_names(opts) + (("submitted.json",) if submit else ())
    check_outputs([(study_folder(out), ("slurm/",)), (OwnedFolder(out / "slurm"), scripts)])  # no link, no user file
    if submit:
        read_record(out, opts.shards)  # jobs of another split are queued: refused before a script changes
    with study_lock(out):  # the study's folder, claimed for its shards and their merge
        folder = claim(out, plan.identity, fresh=False).subfolder("slurm")
        paths = write_scripts(folder, out, grid_args, opts)
    term.wrote(paths[0].parent, [p.name for p in paths])
    if not submit:
        term.result(f"{shell_command('bash', paths[-1])}    # submits {len(paths) - 2} array(s) and the merge job that waits for them")
        return
    spans = arrays(opts.shards, opts.max_array_size)
    record = submit_scripts(out, [(p, lo, hi) for p, (lo, hi) in zip(paths, spans)], opts.shards, paths[-2])
    if not record["new"]:
        term.note_path(f"Nothing to submit ({described(record)}); every job is recorded in",
                       out / "slurm" / "submitted.json", "; delete that file to submit the study again.")
        return
    for (lo, hi), path in zip(spans, paths):
        term.result(f"{record['arrays'][f'{lo}-{hi}']}  {path.name} (shards {lo}-{hi} of {opts.shards})"
                    + ("" if path.name in record["new"] else ", submitted before"))
    term.result(f"{record['merge']}  merge.sbatch (after every array task has ended)")
    term.note_path("Submitted. When the merge job has run, the study is in", out)
    term.note_path("A failed shard is named in", out / "slurm" / "logs" / "merge.out")


def show_summary(summary, out: Path, term: Terminal) -> None:
    """Print the Rich table of a study's summary (report.summary_table) under its usual title, then
    its conclusions (conclusions.sentences), as ablate, merge and report all end; `out` is the study
    folder. A screen too narrow for the table gets it in parts, each led by the columns that name a
    configuration (those before 'runs'); then a note if cells of its grid have not finished."""
    from dropcli.conclusions import sentences
    from dropcli.report import summary_table

    table = summary_table(summary, title="Ablation summary")
    term.table(table, keys=[c.header for c in table.columns].index("runs"))
    for sentence in sentences(summary):
        term.result(sentence)
    if note := unfinished(out):
        term.note(f"Note: {note}.")


def dry_run_table(plan: StudyPlan, device, parallel_models: int, term: Terminal, workers: int = AUTO_WORKERS) -> None:
    """The plan's cells with their lockstep group (or 'done'), and the time the rest would take."""
    from rich.table import Table

    from dropcli.displays import CountDisplay, cells_as_run
    from dropcli.groups import estimate_seconds, memory_cap, plan_groups
    from dropcli.layout import plan_layout

    todo = list(plan.todo)
    k = parallel_models or (memory_cap(device, todo) if todo else 1)
    groups = plan_groups(todo, k) if todo else []
    layout = plan_layout(device, todo, workers) if todo else None
    group_of = {cell_id_of(c): gi + 1 for gi, g in enumerate(groups) for c in g}
    table = Table(title=f"{len(plan.cells)} cells, {len(todo)} to run, in {one_line(str(plan.folder))}")
    lrs, widths = len({c.lr for c in plan.cells}) > 1, len({c.hidden for c in plan.cells}) > 1  # shown where varied
    for name in ("keep", "input keep", "max-norm", "train size", *(["lr"] if lrs else []),
                 *(["hidden"] if widths else []), "seed", "epochs", "steps", "group"):
        table.add_column(name, justify="right")
    for c in plan.cells:
        key = cell_id_of(c)
        table.add_row(c.keep_label, fmt_number(c.input_keep_prob), fmt_max_norm(c.max_norm), f"{c.n_train:,}",
                      *([fmt_number(c.lr)] if lrs else []), *([fmt_hidden(c.hidden)] if widths else []),
                      str(c.seed), str(c.epochs), f"{c.total_steps:,}", str(group_of[key]) if key in group_of else "done")
    term.table(table)
    if not todo:
        term.result(f"Nothing to run: every cell is already in {plan.folder / 'runs.csv'}.")
        return
    with term.board() as board:
        seconds = estimate_seconds(groups, device, on_progress=CountDisplay(board, "timing a few steps of each group shape"),
                                   workers=layout.workers, threads=layout.threads)
    how = "" if parallel_models else " (training chooses the group size for this machine first)"
    where = f"{device}" + (f", {layout.workers} worker processes side by side" if layout.workers > 1 else "")
    term.result(f"Would run {cells_as_run(groups)} on {where}{how}; "
                f"estimated {duration(seconds)} (timed from a few steps on this machine). Nothing was trained.")


def run_report(out: Path, term: Terminal, metric: str = "test_accuracy", baseline: dict | None = None,
               margin: float | None = None, command: str | None = None, power: float | None = None,
               tests: int | None = None) -> None:
    """Rebuild a study's summary.csv, figures and report.html; print the table and the conclusions;
    with power (points), the seeds each comparison needs to detect that difference (sizing.py) in
    a Holm family of `tests` (default: this study's)."""
    from dropcli.config import EQUIVALENCE_MARGIN
    from dropcli.report import build_report

    with term.board() as board:
        board.add(Row("writing the summary and plots"))
        summary = build_report(out, metric, baseline, EQUIVALENCE_MARGIN if margin is None else margin, command)
    show_summary(summary, out, term)
    if power is not None:
        sizing_table(summary, power, tests, term)
    written = [name for name in REPORT_FILES if (out / name).exists()]
    term.wrote(out, written)


def sizing_table(summary, power: float, tests: int | None, term: Terminal) -> None:
    """Print the seeds each comparison needs to detect `power` points (sizing.seeds_for) and the sentence."""
    import math

    from rich.table import Table

    from dropcli.sizing import seeds_for, sizing_sentence

    frame, m = seeds_for(summary, power, tests)
    table = Table(title=f"Seeds to detect {power:g} points (80% power, Holm over {m} tests)")
    for name in ("comparison", "seeds now", "diff", "paired SD", "seeds needed"):
        table.add_column(name, justify="left" if name == "comparison" else "right")
    for _, r in frame.iterrows():
        need = r["note"] if math.isnan(r["seeds_needed"]) else f"{int(r['seeds_needed']):,}"
        table.add_row(r["comparison"], str(r["paired_seeds"]), f"{r['diff_points']:+.2f}", f"{r['diff_sd_points']:.3f}", need)
    term.table(table)
    term.result(sizing_sentence(frame, power, m))
