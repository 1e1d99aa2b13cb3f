"""The command line's shared options, declared once, with their defaults taken from the config.

    $ dropcli train --keep-prob 0.8:0.7:0.7:0.5 --lr 0.001
    $ dropcli ablate --keep-probs 0.5,0.7,1.0 --max-norms none,3 --seeds 5
    $ dropcli ablate --keep-probs 0.7,1 --lrs 0.0003,0.003 --hiddens 512x4,1024x4 --steps 8250

Each option is an `Annotated` alias (Typer's way to share an option between commands); its default
is the TrainConfig or GridSpec field it sets, so `--help` and the library cannot disagree (a test
compares them), and the running command is written back as the user would type it
(command_line: the resume hint, the Slurm scripts). Lists are parsed here by Typer `parser=` functions that turn the config's
ValueError into `typer.BadParameter` (exit 2, one line). Nothing below the command line imports
this module.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer
from pydantic_core import PydanticCustomError, core_schema

try:  # typer >= 0.26 vendors click
    from typer._click.globals import get_current_context
except ImportError:  # older typer runs on click itself
    from click.globals import get_current_context

from dropcli.config import (
    AUTO_WORKERS,
    DATASETS,
    DEFAULT_SEED,
    EVALS_PER_BUDGET,
    INITS,
    MAX_MC_SAMPLES,
    PLAIN_INT,
    PLAIN_NUMBER,
    PRECISIONS,
    SUBSETS,
    TrainConfig,
    fmt_keep,
    not_held,
    parse_ints,
    parse_keep,
    too_long,
    trim,
)
from dropcli.errors import WORDS
from dropcli.grid import (
    DEFAULT_SEEDS,
    MAX_CELLS,
    GridSpec,
    parse_input_keeps,
    parse_keep_list,
    parse_lrs,
    parse_max_norms,
    parse_widths_list,
)

DEFAULTS = TrainConfig()  # every option's default is read from here (one definition of each fact)
METRICS = ("test_accuracy", "test_accuracy_at_best")  # what a study summary may compare (report.METRICS)


def choices(name: str, values: tuple[str, ...]) -> type[Enum]:
    """A Typer choice type built from the config's tuple (one definition of each choice)."""
    return Enum(name, [(v, v) for v in values], type=str)


def _plain(pattern, error_type: str) -> Callable:
    """A pydantic before-validator: a str that `pattern` does not match is refused with `error_type`
    (the type option_message words as 'takes a whole number' or 'takes a number'), and in dropcli's
    words a whole number of more than MAX_DIGITS digits (10**330 lockstep cells divided to 0.0) or
    a number a float cannot hold (config.not_held: --lr 1e-400 had said "got 0.0")."""
    def check(value):
        if isinstance(value, str) and not pattern.fullmatch(trim(value)):
            raise PydanticCustomError(error_type, "not a plain number")
        if isinstance(value, str) and pattern is PLAIN_INT and (said := too_long(value)):
            raise PydanticCustomError(WORDS, said)
        if isinstance(value, str) and pattern is PLAIN_NUMBER and (said := not_held(value)):
            raise PydanticCustomError(WORDS, f"takes numbers a float can hold ({said})")
        return value

    return check


class Int(int):
    """The type of every whole-number option: decimal digits only (config.PLAIN_INT, the rule of the
    list options such as --seed-list). Typer checks an option's type and range with pydantic, whose
    lax int also reads '1_0' as 10; this pydantic hook refuses it first. The value is a plain int;
    `--help` names the type 'int'."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source, handler):
        return core_schema.no_info_before_validator_function(_plain(PLAIN_INT, "int_parsing"), core_schema.int_schema())


class Float(float):
    """The type of every number option: config.PLAIN_NUMBER, the rule of --keep-probs and of table
    cells (pydantic's lax float reads '0.00_1' as 0.001); the value is a plain float, and `--help` names the type 'float'."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source, handler):
        return core_schema.no_info_before_validator_function(_plain(PLAIN_NUMBER, "float_parsing"),
                                                             core_schema.float_schema())


Int.__name__, Float.__name__ = "int", "float"  # what --help shows: <int>, <float range>

Init = choices("Init", INITS)
DatasetName = choices("DatasetName", DATASETS)
Precision = choices("Precision", PRECISIONS)
Subset = choices("Subset", SUBSETS)
SplitName = choices("SplitName", ("test", "validation"))
Metric = choices("Metric", METRICS)
Executor = choices("Executor", ("local", "ray"))


def parser(parse: Callable, what: str, wrap: type = tuple) -> Callable[[str], object]:
    """A Typer parser= function: parse(text, what), its ValueError turned into typer.BadParameter;
    the value wrapped in `wrap` (a class Typer treats as one value, not a tuple of values)."""
    def parse_option(text):
        if not isinstance(text, str):
            return text
        try:
            value = wrap(parse(text, what))
        except ValueError as e:
            raise typer.BadParameter(str(e)) from None
        if isinstance(value, tuple):
            value.text = text  # as typed: how typed_options writes the command again
        return value

    return parse_option


class Keep(tuple):
    """One network's keep probabilities: (0.7,) or one per hidden layer; `.text` as typed."""

    text = ""


class Values(tuple):
    """A parsed comma-separated list of an option; `.text` as typed."""

    text = ""


def _one_max_norm(text: str, what: str) -> float | None:
    values = parse_max_norms(text, what)
    if len(values) != 1:
        raise ValueError(f"{what} takes one value, e.g. 3 or none")
    return values[0]


def resolved(path: Optional[Path]) -> str | None:
    """A --data-dir as an absolute path, so that a run evaluated from another folder still finds it;
    a usage error (exit 2, as a missing RUN or image) where it is not a folder."""
    if path and not path.expanduser().is_dir():
        from dropcli.terminal import usage_error

        usage_error(f"--data-dir {path} {'is not a folder' if path.exists() else 'does not exist'}; "
                    "give the folder that holds the four IDX files")
    return str(path.expanduser().resolve()) if path else None


KEEP_HELP = "Keep probability of hidden units: one value, or one per hidden layer joined by ':' (0.8:0.7:0.7:0.5). 1.0 = no dropout."
# run settings shared by train, ablate and slurm: (default from TrainConfig)
KeepProb = Annotated[Keep, typer.Option("--keep-prob", parser=parser(lambda t, w: parse_keep(t.replace(",", ":"), w), "--keep-prob", Keep),
                                        metavar="KEEP", help=KEEP_HELP)]
InputKeepProb = Annotated[Float, typer.Option(help="Keep probability of input pixels (1.0 = no input dropout).")]
Hidden = Annotated[Values, typer.Option(parser=parser(parse_ints, "--hidden", Values), metavar="WIDTHS", help="Hidden layer widths.")]
InitOpt = Annotated[Init, typer.Option("--init", help="tutorial: truncated normal(0.1) weights, normal(0, 1) biases.")]
Lr = Annotated[Float, typer.Option(help="Adam learning rate (the tutorial's 0.001).")]
BatchSize = Annotated[Int, typer.Option(help="Images per step (the tutorial's 100).")]
Epochs = Annotated[Int, typer.Option(help="Passes over the training set (the tutorial's 15).")]
Steps = Annotated[Optional[Int], typer.Option(min=1, help="Train for exactly N Adam steps whatever the data size, "
                                              "instead of --epochs (the last epoch may be partial).")]
EvalEvery = Annotated[Optional[Int], typer.Option(min=1, help="Validate (a history row) every N steps and after the last "
                                                  f"(default: every epoch; with --steps, steps/{EVALS_PER_BUDGET}).")]
Seed = Annotated[Int, typer.Option(min=0, max=2**63 - 1, help="Seeds initial weights, subset, batch order and dropout masks.")]
MaxNorm = Annotated[Optional[str], typer.Option(parser=parser(_one_max_norm, "--max-norm", lambda v: v), metavar="C",
                                                 help="Max-norm c: each hidden unit's incoming weights kept to norm <= c after every step (the dropout paper uses 3-4); none = off.")]
DatasetOpt = Annotated[DatasetName, typer.Option("--dataset", help="mnist is bundled; others need --data-dir.")]
DataDir = Annotated[Optional[Path], typer.Option("--data-dir", help="Folder with your own copy of the four IDX files (.gz or not).")]
ValidationSize = Annotated[Int, typer.Option(help="First N training images held out for validation (0 allowed).")]
TrainSize = Annotated[Optional[Int], typer.Option(help="Train on N images of the training part (default: all of it).")]
SubsetOpt = Annotated[Subset, typer.Option("--subset", help="With --train-size(s): a random subset drawn from each seed (as the dropout paper), or the first N images.")]
PrecisionOpt = Annotated[Precision, typer.Option("--precision", help="Matmuls in float32, tf32 (CUDA only; faster there) or bf16 (slower); see README.")]
McSamples = Annotated[Int, typer.Option(min=0, max=MAX_MC_SAMPLES, help="Also report Monte-Carlo dropout test accuracy over T passes (0 = off).")]
Device = Annotated[str, typer.Option("--device", help="auto (CUDA when present), cpu, cuda, cuda:N or mps.")]
# the grid's axes (ablate, slurm)
GridFlag = Annotated[bool, typer.Option("--grid", help="The standard grid: keep " + ", ".join(fmt_keep(k) for k in GridSpec().keep_probs) + ".")]
KeepProbs = Annotated[Optional[Values], typer.Option(parser=parser(parse_keep_list, "--keep-probs", Values), metavar="LIST",
                                                      help="Hidden keep probabilities, e.g. 0.5,0.7,1.0; per layer with ':' (0.8:0.7:0.7:0.5).")]
InputKeepProbs = Annotated[Values, typer.Option(parser=parser(parse_input_keeps, "--input-keep-probs", Values), metavar="LIST",
                                                help="Input keep probabilities (the dropout paper suggests 0.8).")]
MaxNorms = Annotated[Values, typer.Option(parser=parser(parse_max_norms, "--max-norms", Values), metavar="LIST",
                                          help="Max-norm values, e.g. none,3 (none = no constraint).")]
TrainSizes = Annotated[Optional[Values], typer.Option(parser=parser(parse_ints, "--train-sizes", Values), metavar="LIST",
                                                       help="Training set sizes, e.g. 1000,10000 (default: the whole training part).")]
Lrs = Annotated[Optional[Values], typer.Option(parser=parser(parse_lrs, "--lrs", Values), metavar="LIST",
                                                help="Adam learning rates, e.g. 0.0003,0.001,0.003 (default: --lr alone).")]
Hiddens = Annotated[Optional[Values], typer.Option(parser=parser(parse_widths_list, "--hiddens", Values), metavar="LIST",
                                                   help="Hidden widths of each network, e.g. 512x4,1024x4 (WxN: N layers of W; "
                                                        "or per layer 1024:512:512; default: --hidden alone).")]
Seeds = Annotated[Optional[Int], typer.Option(min=1, max=MAX_CELLS, help=f"Number of seeds, counted from {DEFAULT_SEED} (default: {DEFAULT_SEEDS}).")]
SeedList = Annotated[Optional[Values], typer.Option(parser=parser(parse_ints, "--seed-list", Values), metavar="LIST", help="Explicit seeds, e.g. 1,2,3.")]
ParallelModels = Annotated[Int, typer.Option(min=0, help="Most cells trained together in lockstep (0 = the size measured fastest on this machine, once, where the grid repays timing it; else 1; 1 = one by one).")]
RayCpusPerTask = Annotated[Float, typer.Option(min=0.01, max=65536, help="With --executor ray: CPUs per task where tasks run on CPUs.")]
Workers = Annotated[Int, typer.Option(min=0, help=f"Processes training groups side by side ({AUTO_WORKERS} = one single-threaded worker per core, or per GPU, where the grid repays starting them; 1 = this process alone, on all its threads).")]
MetricOpt = Annotated[Metric, typer.Option("--metric", help="What the summary compares: final test accuracy, or test accuracy at each run's best validation epoch.")]
Baseline = Annotated[Optional[str], typer.Option(help="The configuration each one is compared with, as axis=value pairs (other axes match): default keep=1,input_keep=1.")]
Power = Annotated[Optional[Float], typer.Option(max=100.0, metavar="POINTS",
                                                help="Also say how many seeds detect a paired difference of POINTS (above 0) at 80% power after Holm, from this study's paired SDs.")]
Tests = Annotated[Optional[Int], typer.Option(min=1, help="With --power: the difference tests of the planned study's Holm family (default: this study's).")]
EquivalenceMargin = Annotated[Float, typer.Option(max=100.0, help="Equivalence margin in points of accuracy, above 0: a difference shown to lie within +-margin (two one-sided tests, Holm-adjusted) is called no different.")]


def typed_options(only=None, skip: tuple[str, ...] = ()) -> list[str]:
    """The running command's options as the user would type them, from the parsed values (not
    sys.argv): those that differ from their defaults, limited to the names in `only`."""
    ctx = get_current_context()
    parts = []
    for p in ctx.command.params:
        value, default = ctx.params.get(p.name), p.default
        norm = [str(getattr(v, "text", None) or getattr(v, "value", v)) for v in (value, default)]
        if (p.name in skip or (only is not None and p.name not in only) or value is None or norm[0] == norm[1]
                or not getattr(p, "opts", None)):
            continue
        if getattr(p, "is_flag", False):
            parts += [p.opts[0]] if value else []
        elif p.opts[0].startswith("-"):
            parts += [p.opts[0], norm[0]]
        else:
            parts.append(norm[0])
    return parts


def command_line(skip: tuple[str, ...] = ()) -> str:
    """The running command as the user would type it, on one line (streams.shell_command)."""
    from dropcli.streams import shell_command

    return shell_command("dropcli", get_current_context().info_name, *typed_options(skip=skip))


def check_budget(steps: int | None, epochs: int) -> None:
    """Refuse --epochs beside --steps (the step budget sets the epochs): ValueError, which the
    commands turn into a usage error (terminal.usage, exit 2)."""
    if steps is not None and epochs != DEFAULTS.epochs:
        raise ValueError("--steps sets the number of epochs; give --steps or --epochs, not both")
