"""The dropcli command line: parse options, build a config, call the library, print.

    $ dropcli train --keep-prob 0.7
    $ dropcli evaluate results/runs/<run>
    $ dropcli predict results/runs/<run> --index 0
    $ dropcli ablate --grid                  # and report, merge, slurm: cli_studies.py
    $ dropcli adopt results/ablation-lr      # an earlier dropcli's study: record its files' content

Results go to stdout, progress bars and errors to stderr. Bad input ends with a one-line
message naming the fix: exit 2 for usage errors, 1 for failures, never a traceback.
torch is imported inside the commands so that --help answers at once.
"""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path
from typing import Annotated, Optional

import typer

from dropcli import cli_studies
from dropcli.cli_options import (
    DEFAULTS,
    BatchSize,
    DataDir,
    DatasetOpt,
    Device,
    Epochs,
    EvalEvery,
    Hidden,
    InitOpt,
    InputKeepProb,
    Int,
    KeepProb,
    Lr,
    MaxNorm,
    McSamples,
    PrecisionOpt,
    Seed,
    SplitName,
    Steps,
    SubsetOpt,
    TrainSize,
    ValidationSize,
    Values,
    check_budget,
    command_line,
    parser,
    resolved,
)
from dropcli.config import MAX_MC_SAMPLES, TEST_SPLIT, TrainConfig, check_monte_carlo, fmt_keep, parse_ints
from dropcli.terminal import (
    OneLineErrors,
    Terminal,
    failures,
    install_signal_handlers,
    usage,
    usage_error,
)

app = typer.Typer(cls=OneLineErrors, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  help="Dropout ablations on MNIST: train, evaluate, predict and ablate the tutorial's network, "
                       "speaking in keep probabilities (1.0 = no dropout).")
D = DEFAULTS


def run_folder_default(config: TrainConfig) -> Path:
    """results/runs/<time>-keep<K>-seed<S>: a new folder per run (a taken name gets -2, -3, ...)."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("results/runs") / f"{stamp}-keep{config.keep_label.replace(' ', '-')}-seed{config.seed}"


@app.command()
def train(
    keep_prob: KeepProb = fmt_keep(D.keep_prob),
    input_keep_prob: InputKeepProb = D.input_keep_prob,
    hidden: Hidden = ",".join(map(str, D.hidden)),
    init: InitOpt = D.init,
    lr: Lr = D.lr,
    batch_size: BatchSize = D.batch_size,
    epochs: Epochs = D.epochs,
    steps: Steps = D.steps,
    eval_every: EvalEvery = D.eval_every,
    seed: Seed = D.seed,
    max_norm: MaxNorm = None,
    dataset: DatasetOpt = D.dataset,
    data_dir: DataDir = None,
    validation_size: ValidationSize = D.validation_size,
    train_size: TrainSize = D.train_size,
    subset: SubsetOpt = D.subset,
    precision: PrecisionOpt = D.precision,
    mc_samples: McSamples = D.mc_samples,
    device: Device = "auto",
    out: Annotated[Optional[Path], typer.Option(help="Run folder, new or empty (default: results/runs/TIME-keepP-seedS).")] = None,
) -> None:
    """Train the tutorial network and save the run (weights, history.csv, run.json)."""
    usage(check_budget, steps, epochs)
    config = usage(lambda: TrainConfig(
        keep_prob=tuple(keep_prob), input_keep_prob=input_keep_prob, hidden=tuple(hidden), init=getattr(init, "value", init),
        lr=lr, batch_size=batch_size, epochs=epochs, steps=steps, eval_every=eval_every, seed=seed, max_norm=max_norm,
        dataset=getattr(dataset, "value", dataset), data_dir=resolved(data_dir), validation_size=validation_size,
        train_size=train_size, subset=getattr(subset, "value", subset), precision=getattr(precision, "value", precision),
        mc_samples=mc_samples))
    if mc_samples:
        usage(check_monte_carlo, [config], f"--mc-samples {mc_samples}",
              "give --keep-prob or --input-keep-prob below 1, or leave out --mc-samples")
    with failures():
        from dropcli.commands import run_train

        run_train(config, device, out or run_folder_default(config), out is None, Terminal(), command=command_line())


RunArg = Annotated[Path, typer.Argument(help="Run directory or model.safetensors written by dropcli train.")]


@app.command()
def evaluate(
    run: RunArg,
    split: Annotated[SplitName, typer.Option(help="Which split to evaluate.")] = "test",
    mc_samples: Annotated[Int, typer.Option(min=0, max=MAX_MC_SAMPLES, help="Add Monte-Carlo dropout accuracy over T stochastic passes.")] = 0,
    mc_curve: Annotated[Optional[Values], typer.Option(parser=parser(parse_ints, "--mc-curve", Values), metavar="LIST",
                                                       help="Monte-Carlo accuracy against the number of passes, e.g. 1,2,5,10,20,50,100, beside weight scaling.")] = None,
    repeats: Annotated[Int, typer.Option(min=1, max=100, help="With --mc-curve: independent repeats of each curve (their spread is shown).")] = 5,
    csv: Annotated[Optional[Path], typer.Option(help="Write per-class accuracy and the confusion matrix to this new .csv file (with --mc-curve: the curve, and its plot beside it as .png).")] = None,
    data_dir: DataDir = None,
    device: Device = "auto",
) -> None:
    """Test accuracy and loss with dropout off, per-class accuracy, and Monte-Carlo dropout."""
    if mc_curve and not all(1 <= t <= MAX_MC_SAMPLES for t in mc_curve):
        usage_error(f"--mc-curve takes pass counts from 1 to {MAX_MC_SAMPLES:,}, e.g. 1,2,5,10,20,50,100")
    if csv is not None and csv.suffix.lower() != ".csv":
        usage_error(f"--csv names a .csv file (the plot goes beside it as .png), e.g. --csv {csv.with_suffix('.csv').name}")
    with failures():
        if csv is not None:
            from dropcli.files import new_output_file

            new_output_file(csv, "--csv")
            if mc_curve:
                new_output_file(csv.with_suffix(".png"), "--csv's plot")
        if mc_curve:
            from dropcli.eval_commands import run_mc_curve

            return run_mc_curve(run, split.value, tuple(sorted(set(mc_curve))), repeats, csv, resolved(data_dir), device,
                                Terminal())
        from dropcli.eval_commands import run_evaluate

        run_evaluate(run, split.value, mc_samples, csv, resolved(data_dir), device, Terminal())


@app.command()
def predict(
    run: RunArg,
    images: Annotated[Optional[list[Path]], typer.Argument(help="PNG/JPEG digit images.")] = None,
    index: Annotated[Optional[Int], typer.Option(min=0, max=TEST_SPLIT - 1, help=f"A test image by index (0-{TEST_SPLIT - 1}).")] = None,
    invert: Annotated[Optional[bool], typer.Option("--invert/--no-invert",
                                                   help="Dark ink on light paper (default: decided from the image's border).")] = None,
    mc_samples: Annotated[Int, typer.Option(min=0, max=MAX_MC_SAMPLES, help="T dropout-on passes: mean probability, its std and the entropy.")] = 0,
    data_dir: DataDir = None,
    device: Device = "auto",
) -> None:
    """Predict a test image (by --index, or a random one) or your own image files."""
    if images and index is not None:
        usage_error("give image files or --index, not both")
    for image in images or []:
        if not image.is_file():
            usage_error(f"{image} {'is a folder' if image.is_dir() else 'does not exist'}; give PNG or JPEG files of digits")
    with failures():
        from dropcli.eval_commands import run_predict

        run_predict(run, images or [], index, invert, mc_samples, resolved(data_dir), device, Terminal(),
                    rng=random.Random())


@app.command()
def adopt(out: Annotated[Path, typer.Argument(help="A study folder written by an earlier dropcli.")]) -> None:
    """Record the files an earlier dropcli wrote in a study folder (listed without their content) as
    dropcli's, so that report, merge and a resume may replace them: check them first. Raises
    DropcliError (exit 1) for a link inside or a folder that is not a study."""
    with failures():
        from dropcli.files import study_lock
        from dropcli.study import read_identity, study_folder

        if read_identity(out) is None:
            usage_error(f"{out} holds no study.json; adopt only a study folder that dropcli wrote")
        with study_lock(out):
            recorded = study_folder(out).adopt()
        term = Terminal()
        if not recorded:
            term.result(f"Nothing to record: every file dropcli lists in {out} has its content recorded.")
            return
        term.result(f"Recorded {len(recorded)} files as dropcli's: "
                    + ", ".join(str(p.relative_to(out)) for p in recorded) + ".")


def version_callback(value: bool) -> None:
    """--version: print dropcli's version (with the commit in a checkout) and exit."""
    if value:
        from dropcli.provenance import code_version

        typer.echo(f"dropcli {code_version()}")
        raise typer.Exit()


@app.callback()
def common(version: Annotated[bool, typer.Option("--version", callback=version_callback, is_eager=True,
                                                 help="Print the version (and the commit, in a checkout) and exit.")] = False) -> None:
    """The options every command shares (only --version)."""
    pass


for command in (cli_studies.ablate, cli_studies.report, cli_studies.merge, cli_studies.slurm):
    app.command()(command)


def main() -> None:
    """The app with signals as clean stops (the console script, entry.main, also guards the imports)."""
    install_signal_handlers()
    app()

