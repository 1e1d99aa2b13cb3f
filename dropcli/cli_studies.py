"""The study commands of the command line: ablate, report, merge and slurm (cli.py registers them).

    $ dropcli ablate --grid --seeds 10
    $ dropcli ablate --grid --seeds 10 --out DIR --shard 3/8        # one machine's share
    $ dropcli ablate --grid --seeds 10 --executor ray                # Ray tasks, every GPU
    $ dropcli slurm --grid --seeds 10 --out DIR --shards 8 --submit  # a Slurm job array and its merge
    $ dropcli merge DIR
    $ dropcli report DIR --metric test_accuracy_at_best --baseline max_norm=none --equivalence-margin 0.1
    $ dropcli report DIR --power 0.2                                 # seeds to detect 0.2 points

`ablate` and `slurm` take the same grid options (cli_options.py); both build one StudyPlan.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from dropcli.cli_options import (
    DEFAULTS,
    Baseline,
    BatchSize,
    DataDir,
    DatasetOpt,
    Device,
    Epochs,
    EquivalenceMargin,
    EvalEvery,
    Executor,
    GridFlag,
    Hidden,
    Hiddens,
    InitOpt,
    InputKeepProbs,
    Int,
    KeepProbs,
    Lr,
    Lrs,
    MaxNorms,
    McSamples,
    MetricOpt,
    ParallelModels,
    Power,
    PrecisionOpt,
    RayCpusPerTask,
    SeedList,
    Seeds,
    Steps,
    SubsetOpt,
    Tests,
    TrainSizes,
    ValidationSize,
    Workers,
    check_budget,
    command_line,
    resolved,
    typed_options,
)
from dropcli.config import AUTO_WORKERS, EQUIVALENCE_MARGIN, TrainConfig, check_monte_carlo, fmt_max_norm, fmt_number
from dropcli.grid import DEFAULT_SEEDS, GridSpec, default_seeds
from dropcli.terminal import Terminal, failures, usage, usage_error

D = DEFAULTS
G = GridSpec()  # the grid options' defaults
GRID_OPTIONS = ("grid", "keep_probs", "input_keep_probs", "max_norms", "train_sizes", "lrs", "hiddens", "subset", "seeds",
                "seed_list", "epochs", "steps", "eval_every", "hidden", "init", "lr", "batch_size", "dataset", "data_dir",
                "validation_size", "precision", "mc_samples", "device", "parallel_models")  # what ablate and slurm share (slurm passes them on)


def grid_spec(g: dict) -> tuple[GridSpec, TrainConfig]:
    """The grid and base config of the grid options (a dict of GRID_OPTIONS), or a usage error (exit 2)."""
    if g["grid"] and g["keep_probs"]:
        usage_error("--grid sets the keep probabilities; drop --grid or --keep-probs")
    if not g["grid"] and not g["keep_probs"]:
        usage_error("give --grid for the standard study, or --keep-probs such as 0.5,0.7,1.0")
    if g["seeds"] is not None and g["seed_list"]:
        usage_error("give --seeds N or --seed-list, not both")
    if g["lrs"] and g["lr"] != D.lr:
        usage_error("--lrs sets the learning rates; give --lr or --lrs, not both")
    if g["hiddens"] and tuple(g["hidden"]) != D.hidden:
        usage_error("--hiddens sets the widths; give --hidden or --hiddens, not both")
    usage(check_budget, g["steps"], g["epochs"])
    value = lambda x: getattr(x, "value", x)  # noqa: E731  (a choice's text)
    hidden = g["hiddens"][0] if g["hiddens"] else g["hidden"]  # the base's depth, for a uniform keep probability
    base = usage(lambda: TrainConfig(
        hidden=tuple(hidden), init=value(g["init"]), lr=g["lr"], batch_size=g["batch_size"], epochs=g["epochs"],
        steps=g["steps"], eval_every=g["eval_every"], dataset=value(g["dataset"]), data_dir=resolved(g["data_dir"]),
        validation_size=g["validation_size"], subset=value(g["subset"]), precision=value(g["precision"]),
        mc_samples=g["mc_samples"]))
    spec = GridSpec(keep_probs=tuple(g["keep_probs"] or G.keep_probs), input_keep_probs=tuple(g["input_keep_probs"]),
                    train_sizes=(None,) if g["train_sizes"] is None else tuple(g["train_sizes"]),
                    max_norms=tuple(g["max_norms"]), lrs=tuple(g["lrs"]) if g["lrs"] else None,
                    hiddens=tuple(tuple(h) for h in g["hiddens"]) if g["hiddens"] else None,
                    seeds=tuple(g["seed_list"]) if g["seed_list"] else default_seeds(g["seeds"] or DEFAULT_SEEDS))
    return spec, base


def build_plan(g: dict, out: Optional[Path], shard=None, fresh: bool = False, baseline: dict | None = None, grow=False):
    """The StudyPlan of the grid options (plan.make_plan), with the data's identity (name and SHA-256 of
    its files) in study.json, so that shards or a resume on other data are refused; and the checks a
    run of it makes first: the Monte-Carlo rule (config.check_monte_carlo) and a baseline the grid
    holds (compare.check_baseline: --baseline, or by default no dropout). ablate, its --dry-run, its shards and slurm share them
    (ablate's whole study may grow the one in --out: grow); usage errors exit 2, unreadable data 1."""
    from dropcli.compare import check_baseline
    from dropcli.data import data_identity
    from dropcli.plan import make_plan

    spec, base = grid_spec(g)
    data = data_identity(base.dataset, base.data_dir)  # the study is known by its data's content
    plan = usage(make_plan, spec, base, out, shard, fresh, {"name": data["name"], "sha256": data["sha256"]}, grow)
    if base.mc_samples:
        usage(check_monte_carlo, plan.all_cells, f"--mc-samples {base.mc_samples}",
              "add a --keep-probs or --input-keep-probs value below 1, or leave out --mc-samples")
    usage(check_baseline, baseline or None, plan.all_cells)  # none given: the grid must hold no dropout
    return plan


def ablate(
    grid: GridFlag = False,
    keep_probs: KeepProbs = None,
    input_keep_probs: InputKeepProbs = ",".join(map(fmt_number, G.input_keep_probs)),
    max_norms: MaxNorms = ",".join(map(fmt_max_norm, G.max_norms)),
    train_sizes: TrainSizes = None,
    lrs: Lrs = None,
    hiddens: Hiddens = None,
    subset: SubsetOpt = D.subset,
    seeds: Seeds = None,
    seed_list: SeedList = None,
    epochs: Epochs = D.epochs,
    steps: Steps = D.steps,
    eval_every: EvalEvery = D.eval_every,
    hidden: Hidden = ",".join(map(str, D.hidden)),
    init: InitOpt = D.init,
    lr: Lr = D.lr,
    batch_size: BatchSize = D.batch_size,
    dataset: DatasetOpt = D.dataset,
    data_dir: DataDir = None,
    validation_size: ValidationSize = D.validation_size,
    precision: PrecisionOpt = D.precision,
    mc_samples: McSamples = D.mc_samples,
    device: Device = "auto",
    parallel_models: ParallelModels = 0,
    workers: Workers = AUTO_WORKERS,
    out: Annotated[Optional[Path], typer.Option(help="Study folder (default: results/studies/<cells>cells-<hash>, one per grid).")] = None,
    fresh: Annotated[bool, typer.Option(help="Delete the files dropcli wrote for this study in --out and start over (never committed ones).")] = False,
    dry_run: Annotated[bool, typer.Option(help="List the cells and estimate the time; train nothing.")] = False,
    shard: Annotated[Optional[str], typer.Option(help="Run only shard K of N (K/N, or 'slurm' for the array task), into --out/shards/K-of-N; then 'dropcli merge'.")] = None,
    executor: Annotated[Executor, typer.Option(help="local, or ray: the lockstep groups as Ray tasks (pip install 'dropcli[ray]').")] = "local",
    ray_address: Annotated[Optional[str], typer.Option(help="With --executor ray: a running cluster ('auto' or host:port); default: start Ray here.")] = None,
    cpus_per_task: RayCpusPerTask = 1.0,
    metric: MetricOpt = "test_accuracy",
    baseline: Baseline = None,
    cuda_graphs: Annotated[bool, typer.Option(hidden=True, help="CUDA: replay each step as a CUDA graph.")] = True,
    fused_dropout: Annotated[bool, typer.Option(hidden=True, help="CUDA: the fused dropout kernel.")] = True,
) -> None:
    """Train a grid of keep probabilities over seeds; resumable, as spreadsheet-ready CSV and plots."""
    from dropcli.shards import parse_shard
    from dropcli.worker_start import warm_up

    g = {k: v for k, v in locals().items() if k in GRID_OPTIONS}
    part = usage(parse_shard, shard) if shard else None
    if executor.value == "ray" and (part or workers):  # Ray places its own tasks
        usage_error(f"--{'shard' if part else 'workers'} and --executor ray both split the study; use one")
    warm_up(workers if executor.value == "local" and not dry_run else 1)  # before scipy, pandas and torch load
    from dropcli.compare import parse_baseline
    from dropcli.study_commands import Execution, run_ablate
    chosen = usage(parse_baseline, baseline) if baseline else None
    with failures():
        plan = build_plan(g, out, part, fresh, chosen, grow=True)
        typed = command_line(skip=("fresh", "dry_run"))
        run_ablate(plan, Execution(device, parallel_models, executor.value, ray_address, cpus_per_task,
                                   {"cuda_graphs": cuda_graphs, "fused_dropout": fused_dropout}, workers),
                   dry_run, Terminal(), resume=typed + ("" if "--out" in typed else f" --out {plan.root}"),
                   metric=metric.value, baseline=chosen)


def report(
    out: Annotated[Path, typer.Argument(help="Study folder holding runs.csv (e.g. results/ablation).")],
    metric: MetricOpt = "test_accuracy",
    baseline: Baseline = None,
    equivalence_margin: EquivalenceMargin = EQUIVALENCE_MARGIN,
    power: Power = None,
    tests: Tests = None,
) -> None:
    """Rebuild summary.csv, the figures and report.html from a study's files; print the table and conclusions."""
    from dropcli.compare import parse_baseline

    chosen = usage(parse_baseline, baseline) if baseline else None
    if equivalence_margin <= 0:
        usage_error(f"--equivalence-margin takes points above 0, e.g. {EQUIVALENCE_MARGIN} (got {equivalence_margin})")
    if power is not None and power <= 0:
        usage_error(f"--power takes a difference in points above 0, e.g. 0.2 (got {power})")
    if tests is not None and power is None:
        usage_error("--tests sizes a study with --power; add --power POINTS, e.g. --power 0.2")
    with failures():
        from dropcli.study_commands import run_report

        run_report(out, Terminal(), metric.value, chosen, equivalence_margin, command_line(), power, tests)


def merge(out: Annotated[Path, typer.Argument(help="Study folder whose shards/ to merge.")]) -> None:
    """Combine a study's shards into its runs.csv, history.csv, summary and plots; lists missing cells."""
    with failures():
        from dropcli.study_commands import run_merge

        run_merge(out, Terminal())


def slurm(
    grid: GridFlag = False,
    keep_probs: KeepProbs = None,
    input_keep_probs: InputKeepProbs = ",".join(map(fmt_number, G.input_keep_probs)),
    max_norms: MaxNorms = ",".join(map(fmt_max_norm, G.max_norms)),
    train_sizes: TrainSizes = None,
    lrs: Lrs = None,
    hiddens: Hiddens = None,
    subset: SubsetOpt = D.subset,
    seeds: Seeds = None,
    seed_list: SeedList = None,
    epochs: Epochs = D.epochs,
    steps: Steps = D.steps,
    eval_every: EvalEvery = D.eval_every,
    hidden: Hidden = ",".join(map(str, D.hidden)),
    init: InitOpt = D.init,
    lr: Lr = D.lr,
    batch_size: BatchSize = D.batch_size,
    dataset: DatasetOpt = D.dataset,
    data_dir: DataDir = None,
    validation_size: ValidationSize = D.validation_size,
    precision: PrecisionOpt = D.precision,
    mc_samples: McSamples = D.mc_samples,
    device: Device = "auto",
    parallel_models: ParallelModels = 0,
    out: Annotated[Path, typer.Option(help="Study folder on storage every node sees.")] = ...,
    shards: Annotated[Int, typer.Option(min=1, help="Array tasks (shards) to split the study into.")] = ...,
    partition: Annotated[Optional[str], typer.Option(help="sbatch --partition.")] = None,
    gpus_per_task: Annotated[Int, typer.Option(min=0, help="sbatch --gpus-per-task (0: CPU tasks).")] = 0,
    cpus_per_task: Annotated[Int, typer.Option(min=1, help="sbatch --cpus-per-task.")] = 2,
    time: Annotated[Optional[str], typer.Option(help="sbatch --time: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS or UNLIMITED, e.g. 04:00:00.")] = None,
    account: Annotated[Optional[str], typer.Option(help="sbatch --account, the account charged (most clusters require one).")] = None,
    max_parallel: Annotated[Optional[Int], typer.Option(min=1, help="At most K array tasks at once (the %K throttle).")] = None,
    max_array_size: Annotated[Int, typer.Option(min=2, help="The cluster's MaxArraySize (scontrol show config); more shards make several arrays.")] = 1001,
    submit: Annotated[bool, typer.Option(help="Also run the sbatch commands (on the login node).")] = False,
) -> None:
    """Write a Slurm job array (one task per shard) and a merge job that runs after it; print or submit them."""
    g = {k: v for k, v in locals().items() if k in GRID_OPTIONS}
    with failures():
        plan = build_plan(g, out.resolve())
        if shards > len(plan.all_cells):
            usage_error(f"--shards {shards} is more than the {len(plan.all_cells)} cells; use at most {len(plan.all_cells)}")
        from dropcli.slurm import SlurmOptions, check_job_settings
        from dropcli.study_commands import run_slurm

        opts = usage(lambda: SlurmOptions(
            shards=shards, partition=partition, gpus_per_task=gpus_per_task, cpus_per_task=cpus_per_task, time=time,
            max_parallel=max_parallel, max_array_size=max_array_size, account=account))
        check_job_settings(plan.base, device)
        run_slurm(plan, typed_options(only=GRID_OPTIONS), opts, submit, Terminal())
