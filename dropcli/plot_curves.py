"""Curves over time and passes: a study's learning curves, and the Monte-Carlo dropout curve.

    curves.png   validation accuracy (%) and training cost per epoch (per step for a step budget),
                 one column per setting
    curve.png    Monte-Carlo dropout accuracy against the number of passes, beside weight scaling
                 (dropcli evaluate RUN --mc-curve 1,2,5,10,20,50,100 --csv curve.csv)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dropcli.config import TEST_SPLIT
from dropcli.plots import FENCE, MARKERS, OKABE_ITO, figure_title, keep_colours, line_label, lines, pyplot, save


def accuracy_range(finals: np.ndarray, lows: np.ndarray, highs: np.ndarray) -> tuple[float, float, np.ndarray]:
    """The validation panel's range in %: from the lowest band of the lines whose final accuracy is
    typical (within Tukey's fences below the quartiles) to the highest band. finals, lows, highs:
    (lines,) each line's final mean, the lowest band value of its later half, its highest band
    value. Returns (low, high, (lines,) bool: lines below the range)."""
    below = np.zeros(len(finals), bool)
    if len(finals) >= 4:
        q1, q3 = np.percentile(finals, [25, 75])
        below = finals < q1 - FENCE * max(q3 - q1, 0.05)
    low, high = float(np.min(lows[~below])), float(np.max(highs))
    pad = 0.06 * max(high - low, 0.1)
    return low - pad, min(100.0, high + pad), below


def by_epoch(history: pd.DataFrame) -> bool:
    """True when every history row ends an epoch (validated once an epoch, whole epochs): each
    cell's steps are its epochs times one steps-per-epoch; else the curves are drawn over steps."""
    from dropcli.tables import row_cell_ids

    if history.empty:
        return True
    ratio = (history["step"] / history["epoch"]).groupby(row_cell_ids(history).to_numpy())
    return bool((ratio.nunique() == 1).all() and (history["step"] % history["epoch"] == 0).all())


def _band(ax, mean: pd.Series, lo: pd.Series, hi: pd.Series, colour) -> None:
    """The min-max band over seeds around `mean` (Series over x): a shaded area, or an error bar where
    there is one x (a 1-epoch study), which an area cannot show."""
    if len(mean) > 1:
        ax.fill_between(mean.index, lo, hi, color=colour, alpha=0.1, linewidth=0)
    else:
        ax.errorbar(mean.index, mean, yerr=[mean - lo, hi - mean], fmt="none", ecolor=colour, alpha=0.5, capsize=4)


def _panel(acc_ax, cost_ax, g: pd.DataFrame, colours: dict, x: str = "epoch") -> None:
    """One setting's lines over `x` (epoch or step): mean over seeds with the min-max band,
    validation accuracy in % above and training cost (log) below; lines whose accuracy lies below
    the zoomed range are named."""
    finals, lows, highs, names = [], [], [], []
    for i, (keep, cell) in enumerate(sorted(g.groupby("keep_probs", sort=False), key=lambda kv: str(kv[0]))):
        over = cell.groupby(x)
        style = {"color": colours[keep], "marker": MARKERS[i % len(MARKERS)], "markersize": 4,
                 "linestyle": "--" if keep == "1" else "-", "label": f"keep {keep}" + (" (no dropout)" if keep == "1" else "")}
        acc = over["validation_accuracy"]
        if acc.count().sum():
            mean, lo, hi = acc.mean() * 100, acc.min() * 100, acc.max() * 100
            acc_ax.plot(mean.index, mean, **style)
            _band(acc_ax, mean, lo, hi, colours[keep])
            later = mean.index >= mean.index.min() + (mean.index.max() - mean.index.min()) / 2
            finals.append(mean.iloc[-1]), lows.append(lo[later].min()), highs.append(hi.max()), names.append(keep)
        cost = over["cost"]
        if cost.count().sum():
            cost_ax.plot(cost.mean().index, cost.mean(), **style)
            _band(cost_ax, cost.mean(), cost.min(), cost.max(), colours[keep])
    if finals:
        low, high, _ = accuracy_range(np.array(finals), np.array(lows), np.array(highs))
        acc_ax.set_ylim(low, high)
        hidden = [f"keep {k} (last epoch {f:.2f}%)" for k, f in zip(names, finals) if f < low]
        if hidden:
            acc_ax.annotate("below the range: " + "; ".join(hidden), (0.02, 0.03), xycoords="axes fraction",
                            fontsize=7, color="0.25")


def draw_curves(history: pd.DataFrame, title: str):
    """Learning curves from a history.csv frame: validation accuracy (%, zoomed to the typical
    lines) and training cost (log scale) per epoch (per step where validations fall within epochs:
    by_epoch), mean over seeds with the min-max band, one line
    per keep probability, one column per setting of the other axes. Returns the Figure."""
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    panels = list(lines(history))
    width = 4.4 * len(panels) + 2.4
    fig, axes = plt.subplots(2, len(panels), figsize=(width, 7.5), squeeze=False, sharex=True, layout="constrained")
    colours = keep_colours(sorted(history["keep_probs"].unique()))
    x = "epoch" if by_epoch(history) else "step"  # a step budget's validations fall within epochs
    for j, ((ik, ts, mn, varied), g) in enumerate(panels):
        acc_ax, cost_ax = axes[0][j], axes[1][j]
        _panel(acc_ax, cost_ax, g, colours, x)
        acc_ax.set_title(line_label(ik, ts, None if mn < 0 else mn, varied), fontsize=9)
        cost_ax.set_yscale("log")
        cost_ax.set_xlabel("epoch" if x == "epoch" else "Adam steps")
        for ax in (acc_ax, cost_ax):
            ax.grid(alpha=0.3)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # one epoch: a tick at 1, not 0.96-1.04
    axes[0][0].set_ylabel("validation accuracy (%)\nmean over seeds, band: min-max")
    axes[1][0].set_ylabel("training cost (dropout on, log)")
    handles, labels = axes[0][-1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", fontsize=8)
    figure_title(fig, f"Learning curves: {title}", width)
    return fig


def plot_curves(history: pd.DataFrame, path: str | Path, title: str) -> Path:
    """draw_curves written to `path` (PNG)."""
    return save(draw_curves(history, title), path)


def draw_mc_curve(frame: pd.DataFrame, title: str):
    """Monte-Carlo dropout accuracy (%) against the passes T (log axis, a tick at each T): the mean
    of the repeats with their min-max band, and the weight-scaling accuracy as a line with its 95%
    Wilson interval over the test images (frame's `images` column, else TEST_SPLIT). frame: as
    report.mc_curve_frame returns it. Returns the Figure."""
    from matplotlib.ticker import FixedLocator, NullLocator

    from dropcli.stats import wilson_interval

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.6), layout="constrained")
    t = frame["samples"].to_numpy()
    images = int(frame["images"].iloc[0]) if "images" in frame else TEST_SPLIT
    scaled = float(frame["weight_scaling_accuracy"].iloc[0])
    low, high = wilson_interval(round(scaled * images), images)
    ax.axhline(scaled * 100, color=OKABE_ITO[0], linestyle="--", label=f"weight scaling, dropout off: {scaled * 100:.2f}%")
    ax.axhspan(low * 100, high * 100, color=OKABE_ITO[0], alpha=0.12, linewidth=0,
               label=f"its 95% interval over {images:,} test images (Wilson)")
    ax.fill_between(t, frame["accuracy_min"] * 100, frame["accuracy_max"] * 100, color=OKABE_ITO[1], alpha=0.2,
                    linewidth=0, label=f"min-max of {int(frame['repeats'].iloc[0])} repeats")
    ax.plot(t, frame["accuracy_mean"] * 100, marker="o", color=OKABE_ITO[1], label="Monte-Carlo dropout, mean of repeats")
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(t))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticks(t, [str(int(v)) for v in t])
    ax.set_xlabel("dropout-on passes averaged (T)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    figure_title(fig, f"Monte-Carlo dropout against weight scaling: {title}", 7)
    return fig


def plot_mc_curve(frame: pd.DataFrame, path: str | Path, title: str) -> Path:
    """draw_mc_curve written to `path` (PNG)."""
    return save(draw_mc_curve(frame, title), path)
