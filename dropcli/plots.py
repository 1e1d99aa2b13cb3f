"""The pictures of a study, written atomically as PNG files: what they share, and which a study gets.

    $ dropcli report results/ablation      # ablation.png, differences.png, curves.png

Every figure states its unit: accuracies in percent, differences in points of accuracy (percentage
points). Lines have a contrast of at least 3:1 against the white background (WCAG's minimum for
graphics), from the Okabe-Ito colour-blind safe palette, or from plasma for ordered keep
probabilities. A panel's range is set by its typical estimates (Tukey's fences); an estimate
beyond them is drawn as an arrow at the edge with its value written beside it, so that one
extreme configuration does not flatten the rest.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from dropcli.config import fmt_number
from dropcli.files import atomic_write
from dropcli.tables import KEY_COLUMNS

OKABE_ITO = ("#000000", "#0072B2", "#D55E00", "#009E73", "#CC79A7")  # the palette's colours with contrast >= 3:1
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
MIN_CONTRAST = 3.0  # WCAG 2.1 non-text contrast
FENCE = 1.5  # Tukey's fences: estimates beyond 1.5 interquartile ranges of the quartiles are drawn at the edge
DPI = 120


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: str | Path) -> Path:
    """Write `fig` as a PNG at `path` atomically and close it; returns the path."""
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI))
    pyplot().close(fig)
    return path


def contrast(colour) -> float:
    """WCAG 2.1 contrast ratio (1-21) of a matplotlib colour against white."""
    from matplotlib.colors import to_rgb

    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in to_rgb(colour)]
    luminance = 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    return 1.05 / (luminance + 0.05)


def keep_colours(keeps: list[str]) -> dict[str, tuple]:
    """A colour per keep-probability label: plasma from dark (heavy dropout) to its 0.6 point,
    black for '1' (no dropout)."""
    plt = pyplot()
    order = sorted((k for k in keeps if k != "1"), key=lambda k: float(np.mean([float(v) for v in str(k).split()])))
    colours = {k: plt.cm.plasma(0.6 * i / max(1, len(order) - 1)) for i, k in enumerate(order)}
    if "1" in keeps:
        colours["1"] = (0.0, 0.0, 0.0, 1.0)
    return colours


def view_range(centres, lows=None, highs=None, include_zero: bool = False) -> tuple[float, float, np.ndarray]:
    """The range (low, high) a panel shows, and which estimates lie beyond it ((n,) bool).
    centres, lows, highs: (n,) estimates and their interval ends (NaN: no interval). With 4 or more
    estimates, those beyond Tukey's fences around the centres are left out of the range."""
    c = np.asarray(centres, dtype=float)
    lo = c if lows is None else np.where(np.isnan(lows), c, lows)
    hi = c if highs is None else np.where(np.isnan(highs), c, highs)
    finite = ~np.isnan(c)
    out = np.zeros(len(c), dtype=bool)
    if finite.sum() >= 4:
        q1, q3 = np.percentile(c[finite], [25, 75])
        spread = max(q3 - q1, 1e-9)
        out = finite & ((c < q1 - FENCE * spread) | (c > q3 + FENCE * spread))
    keep = finite & ~out
    if not keep.any():
        return -1.0, 1.0, out
    low, high = float(np.min(lo[keep])), float(np.max(hi[keep]))
    if include_zero:
        low, high = min(low, 0.0), max(high, 0.0)
    pad = 0.08 * (high - low) if high > low else max(abs(high), 1.0) * 0.05
    low, high = low - pad, high + pad
    return low, high, out & ((c < low) | (c > high))  # an estimate the range holds anyway is drawn as usual


def mark_beyond(ax, x, y, low: float, high: float, text: str, colour, horizontal: bool = False, k: int = 0) -> None:
    """An estimate beyond the panel's range: an arrow marker at the edge and its value beside it.
    (x, y): the estimate; low, high: the range of the value axis (y, or x when horizontal); k: how
    many estimates were marked before at the same place (each is shifted along, to stay legible)."""
    from matplotlib.transforms import offset_copy

    value = x if horizontal else y
    pointing_low = value < low
    edge = low if pointing_low else high
    if horizontal:
        pos, marker, dx, dy = (edge, y), "<" if pointing_low else ">", 0, 0
        text_at, align = (10 if pointing_low else -10, 6), "left" if pointing_low else "right"
    else:
        pos, marker, dx, dy = (x, edge), "v" if pointing_low else "^", 9 * k, 0
        text_at, align = (6 + 9 * k, (8 + 11 * k) if pointing_low else -(12 + 11 * k)), "left"
    shifted = offset_copy(ax.transData, fig=ax.figure, x=dx, y=dy, units="points")
    ax.plot(*pos, marker=marker, color=colour, markersize=9, clip_on=False, zorder=4, linestyle="none",
            transform=shifted)
    ax.annotate(text, pos, xytext=text_at, textcoords="offset points", fontsize=7, ha=align, color=colour)


def figure_title(fig, text: str, width_inches: float) -> None:
    """A figure title wrapped to the figure's width, so that constrained layout keeps it inside."""
    fig.suptitle(textwrap.fill(text, max(30, int(width_inches * 11))), fontsize=10)


def _line_parts(ik: float, ts: int, mn, axes: str = "") -> list[str]:
    """One line's settings, one per axis: ['input keep 0.8', '1,000 images', 'no max-norm', 'lr 0.003']."""
    norm = "no max-norm" if mn is None or pd.isna(mn) or mn < 0 else f"max-norm {fmt_number(mn)}"
    return [f"input keep {fmt_number(ik)}", f"{int(ts):,} images", norm, *filter(None, axes.split(", "))]


def line_label(ik: float, ts: int, mn, axes: str = "") -> str:
    """'input keep 0.8, 1,000 images, max-norm 3': one line's setting (then `axes`, lines' own
    learning rate and widths where a study varies them: ', lr 0.003')."""
    return ", ".join(p for p in _line_parts(ik, ts, mn, axes) if p != "no max-norm")


def line_labels(df: pd.DataFrame) -> tuple[dict, str]:
    """({lines' key: the settings that tell its line from the others}, the settings every line
    shares), for a legend and its title: 'lr 0.003' under 'input keep 1, 55,000 images'. One line:
    its whole setting (line_label), nothing shared."""
    keys = [key for key, _ in lines(df)]
    if len(keys) < 2:
        return {k: line_label(*k) for k in keys}, ""
    parts = {k: _line_parts(*k) for k in keys}
    first = parts[keys[0]]
    differ = [i for i in range(len(first)) if len({p[i] for p in parts.values()}) > 1]
    shared = [x for i, x in enumerate(first) if i not in differ and x != "no max-norm"]
    return {k: ", ".join(p[i] for i in differ) for k, p in parts.items()}, ", ".join(shared)


def lines(df: pd.DataFrame):
    """The rows of each line (a setting of the axes other than keep), in a stable order; keyed by
    (input keep, train size, max-norm or -1, the lr and widths text of line_label's `axes`)."""
    varied = [c for c in ("hidden", "lr") if c in df and df[c].nunique() > 1]
    axes = ["".join(f", {c} {fmt_number(v) if c == 'lr' else v}" for c, v in zip(varied, values))
            for values in df[varied].itertuples(index=False)] if varied else ""
    return df.assign(_mn=df["max_norm"].fillna(-1.0), _axes=axes).groupby(
        ["input_keep_prob", "train_size", "_mn", "_axes"], sort=True)


def budget(runs: pd.DataFrame) -> str:
    """'15 epochs', or '8,250 steps' where a study's cells train for a step budget rather than
    whole epochs validated once an epoch (from a runs.csv frame)."""
    per_epoch = runs["train_size"] // runs["batch_size"]
    if runs["epochs"].nunique() == 1 and (runs["eval_every"] == per_epoch).all() and (
            runs["epochs"] * per_epoch == runs["steps"])[runs["status"] == "ok"].all():
        epochs = int(runs["epochs"].iloc[0])
        return f"{epochs} epoch{'' if epochs == 1 else 's'}"
    steps = runs.loc[runs["status"] == "ok", "steps"]
    return f"{int(steps.max() if len(steps) else runs['steps'].max()):,} steps"


def study_title(runs: pd.DataFrame) -> str:
    """'MNIST, 15 epochs, 10 seeds per point, hidden 512 512 512 512' from a runs.csv frame ('6 to 10
    seeds per point' where the points have different numbers, as in a study still running)."""
    from dropcli.data import TITLES

    dataset = runs["dataset"].iloc[0]
    point = [c for c in KEY_COLUMNS if c != "seed" and c in runs]  # a configuration: a cell's key but its seed
    counts = runs.groupby(point, dropna=False)["seed"].nunique()  # a study still running: points differ
    low, high = int(counts.min()), int(counts.max())
    seeds = f"{high} seed{'s' if high != 1 else ''}" if low == high else f"{low} to {high} seeds"
    widths = sorted(set(runs["hidden"]), key=lambda h: [int(w) for w in h.split()])
    return f"{TITLES.get(dataset, dataset)}, {budget(runs)}, {seeds} per point, hidden {' or '.join(widths)}"
