"""The grid of a study: its axes, its cells, their exact keys, the study's identity and its shards.

    $ dropcli ablate --keep-probs 0.5,0.7,0.8:0.7:0.7:0.5,1.0 --max-norms none,3 --seeds 5
    $ dropcli ablate --keep-probs 0.7,1 --lrs 0.0003,0.001,0.003 --hiddens 512x4,1024x4 --seeds 10

A grid is a base TrainConfig and one tuple of values per axis (GridSpec); its cells are every
combination (expand). A cell is known by an exact key (cell_id); a study by its identity, the
JSON that study.json holds (study_identity, and its inverse cells_of); a shard by its share of
the cells (partition). Everything here is pure: no files, no torch. It sits in the foundations
layer, so every layer above (the plan, the executors, the commands) takes these facts from here.

The learning rate and the widths are settings of the base config unless the grid gives them more
than one value (--lrs, --hiddens): study.json then lists them under "grid" instead of "settings",
so a study that varies neither has the identity it always had. Every cell of a seed starts from
that seed's weights for its widths and trains on that seed's subset and batch order, whatever its
learning rate, keep probability or data size, so cells pair up seed by seed along every axis.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from dropcli.config import (
    DEFAULT_SEED,
    MAX_LAYERS,
    PLAIN_INT,
    TrainConfig,
    check_keep,
    check_max_norm,
    fmt_keep,
    fmt_max_norm,
    fmt_number,
    parse_keep,
    parse_number,
    split_list,
    trim,
)

STUDY_FORMAT = "dropcli-study/3"  # study.json's format; /2 is read for report and merge (schemas.py)
DEFAULT_SEEDS = 3  # seeds of a grid unless --seeds or --seed-list says otherwise
MAX_CELLS = 100_000  # a bigger grid is a typo (10 seeds x 10,000 configurations)
# the axes of a grid: (TrainConfig field, GridSpec field, option); a cell is a base config with one value of each
AXES = (("keep_prob", "keep_probs", "--keep-probs"), ("input_keep_prob", "input_keep_probs", "--input-keep-probs"),
        ("max_norm", "max_norms", "--max-norms"), ("train_size", "train_sizes", "--train-sizes"),
        ("lr", "lrs", "--lrs"), ("hidden", "hiddens", "--hiddens"), ("seed", "seeds", "--seeds"))
PLURAL = {"--" + name.replace("_", "-"): option for name, _, option in AXES} | {"--seed": "--seed-list"}  # --train-sizes
AXIS_FIELDS = tuple(a[0] for a in AXES)  # the TrainConfig fields a grid varies; every other field is a setting
SETTING_AXES = ("lr", "hidden")  # axes that stay settings of the base config unless given two or more values
BUDGET_SETTINGS = ("steps", "eval_every")  # settings study.json holds only with a step budget (older identities lack them)


def default_seeds(n: int = DEFAULT_SEEDS) -> tuple[int, ...]:
    """n seeds counted up from the tutorial's 777: (777, 778, ...)."""
    return tuple(range(DEFAULT_SEED, DEFAULT_SEED + n))


@dataclass(frozen=True)
class GridSpec:
    """The axes of an ablation; every cell is `base` with one value from each axis.

    keep_probs: hidden keep probabilities, each one value or one per layer; input_keep_probs,
    max_norms (None: no constraint), train_sizes (None: the whole training part), lrs (Adam's
    learning rates) and hiddens (hidden widths, one tuple per network; None for either: the base
    config's own), seeds."""

    # --grid: the hidden keep probabilities the tutorial's question needs
    keep_probs: tuple[tuple[float, ...], ...] = field(default=tuple((k,) for k in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)))
    input_keep_probs: tuple[float, ...] = (1.0,)  # the dropout paper suggests 0.8 for inputs
    max_norms: tuple[float | None, ...] = (None,)  # None: no max-norm constraint
    train_sizes: tuple[int | None, ...] = (None,)  # None: all of the training part
    lrs: tuple[float, ...] | None = None  # None: the base config's learning rate alone
    hiddens: tuple[tuple[int, ...], ...] | None = None  # None: the base config's widths alone
    seeds: tuple[int, ...] = default_seeds()

    def axis_values(self, base: TrainConfig | None = None) -> list[tuple[str, str, tuple]]:
        """[(TrainConfig field, option, values)] in AXES order; an axis left None holds the base
        config's value (None without a base)."""
        return [(name, option, (getattr(base, name, None),) if getattr(self, spec) is None else tuple(getattr(self, spec)))
                for name, spec, option in AXES]

    @property
    def size(self) -> int:
        """The number of cells: the product of the axes' lengths."""
        return math.prod(len(values) for _, _, values in self.axis_values())


def cell_id(keep_probs: str, input_keep_prob: float, max_norm: float | None, train_size: int, seed: int, lr: float,
            hidden: str | tuple[int, ...]) -> str:
    """A cell's identity, exact: two cells share a key only when their axes are equal floats.

    keep_probs is the per-layer text ('0.7' or '0.8 0.7 0.7 0.5'); train_size a count of images;
    lr Adam's learning rate; hidden the widths, as a tuple or as runs.csv's text ('512 512')."""
    return (f"keep={keep_probs}|input_keep={fmt_number(float(input_keep_prob))}|max_norm={fmt_max_norm(max_norm)}"
            f"|train_size={int(train_size)}|lr={fmt_number(float(lr))}|hidden={fmt_hidden(hidden)}|seed={int(seed)}")


def fmt_hidden(hidden: str | tuple[int, ...]) -> str:
    """Widths as the files write them: '512 512 512 512' (from a tuple of ints, or such text, whose
    spacing alone is normalised: text that is no widths stays itself and matches no cell)."""
    return " ".join(hidden.split()) if isinstance(hidden, str) else " ".join(str(int(w)) for w in hidden)


def cell_id_of(c: TrainConfig) -> str:
    """The key of a TrainConfig's cell (see cell_id)."""
    return cell_id(c.keep_label, c.input_keep_prob, c.max_norm, c.n_train, c.seed, c.lr, c.hidden)


def expand(grid: GridSpec, base: TrainConfig) -> list[TrainConfig]:
    """Every cell of the grid, ordered by widths, learning rate, train size, max-norm, input keep,
    keep probability, seed.

    Each cell is a TrainConfig, which checks its values. Raises ValueError (naming the option) for
    an empty axis, more than MAX_CELLS cells, or two values that make the same cell (0.5 and
    0.5:0.5:0.5:0.5, or a value given twice)."""
    for _, option, values in grid.axis_values(base):
        if not values:
            raise ValueError(f"{option} is empty; give at least one value")
    if grid.size > MAX_CELLS:
        raise ValueError(f"the grid has {grid.size:,} cells, more than {MAX_CELLS:,}; give fewer values or seeds")
    try:
        cells = [base.replace(hidden=h, lr=lr, keep_prob=keep, input_keep_prob=ik, max_norm=mn, train_size=n, seed=seed)
                 for h in grid.hiddens or (base.hidden,) for lr in grid.lrs or (base.lr,)
                 for n in grid.train_sizes for mn in grid.max_norms for ik in grid.input_keep_probs
                 for keep in grid.keep_probs for seed in grid.seeds]
    except ValueError as e:  # a config's check names its own option (--train-size): name the grid's (--train-sizes)
        raise ValueError(re.sub(r"--([a-z-]+)(?![\w-])", lambda m: PLURAL.get(m[0], m[0]), str(e))) from None
    seen: set[str] = set()
    for c in cells:
        key = cell_id_of(c)
        if key in seen:
            raise ValueError(f"the grid lists one cell twice ({key.replace('|', ', ')}); give each value once")
        seen.add(key)
    return cells


def study_identity(grid: GridSpec, base: TrainConfig, data: dict | None = None) -> dict:
    """What makes two runs of `ablate` the same study: the grid's axes, every other setting and the
    data's content identity (name and SHA-256, data.data_identity); study.json holds it.

    lr and hidden are settings while they have one value, grid axes ("lrs", "hiddens") with more;
    steps and eval_every are written only with a step budget (eval_every then as the interval the
    run uses, config.eval_interval) or, eval_every, where --eval-every is given, so a study without
    them keeps its older identity."""
    settings = {k: v for k, v in base.to_dict().items() if k not in AXIS_FIELDS and k not in BUDGET_SETTINGS}
    if base.steps is not None:
        settings.update(steps=base.steps, eval_every=base.eval_interval)
    elif base.eval_every is not None:  # given with --epochs: its history differs (without, every epoch)
        settings["eval_every"] = base.eval_every
    axes = {"keep_probs": [fmt_keep(k) for k in grid.keep_probs],
            "input_keep_probs": [float(k) for k in grid.input_keep_probs],
            "max_norms": [fmt_max_norm(c) for c in grid.max_norms],
            "train_sizes": [base.replace(train_size=n).n_train for n in grid.train_sizes],
            "seeds": list(grid.seeds)}
    lrs, hiddens = grid.lrs or (base.lr,), grid.hiddens or (base.hidden,)
    if len(lrs) == 1:
        settings["lr"] = float(lrs[0])
    else:
        axes["lrs"] = [float(lr) for lr in lrs]
    if len(hiddens) == 1:
        settings["hidden"] = tuple(int(w) for w in hiddens[0])
    else:
        axes["hiddens"] = [[int(w) for w in h] for h in hiddens]
    identity = {"format": STUDY_FORMAT, "settings": settings, "grid": axes}
    if data is not None:
        identity["data"] = data
    return identity


def grid_of(identity: dict) -> tuple[GridSpec, TrainConfig]:
    """The GridSpec and base config a study identity describes (the inverse of study_identity;
    a study.json without "lrs" or "hiddens" trains at its settings' lr and widths). Raises
    ValueError for values no grid can hold."""
    settings, grid = identity["settings"], identity["grid"]
    base = TrainConfig.from_dict(settings)
    part = base.replace(train_size=None).n_train
    spec = GridSpec(keep_probs=tuple(parse_keep(label.replace(" ", ":"), "keep_probs") for label in grid["keep_probs"]),
                    input_keep_probs=tuple(float(k) for k in grid["input_keep_probs"]),
                    max_norms=tuple(None if c == "none" else check_max_norm(float(c)) for c in grid["max_norms"]),
                    train_sizes=tuple(None if n == part else int(n) for n in grid["train_sizes"]),
                    lrs=tuple(float(lr) for lr in grid["lrs"]) if "lrs" in grid else None,
                    hiddens=tuple(tuple(int(w) for w in h) for h in grid["hiddens"]) if "hiddens" in grid else None,
                    seeds=tuple(int(s) for s in grid["seeds"]))
    return spec, base


def cells_of(identity: dict) -> list[TrainConfig]:
    """The cells a study.json describes, in the grid's order; raises ValueError as expand does."""
    return expand(*grid_of(identity))


def cost(c: TrainConfig) -> float:
    """Relative work of a cell (multiply-adds, arbitrary scale): its training steps and its
    validation passes (a forward pass costs about a third of a step)."""
    v = c.validations
    return v * (c.total_steps / v + c.validation_size / c.batch_size / 3) * sum(
        i * o for i, o in zip(c.sizes[:-1], c.sizes[1:]))


def partition(cells: list[TrainConfig], n: int) -> list[list[TrainConfig]]:
    """N shards of the cells, balanced by cost (longest first, each to the least loaded shard; ties
    by shard number), each in the grid's own order. Depends on the grid alone."""
    loads, members = [0.0] * n, [[] for _ in range(n)]
    order = sorted(range(len(cells)), key=lambda i: (-cost(cells[i]), i))
    for i in order:
        s = min(range(n), key=lambda j: (loads[j], j))
        loads[s] += cost(cells[i])
        members[s].append(i)
    return [[cells[i] for i in sorted(m)] for m in members]


def parse_floats(text: str, what: str) -> tuple[float, ...]:
    """'0.5,0.7' -> (0.5, 0.7); raises ValueError naming `what`."""
    return tuple(parse_number(p, what) for p in split_list(text, what, "0.5,0.7,1.0"))


def parse_input_keeps(text: str, what: str = "--input-keep-probs") -> tuple[float, ...]:
    """'0.8,1' -> (0.8, 1.0): input keep probabilities, each checked (config.check_keep); raises ValueError."""
    return tuple(check_keep(k, what) for k in parse_floats(text, what))


def parse_keep_list(text: str, what: str = "--keep-probs") -> tuple[tuple[float, ...], ...]:
    """'0.5,0.8:0.7:0.7:0.5,1.0' -> ((0.5,), (0.8, 0.7, 0.7, 0.5), (1.0,)); raises ValueError."""
    return tuple(parse_keep(p, what) for p in split_list(text, what, "0.5,0.7,1.0"))


def parse_widths(text: str, what: str = "--hiddens") -> tuple[int, ...]:
    """One network's hidden widths: '512:256:128', with 'WxN' for N layers of W ('512x4', '1024x2:512');
    raises ValueError naming `what`."""
    widths: list[int] = []
    for part in str(text).split(":"):
        width, times, repeat = (trim(p) for p in trim(part).lower().partition("x"))
        if not all(PLAIN_INT.fullmatch(p) and len(p) < 20 for p in (width, *([repeat] if times else []))):
            raise ValueError(f"{what} takes widths such as 512x4 (four layers of 512) or 512:256, networks "
                             f"separated by ',' (got {text!r})")
        w, n = int(width), int(repeat) if times else 1
        if w < 1 or not 1 <= n <= MAX_LAYERS - len(widths):
            raise ValueError(f"{what} takes widths of at least 1 and 1 to {MAX_LAYERS} hidden layers (got {text!r})")
        widths += [w] * n
    return tuple(widths)


def parse_widths_list(text: str, what: str = "--hiddens") -> tuple[tuple[int, ...], ...]:
    """'512x4,1024x4' -> ((512,) * 4, (1024,) * 4); raises ValueError naming `what`."""
    return tuple(parse_widths(p, what) for p in split_list(text, what, "512x4,1024x4"))


def parse_lrs(text: str, what: str = "--lrs") -> tuple[float, ...]:
    """'3e-4,0.001' -> (0.0003, 0.001): positive learning rates; raises ValueError naming `what`."""
    lrs = tuple(parse_number(p, what) for p in split_list(text, what, "0.0003,0.001,0.003"))
    if any(lr <= 0 for lr in lrs):
        raise ValueError(f"{what} takes positive learning rates, e.g. 0.0003,0.001,0.003 (got {text!r})")
    return lrs


def parse_max_norms(text: str, what: str = "--max-norms") -> tuple[float | None, ...]:
    """'none,3' -> (None, 3.0); raises ValueError naming `what`."""
    return tuple(None if p.lower() == "none" else check_max_norm(parse_number(p, what), what)
                 for p in split_list(text, what, "none,3"))
