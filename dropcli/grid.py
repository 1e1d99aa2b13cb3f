"""The grid of a study: its axes, its cells, their exact keys, the study's identity and its shards.

    $ dropcli ablate --keep-probs 0.5,0.7,0.8:0.7:0.7:0.5,1.0 --max-norms none,3 --seeds 5

A grid is a base TrainConfig and one tuple of values per axis (GridSpec); its cells are every
combination (expand). A cell is known by an exact key (cell_id); a study by its identity, the
JSON that study.json holds (study_identity, and its inverse cells_of); a shard by its share of
the cells (partition). Everything here is pure: no files, no torch. It sits in the foundations
layer, so every layer above (the plan, the executors, the commands) takes these facts from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dropcli.config import (
    DEFAULT_SEED,
    TrainConfig,
    check_max_norm,
    fmt_keep,
    fmt_max_norm,
    fmt_number,
    parse_keep,
    parse_number,
    split_list,
)

STUDY_FORMAT = "dropcli-study/3"  # study.json's format; /2 is read for report and merge (schemas.py)
DEFAULT_SEEDS = 3  # seeds of a grid unless --seeds or --seed-list says otherwise
MAX_CELLS = 100_000  # a bigger grid is a typo (10 seeds x 10,000 configurations)
# the axes of a grid: (TrainConfig field, GridSpec field, option); a cell is a base config with one value of each
AXES = (("keep_prob", "keep_probs", "--keep-probs"), ("input_keep_prob", "input_keep_probs", "--input-keep-probs"),
        ("max_norm", "max_norms", "--max-norms"), ("train_size", "train_sizes", "--train-sizes"),
        ("seed", "seeds", "--seeds"))
AXIS_FIELDS = tuple(a[0] for a in AXES)  # the TrainConfig fields a grid varies; every other field is a setting


def default_seeds(n: int = DEFAULT_SEEDS) -> tuple[int, ...]:
    """n seeds counted up from the tutorial's 777: (777, 778, ...)."""
    return tuple(range(DEFAULT_SEED, DEFAULT_SEED + n))


@dataclass(frozen=True)
class GridSpec:
    """The axes of an ablation; every cell is `base` with one value from each axis.

    keep_probs: hidden keep probabilities, each one value or one per layer; input_keep_probs,
    max_norms (None: no constraint), train_sizes (None: the whole training part), seeds."""

    keep_probs: tuple[tuple[float, ...], ...] = field(
        default=tuple((k,) for k in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0))
    )  # --grid: the hidden keep probabilities the tutorial's question needs
    input_keep_probs: tuple[float, ...] = (1.0,)  # the dropout paper suggests 0.8 for inputs
    max_norms: tuple[float | None, ...] = (None,)  # None: no max-norm constraint
    train_sizes: tuple[int | None, ...] = (None,)  # None: all of the training part
    seeds: tuple[int, ...] = default_seeds()

    def axis_values(self) -> list[tuple[str, str, tuple]]:
        """[(TrainConfig field, option, values)] in AXES order."""
        return [(name, option, getattr(self, spec_name)) for name, spec_name, option in AXES]

    @property
    def size(self) -> int:
        """The number of cells: the product of the axes' lengths."""
        n = 1
        for _, _, values in self.axis_values():
            n *= len(values)
        return n


def cell_id(keep_probs: str, input_keep_prob: float, max_norm: float | None, train_size: int, seed: int) -> str:
    """A cell's identity, exact: two cells share a key only when their axes are equal floats.

    keep_probs is the per-layer text ('0.7' or '0.8 0.7 0.7 0.5'); train_size a count of images."""
    return (f"keep={keep_probs}|input_keep={fmt_number(float(input_keep_prob))}|max_norm={fmt_max_norm(max_norm)}"
            f"|train_size={int(train_size)}|seed={int(seed)}")


def cell_id_of(c: TrainConfig) -> str:
    """The key of a TrainConfig's cell (see cell_id)."""
    return cell_id(c.keep_label, c.input_keep_prob, c.max_norm, c.n_train, c.seed)


def expand(grid: GridSpec, base: TrainConfig) -> list[TrainConfig]:
    """Every cell of the grid, ordered by train size, max-norm, input keep, keep probability, seed.

    Each cell is a TrainConfig, which checks its values. Raises ValueError (naming the option) for
    an empty axis, more than MAX_CELLS cells, or two values that make the same cell (0.5 and
    0.5:0.5:0.5:0.5, or a value given twice)."""
    for _, option, values in grid.axis_values():
        if not values:
            raise ValueError(f"{option} is empty; give at least one value")
    if grid.size > MAX_CELLS:
        raise ValueError(f"the grid has {grid.size:,} cells, more than {MAX_CELLS:,}; give fewer values or seeds")
    cells = [base.replace(keep_prob=keep, input_keep_prob=ik, max_norm=mn, train_size=n, seed=seed)
             for n in grid.train_sizes for mn in grid.max_norms for ik in grid.input_keep_probs
             for keep in grid.keep_probs for seed in grid.seeds]
    seen: set[str] = set()
    for c in cells:
        key = cell_id_of(c)
        if key in seen:
            raise ValueError(f"the grid lists one cell twice ({key.replace('|', ', ')}); give each value once")
        seen.add(key)
    return cells


def study_identity(grid: GridSpec, base: TrainConfig, data: dict | None = None) -> dict:
    """What makes two runs of `ablate` the same study: the grid's axes, every other setting and the
    data's content identity (name and SHA-256, data.data_identity); study.json holds it."""
    settings = {k: v for k, v in base.to_dict().items() if k not in AXIS_FIELDS}
    identity = {"format": STUDY_FORMAT, "settings": settings,
                "grid": {"keep_probs": [fmt_keep(k) for k in grid.keep_probs],
                         "input_keep_probs": [float(k) for k in grid.input_keep_probs],
                         "max_norms": [fmt_max_norm(c) for c in grid.max_norms],
                         "train_sizes": [base.replace(train_size=n).n_train for n in grid.train_sizes],
                         "seeds": list(grid.seeds)}}
    if data is not None:
        identity["data"] = data
    return identity


def grid_of(identity: dict) -> tuple[GridSpec, TrainConfig]:
    """The GridSpec and base config a study identity describes (the inverse of study_identity).
    Raises ValueError for values no grid can hold."""
    settings, grid = identity["settings"], identity["grid"]
    base = TrainConfig.from_dict(settings)
    part = base.replace(train_size=None).n_train
    spec = GridSpec(keep_probs=tuple(parse_keep(label.replace(" ", ":"), "keep_probs") for label in grid["keep_probs"]),
                    input_keep_probs=tuple(float(k) for k in grid["input_keep_probs"]),
                    max_norms=tuple(None if c == "none" else check_max_norm(float(c)) for c in grid["max_norms"]),
                    train_sizes=tuple(None if n == part else int(n) for n in grid["train_sizes"]),
                    seeds=tuple(int(s) for s in grid["seeds"]))
    return spec, base


def cells_of(identity: dict) -> list[TrainConfig]:
    """The cells a study.json describes, in the grid's order; raises ValueError as expand does."""
    return expand(*grid_of(identity))


def cost(c: TrainConfig) -> float:
    """Relative work of a cell (multiply-adds, arbitrary scale): its training steps and its forward passes."""
    return c.epochs * (c.steps_per_epoch + c.validation_size / c.batch_size / 3) * sum(
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


def parse_keep_list(text: str, what: str = "--keep-probs") -> tuple[tuple[float, ...], ...]:
    """'0.5,0.8:0.7:0.7:0.5,1.0' -> ((0.5,), (0.8, 0.7, 0.7, 0.5), (1.0,)); raises ValueError."""
    return tuple(parse_keep(p, what) for p in split_list(text, what, "0.5,0.7,1.0"))


def parse_max_norms(text: str, what: str = "--max-norms") -> tuple[float | None, ...]:
    """'none,3' -> (None, 3.0); raises ValueError naming `what`."""
    return tuple(None if p.lower() == "none" else check_max_norm(parse_number(p, what))
                 for p in split_list(text, what, "none,3"))
