"""One typed config for a training run, and the parsing of the lists the CLI accepts.

    $ dropcli train --keep-prob 0.8,0.7,0.7,0.5 --hidden 512,512,512,512

Everything here speaks in keep probabilities, as the tutorial does: 0.7 keeps 70% of the
units (PyTorch's drop rate p would be 0.3); 1.0 means no dropout layer at all.
Imports nothing heavy: the CLI's --help must stay fast.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

DATASETS = ("mnist", "fashion-mnist", "kmnist")
INITS = ("tutorial", "xavier", "kaiming")
PRECISIONS = ("float32", "tf32", "bf16")
TRAIN_SPLIT = 60_000  # images in every MNIST-format training file


@dataclass(frozen=True)
class TrainConfig:
    keep_prob: tuple[float, ...] = (0.7,)  # tutorial: keep_prob 0.7 while training; one value or one per hidden layer
    input_keep_prob: float = 1.0  # tutorial: no input dropout (the dropout paper suggests 0.8)
    hidden: tuple[int, ...] = (512, 512, 512, 512)  # tutorial: 784-512-512-512-512-10
    init: str = "tutorial"  # tutorial: truncated normal(0.1) weights, normal(0, 1) biases
    lr: float = 0.001  # tutorial: Adam, learning rate 0.001
    batch_size: int = 100  # tutorial: batch 100, remainder dropped (550 steps/epoch)
    epochs: int = 15  # tutorial: 15 epochs
    seed: int = 777  # tutorial: tf.set_random_seed(777)
    dataset: str = "mnist"
    data_dir: str | None = None  # None: the bundled, checksummed MNIST
    validation_size: int = 5_000  # tutorial: input_data's first 5,000 training images validate
    train_size: int | None = None  # None: all of the training part (55,000)
    precision: str = "float32"  # opt-in: tf32 (CUDA tensor cores) or bf16 matmuls, both cost accuracy
    mc_samples: int = 0  # >0: also report Monte-Carlo dropout test accuracy over this many passes

    def __post_init__(self) -> None:
        keep = tuple(float(k) for k in self.keep_prob)
        if len(keep) == 1:
            keep = keep * len(self.hidden)
        object.__setattr__(self, "keep_prob", keep)
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the option and the fix."""
        if not self.hidden or any(h < 1 for h in self.hidden):
            raise ValueError("--hidden takes widths of at least 1, e.g. --hidden 512,512,512,512")
        if len(self.keep_prob) != len(self.hidden):
            raise ValueError(
                f"--keep-prob has {len(self.keep_prob)} values for {len(self.hidden)} hidden layers; "
                f"give one value or exactly {len(self.hidden)}, e.g. --keep-prob 0.7"
            )
        for k in (*self.keep_prob, self.input_keep_prob):
            check_keep(k)
        if self.init not in INITS:
            raise ValueError(f"--init must be one of {', '.join(INITS)}, not {self.init!r}")
        if not self.lr > 0:
            raise ValueError(f"--lr must be positive, e.g. --lr 0.001 (got {self.lr})")
        for name, value in (("--batch-size", self.batch_size), ("--epochs", self.epochs)):
            if value < 1:
                raise ValueError(f"{name} must be at least 1 (got {value})")
        if self.dataset not in DATASETS:
            raise ValueError(f"--dataset must be one of {', '.join(DATASETS)}, not {self.dataset!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"--precision must be one of {', '.join(PRECISIONS)}")
        if not 0 <= self.validation_size < TRAIN_SPLIT:
            raise ValueError(f"--validation-size must be in 0..{TRAIN_SPLIT - 1} (got {self.validation_size})")
        part = TRAIN_SPLIT - self.validation_size
        if self.train_size is not None and not 1 <= self.train_size <= part:
            raise ValueError(
                f"--train-size must be in 1..{part}: the training part holds {part} images "
                f"after {self.validation_size} for validation (got {self.train_size})"
            )
        if self.batch_size > self.n_train:
            raise ValueError(
                f"--batch-size {self.batch_size} is larger than the {self.n_train} training images; "
                "lower --batch-size or raise --train-size"
            )
        if self.mc_samples < 0:
            raise ValueError("--mc-samples must be 0 (off) or more")

    @property
    def n_train(self) -> int:
        return self.train_size if self.train_size is not None else TRAIN_SPLIT - self.validation_size

    @property
    def steps_per_epoch(self) -> int:
        return self.n_train // self.batch_size  # the tutorial drops the last partial batch

    @property
    def keep_label(self) -> str:
        """'0.7' for a uniform keep probability, '0.8 0.7 0.7 0.5' per layer."""
        return fmt_keep(self.keep_prob)

    @property
    def sizes(self) -> tuple[int, ...]:
        return (784, *self.hidden, 10)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in names})

    def replace(self, **changes) -> TrainConfig:
        if "hidden" in changes and "keep_prob" not in changes and len(set(self.keep_prob)) == 1:
            changes["keep_prob"] = self.keep_prob[:1]
        return dataclasses.replace(self, **changes)


def check_keep(k: float) -> float:
    if not 0.0 < k <= 1.0:
        raise ValueError(f"keep probability {k:g} is outside (0, 1]; use e.g. 0.7 (1.0 = no dropout)")
    return k


def fmt_keep(keep: tuple[float, ...]) -> str:
    if len(set(keep)) == 1:
        return f"{keep[0]:g}"
    return " ".join(f"{k:g}" for k in keep)


def parse_floats(text: str, what: str) -> tuple[float, ...]:
    """'0.5,0.7' -> (0.5, 0.7); raises ValueError naming `what`."""
    parts = [p.strip() for p in str(text).split(",")]
    if not parts or any(p == "" for p in parts):
        raise ValueError(f"{what} needs a comma-separated list of numbers, e.g. 0.5,0.7,1.0 (got {text!r})")
    try:
        return tuple(float(p) for p in parts)
    except ValueError:
        raise ValueError(f"{what} takes numbers, e.g. 0.5,0.7,1.0 (got {text!r})") from None


def parse_ints(text: str, what: str) -> tuple[int, ...]:
    parts = [p.strip() for p in str(text).split(",")]
    try:
        if not parts or any(p == "" for p in parts):
            raise ValueError
        return tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(f"{what} takes whole numbers, e.g. 512,512 (got {text!r})") from None


@dataclass(frozen=True)
class GridSpec:
    """The axes of an ablation; every cell is `base` with one value from each axis."""

    keep_probs: tuple[tuple[float, ...], ...] = field(
        default=tuple((k,) for k in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0))
    )  # --grid: the hidden keep probabilities the tutorial's question needs
    input_keep_probs: tuple[float, ...] = (1.0,)  # the dropout paper suggests 0.8 for inputs
    train_sizes: tuple[int | None, ...] = (None,)  # None: all of the training part
    seeds: tuple[int, ...] = (777, 778, 779)  # three seeds counted from the tutorial's 777
