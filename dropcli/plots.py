"""The pictures of a study: accuracy and paired difference against keep probability, learning
curves, and the Monte-Carlo dropout curve. PNG files, written atomically.

    $ dropcli report results/ablation      # ablation.png and curves.png
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from dropcli.config import fmt_number
from dropcli.files import atomic_write


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    _pyplot().close(fig)
    return path


def _line_label(ik: float, ts: int, mn) -> str:
    norm = "" if mn is None or (isinstance(mn, float) and math.isnan(mn)) else f", max-norm {fmt_number(mn)}"
    return f"input keep {fmt_number(ik)}, {int(ts):,} images{norm}"


def _lines(df: pd.DataFrame):
    key = df["max_norm"].fillna(-1.0)
    return df.assign(_mn=key).groupby(["input_keep_prob", "train_size", "_mn"], sort=True)


def plot_ablation(summary: pd.DataFrame, path: str | Path, title: str) -> Path:
    """Test accuracy (mean ± 95% CI over seeds), the paired difference with the baseline (± its 95%
    CI; filled markers survive Holm at 0.05) and the generalization gap, against keep probability."""
    plt = _pyplot()
    fig, (top, middle, bottom) = plt.subplots(3, 1, figsize=(7.5, 9.5), sharex=True,
                                              gridspec_kw={"height_ratios": [3, 2.2, 1.6]})
    for (ik, ts, mn), g in _lines(summary):
        g = g.sort_values("keep_prob_mean")
        label = _line_label(ik, ts, None if mn < 0 else mn)
        mean, ci = g["test_accuracy_mean"], g["test_accuracy_ci95"].fillna(0)
        yerr = [ci.clip(upper=mean), ci.clip(upper=1 - mean)]  # accuracies live in [0, 1]
        line = top.errorbar(g["keep_prob_mean"], mean, yerr=yerr, marker="o", capsize=4, label=label)
        colour = line[0].get_color()
        for x, y, text in zip(g["keep_prob_mean"], mean, g["keep_probs"].astype(str)):
            if " " in text:  # per-layer keep probabilities sit at their mean: name them
                top.annotate(text, (x, y), textcoords="offset points", xytext=(4, 6), fontsize=7)
        d = g[g["diff_mean"].notna()]
        if len(d):
            low = (d["diff_mean"] - d["diff_ci95_low"]).fillna(0) * 100
            high = (d["diff_ci95_high"] - d["diff_mean"]).fillna(0) * 100
            middle.errorbar(d["keep_prob_mean"], d["diff_mean"] * 100, yerr=[low, high], color=colour, capsize=4,
                            linestyle="-", marker="none")
            sig = d["p_holm"] < 0.05
            middle.scatter(d["keep_prob_mean"][sig], d["diff_mean"][sig] * 100, color=colour, zorder=3, s=30)
            middle.scatter(d["keep_prob_mean"][~sig], d["diff_mean"][~sig] * 100, facecolor="white", edgecolor=colour,
                           zorder=3, s=30)
        bottom.plot(g["keep_prob_mean"], g["generalization_gap_mean"], marker="s", color=colour)
    metric = summary["metric"].iloc[0] if len(summary) else "test_accuracy"
    top.set_ylabel("test accuracy (mean ± 95% CI)")
    top.set_title(title)
    top.grid(alpha=0.3)
    top.legend(loc="best", fontsize=8)
    middle.axhline(0, color="grey", linewidth=0.8)
    middle.set_ylabel(f"{'test acc.' if metric == 'test_accuracy' else 'test acc. at best epoch'}\n"
                      "minus baseline, points\n(paired, 95% CI; filled: Holm p < 0.05)", fontsize=8)
    middle.grid(alpha=0.3)
    bottom.axhline(0, color="grey", linewidth=0.8)
    bottom.set_ylabel("generalization gap\n(train − test accuracy)", fontsize=8)
    bottom.set_xlabel("hidden keep probability (mean over layers; 1.0 = no dropout)")
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def plot_curves(history: pd.DataFrame, path: str | Path, title: str) -> Path:
    """Learning curves: validation accuracy and training cost per epoch, mean over seeds with the
    min-max band, one line per keep probability, one column per other setting."""
    plt = _pyplot()
    panels = list(_lines(history))
    cols = len(panels)
    fig, axes = plt.subplots(2, cols, figsize=(4.2 * cols + 1, 7), squeeze=False, sharex=True)
    keeps = sorted(history["keep_probs"].unique(), key=lambda k: float(np.mean([float(v) for v in str(k).split()])))
    colours = {k: plt.cm.viridis(i / max(1, len(keeps) - 1)) for i, k in enumerate(keeps)}
    for j, ((ik, ts, mn), g) in enumerate(panels):
        acc_ax, cost_ax = axes[0][j], axes[1][j]
        for keep, cell in g.groupby("keep_probs", sort=False):
            by_epoch = cell.groupby("epoch")
            for ax, col in ((acc_ax, "validation_accuracy"), (cost_ax, "cost")):
                s = by_epoch[col]
                if s.count().sum() == 0:
                    continue
                ax.plot(s.mean().index, s.mean(), color=colours[keep], label=f"keep {keep}")
                ax.fill_between(s.mean().index, s.min(), s.max(), color=colours[keep], alpha=0.15, linewidth=0)
        acc_ax.set_title(_line_label(ik, ts, None if mn < 0 else mn), fontsize=9)
        acc_ax.grid(alpha=0.3)
        cost_ax.grid(alpha=0.3)
        cost_ax.set_yscale("log")
        cost_ax.set_xlabel("epoch")
    axes[0][0].set_ylabel("validation accuracy\n(mean over seeds, band: min-max)")
    axes[1][0].set_ylabel("training cost (dropout on, log scale)")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"Learning curves: {title}", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def plot_mc_curve(frame: pd.DataFrame, path: str | Path, title: str) -> Path:
    """Monte-Carlo dropout accuracy against the number of passes (mean, min-max band) and the
    weight-scaling accuracy as a line: the dropout paper's Figure 11 for this network."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    ax.plot(frame["samples"], frame["accuracy_mean"], marker="o", label="Monte-Carlo dropout (mean of repeats)")
    ax.fill_between(frame["samples"], frame["accuracy_min"], frame["accuracy_max"], alpha=0.2, label="min-max of repeats")
    ax.axhline(frame["weight_scaling_accuracy"].iloc[0], color="black", linestyle="--", label="weight scaling (dropout off)")
    ax.set_xscale("log")
    ax.set_xlabel("dropout-on passes averaged (T)")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"Monte-Carlo dropout against weight scaling: {title}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)
