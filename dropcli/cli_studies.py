"""The study commands of the command line: ablate, report, merge and slurm.

    $ dropcli ablate --grid --seeds 10
    $ dropcli ablate --grid --seeds 10 --out DIR --shard 3/8        # one machine's share
    $ dropcli ablate --grid --seeds 10 --executor ray                # Ray tasks, every GPU
    $ dropcli slurm --grid --seeds 10 --out DIR --shards 8 --submit  # a Slurm job array and its merge
    $ dropcli merge DIR
    $ dropcli report DIR --metric test_accuracy_at_best

`ablate` and `slurm` take the same grid options, declared once in GRID_OPTIONS.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Optional

import typer

from dropcli.cli import (
    PRECISION_HELP,
    SUBSET_HELP,
    DataDir,
    DatasetName,
    Device,
    Init,
    Metric,
    Precision,
    Subset,
    _raise,
    app,
    resolved,
)
from dropcli.config import (
    DEFAULT_SEED,
    DEFAULT_SEEDS,
    GridSpec,
    TrainConfig,
    default_seeds,
    parse_floats,
    parse_ints,
    parse_keep_list,
    parse_max_norms,
)
from dropcli.terminal import Terminal, command_line, failures, typed_options, usage

METRIC_HELP = "What the summary compares: final test accuracy, or test accuracy at each run's best validation epoch."
BASELINE_HELP = "The configuration each one is compared with, as axis=value pairs (other axes match): default keep=1,input_keep=1."
GRID_OPTIONS = {  # name: (type, option): the grid, and the settings every cell shares
    "grid": (bool, typer.Option(False, "--grid", help="The standard grid: keep 0.3..1.0 in steps of 0.1.")),
    "keep_probs": (Optional[str], typer.Option(None, help="Hidden keep probabilities, e.g. 0.5,0.7,1.0; per layer with ':' (0.8:0.7:0.7:0.5).")),
    "input_keep_probs": (str, typer.Option("1.0", help="Input keep probabilities (the dropout paper suggests 0.8).")),
    "max_norms": (str, typer.Option("none", help="Max-norm values, e.g. none,3 (none = no constraint).")),
    "train_sizes": (Optional[str], typer.Option(None, help="Training set sizes, e.g. 1000,10000 (default: all 55,000).")),
    "subset": (Subset, typer.Option("random", help=SUBSET_HELP)),
    "seeds": (Optional[int], typer.Option(None, min=1, max=10_000, help=f"Number of seeds, counted from {DEFAULT_SEED} (default: {DEFAULT_SEEDS}).")),
    "seed_list": (Optional[str], typer.Option(None, help="Explicit seeds, e.g. 1,2,3.")),
    "epochs": (int, typer.Option(15, help="Epochs of every cell.")),
    "hidden": (str, typer.Option("512,512,512,512", help="Hidden layer widths of every cell.")),
    "init": (Init, typer.Option("tutorial", help="Initialisation of every cell.")),
    "lr": (float, typer.Option(0.001, help="Adam learning rate.")),
    "batch_size": (int, typer.Option(100, help="Images per step.")),
    "dataset": (DatasetName, typer.Option("mnist", help="mnist is bundled; others need --data-dir or a download.")),
    "data_dir": (Optional[Path], DataDir),
    "validation_size": (int, typer.Option(5000, help="First N training images held out for validation.")),
    "precision": (Precision, typer.Option("float32", help=PRECISION_HELP)),
    "mc_samples": (int, typer.Option(0, help="Add Monte-Carlo dropout test accuracy (T passes) to every cell.")),
    "device": (str, Device),
    "parallel_models": (int, typer.Option(0, min=0, help="Most cells trained together in lockstep (0 = the size measured fastest here; 1 = one by one).")),
}


def with_grid_options(fn):
    """Give a command the GRID_OPTIONS before its own parameters; they arrive in **grid."""
    own = [p for p in inspect.signature(fn).parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    shared = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=opt, annotation=kind)
              for name, (kind, opt) in GRID_OPTIONS.items()]
    fn.__signature__ = inspect.Signature([*[p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own], *shared])
    return fn


def parse_grid(g: dict) -> tuple[list[TrainConfig], GridSpec, TrainConfig]:
    """The cells, grid and base config of the grid options, or a usage error (exit 2)."""
    if g["grid"] and g["keep_probs"]:
        usage(_raise, "--grid sets the keep probabilities; drop --grid or --keep-probs")
    if not g["grid"] and not g["keep_probs"]:
        usage(_raise, "give --grid for the standard study, or --keep-probs such as 0.5,0.7,1.0")
    if g["seeds"] is not None and g["seed_list"]:
        usage(_raise, "give --seeds N or --seed-list, not both")
    base = usage(lambda: TrainConfig(
        hidden=parse_ints(g["hidden"], "--hidden"), init=g["init"].value, lr=g["lr"], batch_size=g["batch_size"],
        epochs=g["epochs"], dataset=g["dataset"].value, data_dir=resolved(g["data_dir"]),
        validation_size=g["validation_size"], subset=g["subset"].value, precision=g["precision"].value,
        mc_samples=g["mc_samples"]))
    spec = usage(lambda: GridSpec(
        keep_probs=parse_keep_list(g["keep_probs"]) if g["keep_probs"] else GridSpec().keep_probs,
        input_keep_probs=parse_floats(g["input_keep_probs"], "--input-keep-probs"),
        max_norms=parse_max_norms(g["max_norms"]),
        train_sizes=(None,) if g["train_sizes"] is None else parse_ints(g["train_sizes"], "--train-sizes"),
        seeds=parse_ints(g["seed_list"], "--seed-list") if g["seed_list"] else default_seeds(g["seeds"] or DEFAULT_SEEDS)))
    from dropcli.ablate import expand

    return usage(expand, spec, base), spec, base


@app.command()
@with_grid_options
def ablate(
    out: Optional[Path] = typer.Option(None, help="Study folder (default: results/studies/<cells>cells-<hash>, one per grid)."),
    fresh: bool = typer.Option(False, help="Delete this study's results in --out and start over (never committed ones)."),
    dry_run: bool = typer.Option(False, help="List the cells and estimate the time; train nothing."),
    shard: Optional[str] = typer.Option(None, help="Run only shard K of N (K/N, or 'slurm' for the array task), into --out/shards/K-of-N; then 'dropcli merge'."),
    executor: str = typer.Option("local", help="local, or ray: the lockstep groups as Ray tasks (pip install 'dropcli[ray]')."),
    ray_address: Optional[str] = typer.Option(None, help="With --executor ray: a running cluster ('auto' or host:port); default: start Ray here."),
    cpus_per_task: float = typer.Option(1.0, help="With --executor ray: CPUs per task where tasks run on CPUs."),
    metric: Metric = typer.Option("test_accuracy", help=METRIC_HELP),
    baseline: Optional[str] = typer.Option(None, help=BASELINE_HELP),
    cuda_graphs: bool = typer.Option(True, hidden=True, help="CUDA: replay each step as a CUDA graph."),
    fused_dropout: bool = typer.Option(True, hidden=True, help="CUDA: the fused dropout kernel."),
    **grid,
) -> None:
    """Train a grid of keep probabilities over seeds; resumable, as spreadsheet-ready CSV and plots."""
    cells, spec, base = parse_grid(grid)
    from dropcli.report import parse_baseline
    from dropcli.shards import parse_shard
    from dropcli.study import default_folder, study_identity

    chosen = usage(parse_baseline, baseline) if baseline else None
    part = usage(parse_shard, shard) if shard else None
    if executor not in ("local", "ray"):
        usage(_raise, f"--executor is local or ray, not {executor!r}")
    if part and executor == "ray":
        usage(_raise, "--shard and --executor ray both split the study; use one")
    out = out or default_folder(study_identity(spec, base))
    typed = command_line(skip=("fresh", "dry_run"))
    with failures():
        from dropcli.study_commands import StudyRun, run_ablate

        run_ablate(StudyRun(cells, spec, base, grid["device"], out, grid["parallel_models"], fresh, part,
                            executor, ray_address, cpus_per_task, {"cuda_graphs": cuda_graphs, "fused_dropout": fused_dropout}),
                   dry_run, Terminal(), resume=typed + ("" if "--out" in typed else f" --out {out}"),
                   metric=metric.value, baseline=chosen)


@app.command()
def report(
    out: Path = typer.Argument(..., help="Study folder holding runs.csv (e.g. results/ablation)."),
    metric: Metric = typer.Option("test_accuracy", help=METRIC_HELP),
    baseline: Optional[str] = typer.Option(None, help=BASELINE_HELP),
) -> None:
    """Rebuild summary.csv, the summary table, ablation.png and curves.png from a study's files."""
    from dropcli.report import parse_baseline

    chosen = usage(parse_baseline, baseline) if baseline else None
    with failures():
        from dropcli.study_commands import run_report

        run_report(out, Terminal(), metric.value, chosen)


@app.command()
def merge(out: Path = typer.Argument(..., help="Study folder whose shards/ to merge.")) -> None:
    """Combine a study's shards into its runs.csv, history.csv, summary and plots; lists missing cells."""
    with failures():
        from dropcli.study_commands import run_merge

        run_merge(out, Terminal())


@app.command()
@with_grid_options
def slurm(
    out: Path = typer.Option(..., help="Study folder on storage every node sees."),
    shards: int = typer.Option(..., min=1, help="Array tasks (shards) to split the study into."),
    partition: Optional[str] = typer.Option(None, help="sbatch --partition."),
    gpus_per_task: int = typer.Option(0, min=0, help="sbatch --gpus-per-task (0: CPU tasks)."),
    cpus_per_task: int = typer.Option(2, min=1, help="sbatch --cpus-per-task."),
    time: Optional[str] = typer.Option(None, help="sbatch --time, e.g. 04:00:00."),
    max_parallel: Optional[int] = typer.Option(None, min=1, help="At most K array tasks at once (the %K throttle)."),
    max_array_size: int = typer.Option(1001, min=2, help="The cluster's MaxArraySize (scontrol show config); more shards make several arrays."),
    submit: bool = typer.Option(False, help="Also run the sbatch commands (on the login node)."),
    **grid,
) -> None:
    """Write a Slurm job array (one task per shard) and a merge job that runs after it; print or submit them."""
    cells, spec, base = parse_grid(grid)
    if shards > len(cells):
        usage(_raise, f"--shards {shards} is more than the {len(cells)} cells; use at most {len(cells)}")
    from dropcli.slurm import SlurmOptions

    opts = SlurmOptions(shards=shards, partition=partition, gpus_per_task=gpus_per_task, cpus_per_task=cpus_per_task,
                        time=time, max_parallel=max_parallel, max_array_size=max_array_size)
    with failures():
        from dropcli.study_commands import run_slurm

        run_slurm(out.resolve(), typed_options(only=GRID_OPTIONS), opts, submit, Terminal())
