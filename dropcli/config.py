"""One typed config for a training run, the grid of an ablation, and the parsing of the lists the CLI accepts.

    $ dropcli train --keep-prob 0.8:0.7:0.7:0.5 --hidden 512,512,512,512
    $ dropcli ablate --keep-probs 0.5,0.7,0.8:0.7:0.7:0.5,1.0 --max-norms none,3

Everything here speaks in keep probabilities, as the tutorial does: 0.7 keeps 70% of the
units (PyTorch's drop rate p would be 0.3); 1.0 means no dropout layer at all. Per-layer keep
probabilities are joined with ':' in every command; ',' separates the values of a list.
Imports nothing heavy: the CLI's --help must stay fast. A little over 250 lines on purpose: the
run config, the grid, their limits and parsers are the project's one vocabulary, kept in one place.
"""

from __future__ import annotations

import dataclasses
import decimal
import enum
import json
import math
import re
from dataclasses import dataclass

from dropcli.fieldtypes import check_types, field_types

DATASETS = ("mnist", "fashion-mnist", "kmnist")
INITS = ("tutorial", "xavier", "kaiming")
PRECISIONS = ("float32", "tf32", "bf16")
SUBSETS = ("random", "first")  # how --train-size N picks its images from the training part
TRAIN_SPLIT = 60_000  # images in MNIST's training file; a --data-dir's own count is read from its files
TEST_SPLIT = 10_000  # images in MNIST's test file
DEFAULT_SEED = 777  # tutorial: tf.set_random_seed(777); seeds of a grid count up from it


class Stream(enum.IntEnum):
    """A run's independent random streams, each seeded by stream_seed(seed, stream): changing one
    purpose's draws never moves another's (a cell's numbers do not depend on its neighbours)."""

    WEIGHTS = 0  # initial weights (model.init_params)
    BATCHES = 1  # the batch order of each epoch (train.batch_generator)
    MASKS = 2  # the dropout masks while training (masks.py)
    MC = 3  # Monte-Carlo dropout passes when evaluating (evaluation.mc_generator)
    SUBSET = 4  # the random --train-size subset (data.subset_indices)


def stream_seed(seed: int, stream: Stream, *more: int) -> int:
    """A 64-bit seed for one purpose of one run (numpy's SeedSequence of [seed, stream, *more]);
    `more` tells apart several draws of one purpose (e.g. the repeats of an MC curve)."""
    import numpy as np

    return int(np.random.SeedSequence([seed, int(stream), *more]).generate_state(1, np.uint64)[0])


MIN_KEEP = 2.0**-32  # masks compare 32-bit draws: a smaller keep probability cannot be drawn
FLOAT32_TINY = 2.0**-126  # float32's smallest normal: the engine computes in float32, flushing denormals to 0
MAX_MC_SAMPLES = 10_000  # Monte-Carlo passes: the curve flattens by 100 (results/mc-curve); more is a typo
MAX_LAYERS = 64  # hidden layers: the tutorial has 4; a plain ReLU MLP (no normalisation) this deep no longer trains; more is a typo
MAX_STEPS = 100_000_000  # Adam steps of one cell: the dropout paper's longest runs took a few million; more is a typo
EQUIVALENCE_MARGIN = 0.2  # points: `report` calls differences within +-0.2 (20 of 10,000 test images) no different (README)
AUTO_WORKERS = 0  # ablate --workers: 0 picks the processes (layout.plan_layout: one single-threaded per core, or
# per GPU, where the grid repays starting them); 1 trains in the command's own process
EVAL_CHUNK = 2000  # rows per forward pass when evaluating; fixed so that every path rounds alike
EVALS_PER_BUDGET = 50  # with --steps: validations per run unless --eval-every says (1,000 images over 8,250 steps
# would otherwise be validated 825 times, once an epoch)


@dataclass(frozen=True)
class TrainConfig:
    """One training run, as the tutorial's defaults say (each field's comment gives the source).

    keep_prob is one keep probability per hidden layer (a single value is repeated); sizes are
    image counts; lr is Adam's step size. Construction checks every value (validate) and raises
    ValueError naming the option and the fix."""

    keep_prob: tuple[float, ...] = (0.7,)  # tutorial: keep_prob 0.7 while training; one value or one per hidden layer
    input_keep_prob: float = 1.0  # tutorial: no input dropout (the dropout paper suggests 0.8)
    hidden: tuple[int, ...] = (512, 512, 512, 512)  # tutorial: 784-512-512-512-512-10
    init: str = "tutorial"  # tutorial: truncated normal(0.1) weights, normal(0, 1) biases
    lr: float = 0.001  # tutorial: Adam, learning rate 0.001
    batch_size: int = 100  # tutorial: batch 100, remainder dropped (550 steps/epoch)
    epochs: int = 15  # tutorial: 15 epochs; with steps, the epochs those steps span (derived)
    steps: int | None = None  # None: epochs x steps_per_epoch; N: exactly N Adam steps, whatever the data size
    eval_every: int | None = None  # steps between validations (history rows); None: see eval_interval
    seed: int = DEFAULT_SEED
    max_norm: float | None = None  # dropout paper: each hidden unit's incoming weights kept to norm <= c (3-4)
    dataset: str = "mnist"
    data_dir: str | None = None  # None: the bundled, checksummed MNIST
    validation_size: int = 5_000  # tutorial: input_data's first 5,000 training images validate
    train_size: int | None = None  # None: all of the training part (55,000)
    subset: str = "random"  # with train_size: a random subset drawn from the seed (as the dropout paper), or the first N
    precision: str = "float32"  # opt-in: tf32 (CUDA tensor cores) or bf16 matmuls, both cost accuracy
    mc_samples: int = 0  # >0: also report Monte-Carlo dropout test accuracy over this many passes

    def __post_init__(self) -> None:
        check_types(self)  # before the conversions below, which would turn 5.5 into 5
        for name, (kind, _, sequence) in field_types(TrainConfig).items():  # numpy scalars as plain numbers, for JSON
            value = getattr(self, name)
            if kind in (int, float) and not sequence and value is not None:
                try:
                    object.__setattr__(self, name, kind(value))
                except OverflowError:
                    raise ValueError(f"--{name.replace('_', '-')} is out of range (got {value!r:.40})") from None
        try:
            keep = tuple(float(k) for k in self.keep_prob)
        except OverflowError:
            raise ValueError(f"--keep-prob is out of (0, 1] (got {self.keep_prob!r:.40})") from None
        if len(keep) == 1:
            keep = keep * len(self.hidden)
        object.__setattr__(self, "keep_prob", keep)
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if self.max_norm is not None:
            object.__setattr__(self, "max_norm", float(self.max_norm))
        self.validate()
        if self.steps is not None:  # the budget fixes the epochs it spans (the last may be partial)
            object.__setattr__(self, "epochs", -(-self.steps // self.steps_per_epoch))

    def validate(self) -> None:
        """Raise ValueError naming the option and the fix: a value of the wrong type (seed 5.5,
        validation_size 200.5, data_dir 123, a bool for a number) or out of its range. Sizes are
        checked against MNIST's 60,000 training images for the bundled data (data_dir None); with
        a data_dir, against the files when they are loaded (data.Dataset.part)."""
        check_types(self)
        if not self.hidden or any(h < 1 for h in self.hidden):
            raise ValueError(f"--hidden takes widths of at least 1 (got {' '.join(map(str, self.hidden)) or 'none'})")
        if len(self.hidden) > MAX_LAYERS:
            raise ValueError(f"--hidden has {len(self.hidden):,} layers; give at most {MAX_LAYERS}")
        if len(self.keep_prob) != len(self.hidden):
            raise ValueError(
                f"--keep-prob has {len(self.keep_prob)} values for {len(self.hidden)} hidden layers; "
                f"give one value or exactly {len(self.hidden)} joined by ':'"
            )
        for k in self.keep_prob:
            check_keep(k, "--keep-prob")
        check_keep(self.input_keep_prob, "--input-keep-prob")
        if self.init not in INITS:
            raise ValueError(f"--init must be one of {', '.join(INITS)}, not {self.init!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"--lr must be a positive number, such as 0.001 (got {self.lr})")
        if self.lr < FLOAT32_TINY:  # 1e-50 trained with a step of exactly 0
            raise ValueError(f"--lr {self.lr:g} is below 1.2e-38, float32's smallest normal number, so every step "
                             "would be 0; use e.g. 0.001")
        check_max_norm(self.max_norm)
        for name, value in (("--batch-size", self.batch_size), ("--epochs", self.epochs), ("--steps", self.steps),
                            ("--eval-every", self.eval_every)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1 (got {value})")
        if self.seed < 0 or self.seed >= 2**63:
            raise ValueError(f"--seed must be a whole number from 0 to 2**63 - 1 (got {self.seed})")
        if self.dataset not in DATASETS:
            raise ValueError(f"--dataset must be one of {', '.join(DATASETS)}, not {self.dataset!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"--precision must be one of {', '.join(PRECISIONS)}")
        if self.subset not in SUBSETS:
            raise ValueError(f"--subset must be one of {', '.join(SUBSETS)}, not {self.subset!r}")
        self._check_sizes()
        if self.batch_size > self.n_train:
            raise ValueError(
                f"--batch-size {self.batch_size} is larger than the {self.n_train} training images; "
                "lower --batch-size or raise --train-size"
            )
        if not 0 <= self.mc_samples <= MAX_MC_SAMPLES:
            raise ValueError(f"--mc-samples must be in 0..{MAX_MC_SAMPLES:,} (0 = off; the accuracy settles by 100)")
        if self.total_steps > MAX_STEPS:
            raise ValueError(f"{'--steps' if self.steps else '--epochs'} asks for {self.total_steps:,} Adam steps, more "
                             f"than {MAX_STEPS:,} (days on a GPU for one cell); give fewer")

    def _check_sizes(self) -> None:
        bundled = self.data_dir is None  # MNIST-sized files; a --data-dir's sizes are checked when it is read
        if self.validation_size < 0 or (bundled and self.validation_size >= TRAIN_SPLIT):
            raise ValueError(f"--validation-size must be in 0..{TRAIN_SPLIT - 1} (got {self.validation_size})")
        if self.train_size is None and self.validation_size >= TRAIN_SPLIT:
            raise ValueError(f"--validation-size {self.validation_size} leaves none of an MNIST-sized training file "
                             "to train on; give --train-size N for a larger file")
        part = TRAIN_SPLIT - self.validation_size
        if self.train_size is not None and bundled and not 1 <= self.train_size <= part:
            raise ValueError(
                f"--train-size must be in 1..{part}: the training part holds {part} images "
                f"after {self.validation_size} for validation (got {self.train_size})"
            )
        if self.train_size is not None and self.train_size < 1:
            raise ValueError(f"--train-size must be at least 1 (got {self.train_size})")

    @property
    def n_train(self) -> int:
        """Training images a run uses: train_size, or the whole training part (60,000 - validation_size)."""
        return self.train_size if self.train_size is not None else TRAIN_SPLIT - self.validation_size

    @property
    def sampling(self) -> str:
        """How the training images were chosen: 'all', or the subset rule for --train-size."""
        return "all" if self.train_size is None else self.subset

    @property
    def steps_per_epoch(self) -> int:
        """Adam steps per epoch: n_train // batch_size (the tutorial drops the last partial batch)."""
        return self.n_train // self.batch_size  # the tutorial drops the last partial batch

    @property
    def total_steps(self) -> int:
        """Adam steps a run takes: `steps`, or epochs x steps_per_epoch."""
        return self.steps if self.steps is not None else self.epochs * self.steps_per_epoch

    @property
    def eval_interval(self) -> int:
        """Steps between validations (and history rows): eval_every; else with a step budget
        steps / EVALS_PER_BUDGET (rounded, at least 1), without one an epoch's steps. A run is also
        validated after its last step."""
        if self.eval_every is not None:
            return self.eval_every
        return self.steps_per_epoch if self.steps is None else max(1, round(self.steps / EVALS_PER_BUDGET))

    @property
    def validations(self) -> int:
        """Validation passes (history rows) of a run: every eval_interval steps, and after the last."""
        return -(-self.total_steps // self.eval_interval)

    @property
    def keep_label(self) -> str:
        """'0.7' for a uniform keep probability, '0.8 0.7 0.7 0.5' per layer (exact decimals; the
        files' form, which no spreadsheet reads as a time; the command line joins them with ':')."""
        return fmt_keep(self.keep_prob)

    @property
    def mean_keep(self) -> float:
        """The mean of the hidden keep probabilities (runs.csv's keep_prob_mean)."""
        return sum(self.keep_prob) / len(self.keep_prob)

    @property
    def sizes(self) -> tuple[int, ...]:
        """Layer widths from input to output: (784, *hidden, 10)."""
        return (784, *self.hidden, 10)

    def to_dict(self) -> dict:
        """Every field as plain Python values (tuples stay tuples)."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """to_dict as JSON with sorted keys."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """The inverse of to_dict; raises ValueError for anything that is not such a dict."""
        if not isinstance(d, dict):
            raise ValueError(f"a config must be a JSON object, not {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        try:
            return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in names})
        except TypeError as e:
            raise ValueError(str(e)) from None

    def replace(self, **changes) -> TrainConfig:
        """A copy with `changes`; a uniform keep probability follows a change of --hidden's depth.
        Raises ValueError as the constructor does."""
        if "hidden" in changes and "keep_prob" not in changes and len(set(self.keep_prob)) == 1:
            changes["keep_prob"] = self.keep_prob[:1]
        return dataclasses.replace(self, **changes)


def check_keep(k: float, what: str | None = None) -> float:
    """k itself if it is a keep probability the masks can draw, in [2**-32, 1]; else ValueError,
    its message led by `what` (the option) where given."""
    lead = f"{what}: " if what else ""
    if not 0.0 < k <= 1.0:
        raise ValueError(f"{lead}keep probability {fmt_number(k)} is outside (0, 1]; use e.g. 0.7 (1.0 = no dropout)")
    if k < MIN_KEEP:
        raise ValueError(f"{lead}keep probability {k:g} is below 2**-32, the finest the masks draw; use at least 0.000001")
    return k


def check_max_norm(c: float | None, what: str = "--max-norm") -> float | None:
    """c itself if it is None (no constraint) or a positive finite number; else ValueError naming `what`."""
    if c is not None and not (math.isfinite(c) and c > 0):
        raise ValueError(f"{what} takes positive numbers such as 3, or none (got {fmt_number(c)})")
    if c is not None and c < FLOAT32_TINY:  # 1e-50 is 0 in float32: weights of 0, a cost of nan
        raise ValueError(f"{what} {c:g} is below 1.2e-38, float32's smallest normal number; give e.g. 3, or none")
    return c


def fmt_number(x: float) -> str:
    """The shortest decimal that reads back as exactly x ('0.7', '1', '0.9999999'), never an exponent."""
    if not math.isfinite(x):
        return str(x)
    text = format(decimal.Decimal(repr(float(x))), "f")  # repr: the shortest exact form; "f": no exponent
    return text[:-2] if text.endswith(".0") else text


def fmt_keep(keep: tuple[float, ...]) -> str:
    """'0.7' for a uniform keep probability, '0.8 0.7 0.7 0.5' per layer (exact decimals)."""
    if len(set(keep)) == 1:
        return fmt_number(keep[0])
    return " ".join(fmt_number(k) for k in keep)


def fmt_max_norm(c: float | None) -> str:
    """'none' for no constraint, else the exact decimal of c."""
    return "none" if c is None else fmt_number(c)


def trim(text: str) -> str:
    """`text` without the spaces and tabs around it: the blanks a number may have around it in an
    option or list. str.strip also strips line breaks and the separators \\x1c-\\x1f, and float()
    every Unicode space (no-break, ideographic), which no one types around a number."""
    return str(text).strip(" \t")


def split_list(text: str, what: str, example: str) -> list[str]:
    """The parts of a comma-separated option value, trimmed (trim); ValueError naming `what` for an empty part."""
    parts = [trim(p) for p in str(text).split(",")]
    if any(p == "" for p in parts):
        raise ValueError(f"{what} needs a comma-separated list, e.g. {example} (got {text!r})")
    return parts


# a number as dropcli writes it and a spreadsheet saves it, the one rule of options and of table cells:
# Python's int() and float() also take ' 5', '7_77' and other scripts' digits ('٥'), which neither holds
PLAIN_NUMBER = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?|[+-]?(inf|infinity|nan)", re.IGNORECASE)
PLAIN_INT = re.compile(r"[+-]?[0-9]+")
MAX_DIGITS = 30  # a whole number's digits: past every range here (and a float's), where int() stops at 4,300


def too_long(*texts: str) -> str | None:
    """What an option says (after its name) where one of `texts`, whole numbers in decimal digits
    (PLAIN_INT), has more than MAX_DIGITS digits past its sign and leading zeros; else None."""
    longest = max((trim(t) for t in texts), key=lambda t: len(t.lstrip("+-0")))
    digits = len(longest.lstrip("+-0"))
    if digits <= MAX_DIGITS:
        return None
    return f"takes whole numbers of at most {MAX_DIGITS} digits (got one of {digits:,})"


def not_held(text: str) -> str | None:
    """Where a PLAIN_NUMBER text holds digits a float cannot, so that it would read as inf (past
    1.7976931348623157e308) or as 0 (below 2.5e-324, half the smallest denormal): why, naming the
    text ("a float holds sizes from about 5e-324 to 1.8e308; 1e-400 would read as 0"); else None."""
    t = trim(text)
    if "n" in t.lower():  # inf, infinity, nan: said in words, not digits
        return None
    x, mantissa = float(t), re.split("[eE]", t)[0]
    if math.isinf(x) or (x == 0 and any(c in "123456789" for c in mantissa)):
        return f"a float holds sizes from about 5e-324 to 1.8e308; {t} would read as {x:g}"
    return None


class NotHeld(ValueError):
    """A JSON number no setting can hold (held_float, held_int); its message is the number's text,
    shortened in the middle past 40 characters, and why: '1e-400, a number a float cannot hold'."""

    def __init__(self, text: str, why: str):
        shown = text if len(text) <= 40 else f"{text[:24]}...{text[-12:]} ({len(text):,} characters)"
        super().__init__(f"{shown}, {why}")


def held_float(text: str) -> float:
    """json.loads' parse_float for files dropcli reads (study.json, a checkpoint's metadata): the
    float, or NotHeld where the number would read as 0 or inf (1e-400, 1e400; not_held)."""
    if not_held(text):
        raise NotHeld(text, "a number a float cannot hold")
    return float(text)


def no_constant(name: str):
    """json.loads' parse_constant for the same files: NotHeld for NaN, Infinity and -Infinity,
    which Python's json reads and no JSON standard allows (dropcli writes null, or refuses)."""
    raise NotHeld(name, "which JSON does not allow")


def held_int(text: str) -> int:
    """json.loads' parse_int for the same files: the int, or NotHeld past MAX_DIGITS digits (a
    setting read as a float overflows past 309; none of dropcli's whole numbers has 31)."""
    if too_long(text):
        raise NotHeld(text, f"a whole number of more than {MAX_DIGITS} digits")
    return int(text)


def parse_number(text: str, what: str) -> float:
    """A finite float from `text` (decimal digits, PLAIN_NUMBER; spaces and tabs around it allowed,
    trim); ValueError naming `what` (the option) otherwise."""
    try:
        if not PLAIN_NUMBER.fullmatch(trim(text)):
            raise ValueError
        value = float(trim(text))
    except ValueError:
        raise ValueError(f"{what} takes numbers (got {text!r})") from None
    if said := not_held(text):
        raise ValueError(f"{what} takes numbers a float can hold ({said})")
    if not math.isfinite(value):
        raise ValueError(f"{what} takes finite numbers (got {text!r})")
    return value


def parse_keep(text: str, what: str = "--keep-prob") -> tuple[float, ...]:
    """One network's keep probabilities: '0.7', or per hidden layer '0.8:0.7:0.7:0.5'."""
    parts = [trim(p) for p in str(text).split(":")]
    if any(p == "" for p in parts):
        raise ValueError(f"{what} takes a keep probability such as 0.7, or one per layer joined by ':' "
                         f"such as 0.8:0.7:0.7:0.5 (got {text!r})")
    return tuple(check_keep(parse_number(p, what), what) for p in parts)


def parse_ints(text: str, what: str) -> tuple[int, ...]:
    """'512,512' -> (512, 512); ValueError naming `what` for anything but whole numbers in decimal
    digits (Python's int() also takes '7_77' and other scripts' digits)."""
    parts = split_list(text, what, "512,512")
    if not all(PLAIN_INT.fullmatch(p) for p in parts):
        raise ValueError(f"{what} takes whole numbers (got {text!r})")
    if said := too_long(*parts):
        raise ValueError(f"{what} {said}")
    return tuple(int(p) for p in parts)



def check_monte_carlo(configs: list[TrainConfig], option: str, fix: str, trained: bool = False) -> None:
    """Monte-Carlo dropout needs dropout: refuse (ValueError naming `option`, then `fix`) passes
    asked of networks that all keep 1.0 everywhere, whose every pass would be the same. The one
    rule of train --mc-samples, ablate --mc-samples (a grid with some dropout passes: its keep-1
    cells record their plain accuracy), evaluate --mc-samples and --mc-curve, predict --mc-samples.
    trained: the configs are of a run already trained (evaluate, predict), not one to train."""
    if any(min(c.input_keep_prob, *c.keep_prob) < 1.0 for c in configs):
        return
    what = "this run was trained with" if trained else ("every cell of the grid has" if len(configs) > 1
                                                         else "the network has")
    raise ValueError(f"{option} needs dropout, and {what} keep 1.0 everywhere, so every Monte-Carlo pass "
                     f"would be the same; {fix}")
