"""A study's answer in two figures, drawn from its summary (summary.csv as report.read_summary reads it).

    ablation.png     test accuracy (%), paired difference with the baseline (points) and
                     generalization gap (points) against keep probability, 95% intervals on each
    differences.png  every comparison of the study as one row: difference in points, its 95%
                     interval, the equivalence margin, the conclusion and Holm p

Filled markers are differences that survive Holm's correction; hollow ones do not; a diamond is a
difference that is the same on every seed (no interval).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dropcli.config import fmt_number
from dropcli.plots import (
    DPI,
    MARKERS,
    OKABE_ITO,
    figure_title,
    line_labels,
    lines,
    mark_beyond,
    pyplot,
    study_title,
    view_range,
)
from dropcli.stats import ALPHA


def _value(x: float, signed: bool) -> str:
    return (f"{x:+.2f}" if signed else f"{x:.2f}").replace("-", "−")


def _panel(ax, summary: pd.DataFrame, centre, low, high, include_zero: bool, labels: dict, filled=None) -> None:
    """Draw one panel's estimates ((n,) arrays over the summary's rows, NaN: none) line by line,
    filled markers where `filled` ((n,) bool; default all), each line named by `labels` ({line key:
    legend entry}, plots.line_labels); estimates beyond the view range get an edge arrow with their value."""
    filled = np.ones(len(summary), bool) if filled is None else filled
    lo_v, hi_v, beyond = view_range(centre, low, high, include_zero)
    marked: dict[tuple, int] = {}  # (x, edge) -> estimates marked there so far
    for j, (key, g) in enumerate(lines(summary)):
        colour, marker = OKABE_ITO[j % len(OKABE_ITO)], MARKERS[j % len(MARKERS)]
        idx = g.sort_values("keep_prob_mean").index.to_numpy()
        x, y = summary.loc[idx, "keep_prob_mean"].to_numpy(float), centre[idx]
        has = ~np.isnan(y)
        if not has.any():
            continue
        yerr = np.vstack([y - np.where(np.isnan(low[idx]), y, low[idx]), np.where(np.isnan(high[idx]), y, high[idx]) - y])
        ax.errorbar(x[has], y[has], yerr=yerr[:, has], color=colour, marker="none", capsize=4, linewidth=1.2,
                    label=labels[key])
        sig = filled[idx]
        ax.scatter(x[has & sig], y[has & sig], color=colour, marker=marker, zorder=3, s=36)
        ax.scatter(x[has & ~sig], y[has & ~sig], facecolor="white", edgecolor=colour, marker=marker, zorder=3, s=36)
        for i, xi, yi in zip(idx, x, y):
            if beyond[i]:
                ci = "" if np.isnan(low[i]) else f" [{_value(low[i], include_zero)}, {_value(high[i], include_zero)}]"
                text = f"keep {summary.loc[i, 'keep_probs']}: {_value(yi, include_zero)}{ci}"
                place = (xi, yi < lo_v)
                mark_beyond(ax, xi, yi, lo_v, hi_v, text, colour, k=marked.get(place, 0))
                marked[place] = marked.get(place, 0) + 1
    ax.set_ylim(lo_v, hi_v)
    ax.grid(alpha=0.3)


def draw_ablation(summary: pd.DataFrame, title: str):
    """Three panels against hidden keep probability (the mean over layers; two where the study compares
    nothing, one configuration, so has no difference panel): test accuracy in %
    (mean and 95% CI over seeds, drawn within 0-100%, where a 2-seed t interval can reach past
    them), the paired difference with the baseline in points (95% CI; filled: Holm p < ALPHA) and
    the generalization gap in points (95% CI). A configuration whose every run diverged is named in
    the accuracy panel (it has no point). Returns the Figure."""
    plt = pyplot()
    s = summary.reset_index(drop=True)
    compared = bool(s["diff_points"].notna().any())  # a study of one configuration has no difference to draw
    ratios = [3, 2.4, 1.8] if compared else [3, 1.8]
    fig, axes = plt.subplots(len(ratios), 1, figsize=(8, 1.5 + 3 * len(ratios)), sharex=True, layout="constrained",
                             gridspec_kw={"height_ratios": ratios})
    top, middle, bottom = (axes[0], axes[1] if compared else None, axes[-1])
    acc, ci = s["test_accuracy_mean"].to_numpy(float) * 100, s["test_accuracy_ci95"].to_numpy(float) * 100
    top.set_ylabel("test accuracy (%)")
    labels, shared = line_labels(s)  # the legend's entries and title
    _panel(top, s, acc, np.maximum(acc - ci, 0), np.minimum(acc + ci, 100), False, labels)  # no accuracy beyond
    top.set_title(f"Test accuracy: mean over seeds, 95% CI{_not_drawn(s)}", fontsize=9, loc="left")
    if middle is not None:
        metric = s["metric"].iloc[0]
        middle.set_ylabel("diff. from baseline (points)")
        middle.axhline(0, color="grey", linewidth=0.8)
        _panel(middle, s, s["diff_points"].to_numpy(float), s["diff_ci95_low_points"].to_numpy(float),
               s["diff_ci95_high_points"].to_numpy(float), True, labels, s["p_holm"].to_numpy(float) < ALPHA)
        what = "test accuracy" if metric == "test_accuracy" else "test accuracy at the best epoch (exploratory)"
        middle.set_title(f"Paired difference in {what} from {baseline_name(s)}, 95% CI; filled: Holm p < "
                         f"{fmt_number(ALPHA)}", fontsize=9, loc="left")
    gap, gci = s["generalization_gap_mean"].to_numpy(float) * 100, s["generalization_gap_ci95"].to_numpy(float) * 100
    bottom.set_ylabel("gap (points)")
    bottom.axhline(0, color="grey", linewidth=0.8)
    _panel(bottom, s, gap, np.maximum(gap - gci, -100), np.minimum(gap + gci, 100), True, labels)
    bottom.set_title("Generalization gap: train minus test accuracy, 95% CI", fontsize=9, loc="left")
    bottom.set_xlabel("hidden keep probability (mean over layers; 1 = no dropout)")
    keeps = np.unique(s["keep_prob_mean"].to_numpy(float))
    bottom.set_xticks(keeps, [fmt_number(round(k, 3)) for k in keeps])
    if top.get_legend_handles_labels()[0]:  # no line where every run diverged
        top.legend(loc="best", fontsize=8, title=shared or None, title_fontsize=8)
    figure_title(fig, title, 8)
    return fig


def _not_drawn(summary: pd.DataFrame) -> str:
    """'' or a second title line for the accuracy panel naming each configuration every run of which
    diverged (it has no point to draw, and a figure should not drop it without a word): the first
    three, then how many more."""
    from dropcli.conclusions import diverged

    gone = diverged(summary)
    more = f" and {len(gone) - 3} more" if len(gone) > 3 else ""
    return f"\nnot drawn, every run diverged: {'; '.join(gone[:3])}{more}" if gone else ""


def baseline_name(summary: pd.DataFrame) -> str:
    """'no dropout', 'no max-norm', ...: the baseline's name where every comparison has the same
    kind of baseline, else 'the baseline'."""
    from dropcli.conclusions import Namer

    names, found = Namer(summary), set()
    for _, r in summary[summary["paired_seeds"].notna()].iterrows():
        base = names.row(r["baseline"])
        found.add(names.pair(r, base)[1] if base is not None else "")
    return found.pop() if len(found) == 1 and "" not in found and "," not in next(iter(found)) else "the baseline"


def comparison_rows(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per comparison of a summary (against the baseline, then best against runner-up):
    label, diff, low, high (points; NaN: no interval), p_holm, conclusion, note (the conclusion with its
    Holm p: the equivalence test's for 'no different'), filled (Holm p < ALPHA)."""
    from dropcli.conclusions import Namer, p_text

    names, rows = Namer(summary), []
    for _, r in summary.iterrows():
        base = names.row(r["baseline"])
        if pd.notna(r["paired_seeds"]) and base is not None:
            a, b, ctx = names.pair(r, base)
            p = r["tost_p_holm"] if r["conclusion"] == "no different" else r["p_holm"]
            note = "" if pd.isna(p) else f", {'equivalence ' if r['conclusion'] == 'no different' else ''}Holm p = {p_text(p)}"
            rows.append({"label": f"{a} − {b}{ctx}", "diff": r["diff_points"], "low": r["diff_ci95_low_points"],
                         "high": r["diff_ci95_high_points"], "p_holm": r["p_holm"], "conclusion": r["conclusion"],
                         "note": r["conclusion"] + note})
    for _, r in summary.iterrows():
        second = names.row(r["runner_up"]) if r["rank"] == 1 else None
        if second is not None and pd.notna(r["lead_points"]):
            a, b, ctx = names.pair(r, second)
            holds = "ranking holds" if r["lead_holds"] else "ranking not established"
            conclusion = holds if pd.notna(r["lead_p_holm"]) else "one seed" if r["lead_seeds"] < 2 else "same every seed"
            note = conclusion + ("" if pd.isna(r["lead_p_holm"]) else f", Holm p = {p_text(r['lead_p_holm'])}")
            rows.append({"label": f"best {a} − runner-up {b}{ctx}", "diff": r["lead_points"],
                         "low": r["lead_ci95_low_points"], "high": r["lead_ci95_high_points"], "p_holm": r["lead_p_holm"],
                         "conclusion": conclusion, "note": note})
    out = pd.DataFrame(rows, columns=["label", "diff", "low", "high", "p_holm", "conclusion", "note"])
    out["filled"] = out["p_holm"].astype(float) < ALPHA
    return out


def draw_differences(summary: pd.DataFrame, title: str):
    """Every comparison as a row: the paired difference in points with its 95% CI (filled: Holm
    p < ALPHA), the equivalence margin as a grey band, the conclusion and Holm p at the right.
    Returns the Figure, or None for a summary without comparisons."""
    rows = comparison_rows(summary)
    if rows.empty:
        return None
    plt = pyplot()
    width = 7 + 0.07 * int(rows["label"].str.len().max())  # room for the labels beside a readable panel
    fig, ax = plt.subplots(figsize=(width, 2.0 + 0.42 * len(rows)), layout="constrained")
    y = np.arange(len(rows))[::-1]
    d, lo, hi = (rows[c].to_numpy(float) for c in ("diff", "low", "high"))
    low_v, high_v, beyond = view_range(d, lo, hi, include_zero=True)
    margin = summary["equivalence_margin_points"].dropna()
    band = ""
    if len(margin):
        ax.axvspan(-margin.iloc[0], margin.iloc[0], color="0.85", zorder=0)
        band = f"; grey: the equivalence margin ±{fmt_number(margin.iloc[0])} points"
    ax.axvline(0, color="grey", linewidth=0.8)
    for yi, (_, r), di, l, h, out in zip(y, rows.iterrows(), d, lo, hi, beyond):
        colour = OKABE_ITO[1] if di >= 0 else OKABE_ITO[2]
        if not np.isnan(l):
            ax.errorbar(di, yi, xerr=[[di - l], [h - di]], color=colour, capsize=4, marker="none")
        marker = "D" if np.isnan(l) else "o"
        ax.scatter(di, yi, marker=marker, s=40, zorder=3, color=colour if r["filled"] else "white", edgecolor=colour)
        if out:
            ci = "" if np.isnan(l) else f" [{_value(l, True)}, {_value(h, True)}]"
            mark_beyond(ax, di, yi, low_v, high_v, f"{_value(di, True)}{ci}", colour, horizontal=True)
        ax.annotate(r["note"], (1.01, yi), xycoords=("axes fraction", "data"), fontsize=8, va="center")
    ax.set_xlim(low_v, high_v)
    ax.set_yticks(y, rows["label"], fontsize=8)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    same = "diamond: the same difference on every seed (no interval)" if np.isnan(lo).any() else ""
    ax.set_xlabel(f"paired difference (points of accuracy), 95% CI; filled: Holm p < {fmt_number(ALPHA)}\n"
                  f"{same}{band}".rstrip("\n").lstrip("; ").replace("\n; ", "\n"))
    ax.grid(axis="x", alpha=0.3)
    figure_title(fig, f"Every comparison: {title}", width)
    return fig


def _write(folder, name: str, fig) -> Path:
    """Write `fig` as a PNG into the owned folder under `name`, then close it; returns the path."""
    try:
        return folder.write(name, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI))
    finally:
        pyplot().close(fig)


def draw_study_figures(folder, runs: pd.DataFrame, summary: pd.DataFrame, history: pd.DataFrame | None) -> list:
    """Write a study's figures into its owned.OwnedFolder `folder`: ablation.png, differences.png
    (when there are comparisons) and curves.png (with a history). Returns [(path, description)] in
    reading order; a figure this study does not get is removed if an earlier report wrote one."""
    from dropcli.plot_curves import draw_curves

    title = study_title(runs)
    figures = [(_write(folder, "ablation.png", draw_ablation(summary, title)),
                "Test accuracy, paired difference with the baseline and generalization gap against keep probability")]
    diff = draw_differences(summary, title)
    if diff is not None:
        figures.append((_write(folder, "differences.png", diff), "Every comparison: paired difference in points, 95% CI"))
    elif "differences.png" in folder.owned():
        folder.remove("differences.png")
    if history is not None and len(history):
        figures.append((_write(folder, "curves.png", draw_curves(history, title)), "Learning curves"))
    return figures
