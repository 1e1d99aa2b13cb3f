"""The dropcli command line: parse options, build a config, call the library, print.

    $ dropcli train --keep-prob 0.7
    $ dropcli evaluate results/runs/<run>
    $ dropcli predict results/runs/<run> --index 0
    $ dropcli ablate --grid

Results go to stdout, progress bars and errors to stderr. Bad input ends with a one-line
message naming the fix: exit 2 for usage errors, 1 for failures, never a traceback.
torch is imported inside the commands so that --help answers at once.
"""

from __future__ import annotations

import datetime as dt
import random
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from dropcli import __version__
from dropcli.config import GridSpec, TrainConfig, check_keep, parse_floats, parse_ints
from dropcli.terminal import OneLineErrors, UsageError, command_line, failures, progress_bar, usage

app = typer.Typer(cls=OneLineErrors, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  rich_markup_mode=None,
                  help="Dropout ablations on MNIST: train, evaluate, predict and ablate the tutorial's network, "
                       "speaking in keep probabilities (1.0 = no dropout).")


class Init(str, Enum):
    tutorial = "tutorial"
    xavier = "xavier"
    kaiming = "kaiming"


class DatasetName(str, Enum):
    mnist = "mnist"
    fashion_mnist = "fashion-mnist"
    kmnist = "kmnist"


class Precision(str, Enum):
    float32 = "float32"
    tf32 = "tf32"
    bf16 = "bf16"


PRECISION_HELP = "Matmuls in float32, tf32 (CUDA only; faster there) or bf16 (slower); see README."


class SplitName(str, Enum):
    test = "test"
    validation = "validation"


def keep_list(text: str) -> tuple[float, ...]:
    values = parse_floats(text, "--keep-prob")
    for k in values:
        check_keep(k)
    return values


KEEP_HELP = "Keep probability of hidden units: one value, or one per hidden layer (0.8,0.7,0.7,0.5). 1.0 = no dropout."
Device = typer.Option("auto", "--device", help="auto (CUDA when present), cpu, cuda, cuda:N or mps.")
DataDir = typer.Option(None, "--data-dir", help="Folder with your own copy of the four IDX files (.gz or not).",
                       file_okay=False)


def out_dir_default(config: TrainConfig) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("results/runs") / f"{stamp}-keep{config.keep_label.replace(' ', '-')}-seed{config.seed}"


@app.command()
def train(
    keep_prob: str = typer.Option("0.7", help=KEEP_HELP),
    input_keep_prob: float = typer.Option(1.0, help="Keep probability of input pixels (1.0 = no input dropout)."),
    hidden: str = typer.Option("512,512,512,512", help="Hidden layer widths."),
    init: Init = typer.Option(Init.tutorial, help="tutorial: truncated normal(0.1) weights, normal(0, 1) biases."),
    lr: float = typer.Option(0.001, help="Adam learning rate."),
    batch_size: int = typer.Option(100, help="Images per step."),
    epochs: int = typer.Option(15, help="Passes over the training part."),
    seed: int = typer.Option(777, help="Seeds initial weights, batch order and dropout masks."),
    dataset: DatasetName = typer.Option(DatasetName.mnist, help="mnist is bundled; others need --data-dir or a download."),
    data_dir: Optional[Path] = DataDir,
    validation_size: int = typer.Option(5000, help="First N training images held out for validation (0 allowed)."),
    train_size: Optional[int] = typer.Option(None, help="Train on the first N images of the training part."),
    precision: Precision = typer.Option(Precision.float32, help=PRECISION_HELP),
    mc_samples: int = typer.Option(0, help="Also report Monte-Carlo dropout test accuracy over T passes."),
    device: str = Device,
    out: Optional[Path] = typer.Option(None, help="Run directory (default: results/runs/TIME-keepP-seedS)."),
) -> None:
    """Train the tutorial network and save the run (weights, history.csv, run.json)."""
    config = usage(lambda: TrainConfig(
        keep_prob=keep_list(keep_prob), input_keep_prob=input_keep_prob, hidden=parse_ints(hidden, "--hidden"),
        init=init.value, lr=lr, batch_size=batch_size, epochs=epochs, seed=seed, dataset=dataset.value,
        data_dir=str(data_dir) if data_dir else None, validation_size=validation_size, train_size=train_size,
        precision=precision.value, mc_samples=mc_samples))
    out = out or out_dir_default(config)
    if (out / "model.safetensors").exists():
        raise UsageError(f"{out} already holds a run; choose another --out or remove it")
    with failures():
        from dropcli.commands import run_train

        run_train(config, device, out, echo=typer.echo, progress=progress_bar(), command=command_line())


@app.command()
def evaluate(
    run: Path = typer.Argument(..., help="Run directory or model.safetensors written by dropcli train."),
    split: SplitName = typer.Option(SplitName.test, help="Which split to evaluate."),
    mc_samples: int = typer.Option(0, min=0, help="Add Monte-Carlo dropout accuracy over T stochastic passes."),
    csv: Optional[Path] = typer.Option(None, help="Write per-class accuracy and the confusion matrix to this CSV."),
    data_dir: Optional[Path] = DataDir,
    device: str = Device,
) -> None:
    """Test accuracy and loss with dropout off, and per-class accuracy."""
    with failures():
        from dropcli.commands import run_evaluate

        run_evaluate(run, split.value, mc_samples, csv, data_dir, device, echo=typer.echo)


@app.command()
def predict(
    run: Path = typer.Argument(..., help="Run directory or model.safetensors written by dropcli train."),
    images: Optional[list[Path]] = typer.Argument(None, help="PNG/JPEG digit images (white on black, or use --invert).",
                                                  exists=True, dir_okay=False),
    index: Optional[int] = typer.Option(None, min=0, max=9999, help="A test image by index (0-9999)."),
    invert: bool = typer.Option(False, help="Invert image files: dark digits on light paper."),
    mc_samples: int = typer.Option(0, min=0, help="T dropout-on passes: mean probability, its std and the entropy."),
    data_dir: Optional[Path] = DataDir,
    device: str = Device,
) -> None:
    """Predict a test image (by --index, or a random one) or your own image files."""
    if images and index is not None:
        raise UsageError("give image files or --index, not both")
    with failures():
        from dropcli.commands import run_predict

        run_predict(run, images or [], index, invert, mc_samples, data_dir, device, echo=typer.echo,
                    rng=random.Random())


@app.command()
def ablate(
    grid: bool = typer.Option(False, "--grid", help="The standard grid: keep 0.3..1.0 in steps of 0.1 x 3 seeds."),
    keep_probs: Optional[str] = typer.Option(None, help="Hidden keep probabilities, e.g. 0.5,0.7,1.0; per layer with ':' (0.8:0.7:0.7:0.5)."),
    input_keep_probs: str = typer.Option("1.0", help="Input keep probabilities (the dropout paper suggests 0.8)."),
    train_sizes: Optional[str] = typer.Option(None, help="Training set sizes, e.g. 1000,10000,55000 (default: all 55,000)."),
    seeds: Optional[int] = typer.Option(None, min=1, help="Number of seeds, counted from 777 (default: 3)."),
    seed_list: Optional[str] = typer.Option(None, help="Explicit seeds, e.g. 1,2,3."),
    epochs: int = typer.Option(15, help="Epochs of every cell."),
    hidden: str = typer.Option("512,512,512,512", help="Hidden layer widths of every cell."),
    init: Init = typer.Option(Init.tutorial, help="Initialisation of every cell."),
    lr: float = typer.Option(0.001, help="Adam learning rate."),
    batch_size: int = typer.Option(100, help="Images per step."),
    dataset: DatasetName = typer.Option(DatasetName.mnist, help="mnist is bundled; others need --data-dir or a download."),
    data_dir: Optional[Path] = DataDir,
    validation_size: int = typer.Option(5000, help="First N training images held out for validation."),
    precision: Precision = typer.Option(Precision.float32, help=PRECISION_HELP),
    mc_samples: int = typer.Option(0, help="Add Monte-Carlo dropout test accuracy (T passes) to every cell."),
    device: str = Device,
    parallel_models: int = typer.Option(0, min=0, help="Most cells trained together in lockstep (0 = chosen from free memory; 1 = one by one)."),
    out: Path = typer.Option(Path("results/ablation"), help="Study folder: runs.csv, summary.csv, history.csv, ablation.png."),
    fresh: bool = typer.Option(False, help="Replace the study already in --out instead of resuming it."),
    dry_run: bool = typer.Option(False, help="List the cells and estimate the time; train nothing."),
    report_only: bool = typer.Option(False, help="Rebuild summary, table and plot from --out's runs.csv."),
) -> None:
    """Train a grid of keep probabilities over seeds; resumable, as spreadsheet-ready CSV and a plot."""
    if report_only:
        return report(out)
    if grid and keep_probs:
        raise UsageError("--grid sets the keep probabilities; drop --grid or --keep-probs")
    if not grid and not keep_probs:
        raise UsageError("give --grid for the standard study, or --keep-probs such as 0.5,0.7,1.0")
    if seeds is not None and seed_list:
        raise UsageError("give --seeds N or --seed-list, not both")
    base = usage(lambda: TrainConfig(
        hidden=parse_ints(hidden, "--hidden"), init=init.value, lr=lr, batch_size=batch_size, epochs=epochs,
        dataset=dataset.value, data_dir=str(data_dir) if data_dir else None, validation_size=validation_size,
        precision=precision.value, mc_samples=mc_samples))
    spec = GridSpec()
    if keep_probs:
        entries = [e.strip() for e in keep_probs.split(",")]
        spec = GridSpec(keep_probs=tuple(usage(parse_floats, e.replace(":", ","), "--keep-probs") for e in entries))
    seed_values = (usage(parse_ints, seed_list, "--seed-list") if seed_list
                   else tuple(range(777, 777 + (seeds if seeds is not None else 3))))
    sizes = (None,) if train_sizes is None else usage(parse_ints, train_sizes, "--train-sizes")
    spec = GridSpec(keep_probs=spec.keep_probs, input_keep_probs=usage(parse_floats, input_keep_probs, "--input-keep-probs"),
                    train_sizes=sizes, seeds=seed_values)
    from dropcli.ablate import expand

    cells = usage(expand, spec, base)
    with failures():
        from dropcli.commands import run_ablate

        run_ablate(cells, spec, base, device, out, parallel_models, fresh, dry_run, echo=typer.echo,
                   progress=progress_bar(), resume=command_line(skip=("fresh", "dry_run")))


@app.command()
def report(out: Path = typer.Argument(Path("results/ablation"), help="Study folder holding runs.csv.")) -> None:
    """Rebuild summary.csv, the summary table and ablation.png from a study's runs.csv."""
    with failures():
        from dropcli.commands import run_report

        run_report(out, echo=typer.echo)


def version_callback(value: bool) -> None:
    if value:
        typer.echo(f"dropcli {__version__}")
        raise typer.Exit()


@app.callback()
def common(version: bool = typer.Option(False, "--version", callback=version_callback, is_eager=True,
                                        help="Print the version and exit.")) -> None:
    pass


def main() -> None:
    app()

