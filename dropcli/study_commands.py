"""The bodies of ablate and report: run a study folder, then show its summary.

cli.py parses the grid; these functions run it, draw progress and print the summary table.
"""

from __future__ import annotations

from pathlib import Path

from dropcli.commands import duration
from dropcli.config import GridSpec, TrainConfig, config_cell_key, fmt_max_norm, fmt_number
from dropcli.terminal import Interrupted, Terminal


def run_ablate(cells: list[TrainConfig], spec: GridSpec, base: TrainConfig, device_name: str, out: Path,
               parallel_models: int, fresh: bool, dry_run: bool, term: Terminal, resume: str,
               metric: str = "test_accuracy", baseline: dict | None = None) -> None:
    from dropcli.ablate import StudyProgress, run_study
    from dropcli.device import check_precision, resolve_device
    from dropcli.groups import check_memory
    from dropcli.study import done_keys, study_identity

    device = resolve_device(device_name)
    check_precision(base.precision, device)
    check_memory(cells[0], device)
    identity = study_identity(spec, base)
    if dry_run:
        return dry_run_table(cells, out, identity, device, parallel_models, fresh, term)
    state = {"done": 0}

    def on_group(gi: int, n: int, group: list[TrainConfig]) -> None:
        c = group[0]
        progress.update(epoch_task, description=f"group {gi + 1}/{n}: {len(group)} cells, {c.n_train:,} images",
                        total=c.epochs, completed=0)
        progress.update(step_task, total=c.steps_per_epoch, completed=0)

    def on_cell(row: dict) -> None:
        state["done"] += 1
        progress.update(cells_task, completed=state["done"])

    try:
        with term.progress() as progress:
            cells_task = progress.add_task("cells done", total=len(cells))
            epoch_task = progress.add_task("epoch", total=base.epochs)
            step_task = progress.add_task("batch", total=base.steps_per_epoch)
            state["done"] = len(cells) - len(_todo(cells, out, identity, fresh))
            progress.update(cells_task, completed=state["done"])
            counts = run_study(cells, out, identity, device, parallel_models, fresh, StudyProgress(
                on_group=on_group, on_epoch=lambda e, recs: progress.update(epoch_task, completed=e),
                on_step=lambda s, n: progress.update(step_task, completed=s), on_cell=on_cell))
        if counts["skipped"]:
            term.note(f"Resumed: {counts['skipped']} cells were already in {out / 'runs.csv'}, ran {counts['ran']}.")
        if counts["ran"] and not parallel_models:
            term.note(f"Trained in lockstep groups of up to {counts['parallel_models']} (measured fastest here).")
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


def _todo(cells, out: Path, identity: dict, fresh: bool) -> list:
    from dropcli.study import done_keys, same_study

    if fresh or not same_study(out, identity) or not (out / "runs.csv").exists():
        return cells
    try:
        done = done_keys(out)
    except Exception:  # a broken table is refused by run_study, with its own message
        return cells
    return [c for c in cells if config_cell_key(c) not in done]


def summary_table_for(summary, out: Path):
    from dropcli.report import summary_table

    return summary_table(summary, title=f"Ablation summary ({out})")


def dry_run_table(cells, out: Path, identity: dict, device, parallel_models: int, fresh: bool, term: Terminal) -> None:
    from rich.table import Table

    from dropcli.groups import estimate_seconds, memory_cap, plan_groups

    todo = _todo(cells, out, identity, fresh)
    k = parallel_models or (memory_cap(device, todo) if todo else 1)
    groups = plan_groups(todo, k) if todo else []
    group_of = {config_cell_key(c): gi + 1 for gi, g in enumerate(groups) for c in g}
    table = Table(title=f"{len(cells)} cells, {len(todo)} to run, in {out}")
    for name in ("keep", "input keep", "max-norm", "train size", "seed", "epochs", "group"):
        table.add_column(name, justify="right")
    for c in cells:
        key = config_cell_key(c)
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
