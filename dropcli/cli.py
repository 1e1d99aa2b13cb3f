"""The dropcli command line: parse options, build a config, call the library, print.

    $ dropcli train --keep-prob 0.7
    $ dropcli evaluate results/runs/<run>
    $ dropcli predict results/runs/<run> --index 0
    $ dropcli ablate --grid                  # and report, merge, slurm: cli_studies.py

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

from dropcli.config import (
    DATASETS,
    DEFAULT_SEED,
    INITS,
    MAX_MC_SAMPLES,
    PRECISIONS,
    SUBSETS,
    TrainConfig,
    parse_ints,
    parse_keep,
    parse_max_norms,
)
from dropcli.terminal import OneLineErrors, Terminal, command_line, failures, install_signal_handlers, usage

app = typer.Typer(cls=OneLineErrors, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  help="Dropout ablations on MNIST: train, evaluate, predict and ablate the tutorial's network, "
                       "speaking in keep probabilities (1.0 = no dropout).")


def choices(name: str, values: tuple[str, ...]) -> type[Enum]:
    """A Typer choice type built from the config's tuple (one definition of each choice)."""
    return Enum(name, [(v, v) for v in values], type=str)


Init = choices("Init", INITS)
DatasetName = choices("DatasetName", DATASETS)
Precision = choices("Precision", PRECISIONS)
Subset = choices("Subset", SUBSETS)
SplitName = choices("SplitName", ("test", "validation"))
Metric = choices("Metric", ("test_accuracy", "test_accuracy_at_best"))

KEEP_HELP = "Keep probability of hidden units: one value, or one per hidden layer joined by ':' (0.8:0.7:0.7:0.5). 1.0 = no dropout."
PRECISION_HELP = "Matmuls in float32, tf32 (CUDA only; faster there) or bf16 (slower); see README."
SUBSET_HELP = "With --train-size(s): a random subset drawn from each seed (as the dropout paper), or the first N images."
Device = typer.Option("auto", "--device", help="auto (CUDA when present), cpu, cuda, cuda:N or mps.")
DataDir = typer.Option(None, "--data-dir", help="Folder with your own copy of the four IDX files (.gz or not).",
                       file_okay=False)


def resolved(path: Optional[Path]) -> str | None:
    """A --data-dir as an absolute path, so that a run evaluated from another folder still finds it."""
    return str(path.expanduser().resolve()) if path else None


def max_norm_option(text: str | None) -> float | None:
    return None if text is None else parse_max_norms(text, "--max-norm")[0]


def run_folder_default(config: TrainConfig) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("results/runs") / f"{stamp}-keep{config.keep_label.replace(' ', '-')}-seed{config.seed}"


@app.command()
def train(
    keep_prob: str = typer.Option("0.7", help=KEEP_HELP),
    input_keep_prob: float = typer.Option(1.0, help="Keep probability of input pixels (1.0 = no input dropout)."),
    hidden: str = typer.Option("512,512,512,512", help="Hidden layer widths."),
    init: Init = typer.Option("tutorial", help="tutorial: truncated normal(0.1) weights, normal(0, 1) biases."),
    lr: float = typer.Option(0.001, help="Adam learning rate."),
    batch_size: int = typer.Option(100, help="Images per step."),
    epochs: int = typer.Option(15, help="Passes over the training set."),
    seed: int = typer.Option(DEFAULT_SEED, min=0, help="Seeds initial weights, subset, batch order and dropout masks."),
    max_norm: Optional[str] = typer.Option(None, help="Max-norm c: each hidden unit's incoming weights kept to norm <= c after every step (the dropout paper uses 3-4); none = off."),
    dataset: DatasetName = typer.Option("mnist", help="mnist is bundled; others need --data-dir or a download."),
    data_dir: Optional[Path] = DataDir,
    validation_size: int = typer.Option(5000, help="First N training images held out for validation (0 allowed)."),
    train_size: Optional[int] = typer.Option(None, help="Train on N images of the training part (default: all 55,000)."),
    subset: Subset = typer.Option("random", help=SUBSET_HELP),
    precision: Precision = typer.Option("float32", help=PRECISION_HELP),
    mc_samples: int = typer.Option(0, help="Also report Monte-Carlo dropout test accuracy over T passes."),
    device: str = Device,
    out: Optional[Path] = typer.Option(None, help="Run folder, new or empty (default: results/runs/TIME-keepP-seedS)."),
) -> None:
    """Train the tutorial network and save the run (weights, history.csv, run.json)."""
    keep = usage(parse_keep, keep_prob.replace(",", ":"), "--keep-prob")
    config = usage(lambda: TrainConfig(
        keep_prob=keep, input_keep_prob=input_keep_prob, hidden=parse_ints(hidden, "--hidden"), init=init.value, lr=lr,
        batch_size=batch_size, epochs=epochs, seed=seed, max_norm=max_norm_option(max_norm), dataset=dataset.value,
        data_dir=resolved(data_dir), validation_size=validation_size, train_size=train_size, subset=subset.value,
        precision=precision.value, mc_samples=mc_samples))
    with failures():
        from dropcli.commands import run_train

        run_train(config, device, out or run_folder_default(config), out is None, Terminal(), command=command_line())


@app.command()
def evaluate(
    run: Path = typer.Argument(..., help="Run directory or model.safetensors written by dropcli train."),
    split: SplitName = typer.Option("test", help="Which split to evaluate."),
    mc_samples: int = typer.Option(0, min=0, max=MAX_MC_SAMPLES, help="Add Monte-Carlo dropout accuracy over T stochastic passes."),
    mc_curve: Optional[str] = typer.Option(None, help="Monte-Carlo accuracy against the number of passes, e.g. 1,2,5,10,20,50,100, beside weight scaling."),
    repeats: int = typer.Option(5, min=1, max=100, help="With --mc-curve: independent repeats of each curve (their spread is shown)."),
    csv: Optional[Path] = typer.Option(None, help="Write per-class accuracy and the confusion matrix (or, with --mc-curve, the curve and its plot)."),
    data_dir: Optional[Path] = DataDir,
    device: str = Device,
) -> None:
    """Test accuracy and loss with dropout off, per-class accuracy, and Monte-Carlo dropout."""
    samples = usage(parse_ints, mc_curve, "--mc-curve") if mc_curve else None
    if samples and not all(1 <= t <= MAX_MC_SAMPLES for t in samples):
        usage(_raise, f"--mc-curve takes pass counts from 1 to {MAX_MC_SAMPLES:,}, e.g. 1,2,5,10,20,50,100")
    with failures():
        if samples:
            from dropcli.commands import run_mc_curve

            return run_mc_curve(run, split.value, tuple(sorted(set(samples))), repeats, csv, resolved(data_dir), device,
                                Terminal())
        from dropcli.commands import run_evaluate

        run_evaluate(run, split.value, mc_samples, csv, resolved(data_dir), device, Terminal())


def _raise(message: str):
    raise ValueError(message)


@app.command()
def predict(
    run: Path = typer.Argument(..., help="Run directory or model.safetensors written by dropcli train."),
    images: Optional[list[Path]] = typer.Argument(None, help="PNG/JPEG digit images.", exists=True, dir_okay=False),
    index: Optional[int] = typer.Option(None, min=0, max=9999, help="A test image by index (0-9999)."),
    invert: Optional[bool] = typer.Option(None, "--invert/--no-invert",
                                          help="Dark ink on light paper (default: decided from the image's border)."),
    mc_samples: int = typer.Option(0, min=0, max=MAX_MC_SAMPLES, help="T dropout-on passes: mean probability, its std and the entropy."),
    data_dir: Optional[Path] = DataDir,
    device: str = Device,
) -> None:
    """Predict a test image (by --index, or a random one) or your own image files."""
    if images and index is not None:
        usage(_raise, "give image files or --index, not both")
    with failures():
        from dropcli.commands import run_predict

        run_predict(run, images or [], index, invert, mc_samples, resolved(data_dir), device, Terminal(),
                    rng=random.Random())


def version_callback(value: bool) -> None:
    if value:
        from dropcli.provenance import code_version

        typer.echo(f"dropcli {code_version()}")
        raise typer.Exit()


@app.callback()
def common(version: bool = typer.Option(False, "--version", callback=version_callback, is_eager=True,
                                        help="Print the version (and the commit, in a checkout) and exit.")) -> None:
    pass


import dropcli.cli_studies  # noqa: E402,F401  (registers ablate, report, merge and slurm on the app)


def main() -> None:
    install_signal_handlers()
    app()
