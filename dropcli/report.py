"""A study's summary: per configuration over seeds, each compared with a baseline seed by seed.

    $ dropcli report results/ablation                          # summary.csv, the table, plots, report.html
    $ dropcli report results/ablation --metric test_accuracy_at_best --baseline keep=1,input_keep=1

summary.csv has one row per configuration: its axes (keep_prob_mean is the mean of the per-layer
keep_probs), runs, diverged runs and test_images; the mean, std and 95% Student-t half-width of
test accuracy and the means of the other measures (accuracies and the generalization gap as
fractions, like runs.csv); then the paired comparison of the chosen metric with the baseline
configuration (by default no dropout at all at the same training-set size and max-norm), in
points of accuracy: `metric`, `role` (primary for test accuracy, exploratory for another metric),
`baseline`, and the columns compare.py describes (differences in points, p-values, equivalence,
the detectable difference, the conclusion, the ranking).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from dropcli.compare import (
    AXIS_KEYS,
    COMPARISON_COLUMNS,
    DEFAULT_BASELINE,
    KEY,
    LEAD_COLUMNS,
    PRIMARY_METRIC,
    against_baselines,
    check_baseline,
    correct_images,
    describe,
    families,
    key_of,
    leads,
)
from dropcli.config import EQUIVALENCE_MARGIN, fmt_number
from dropcli.errors import DropcliError, UsageError
from dropcli.stats import ALPHA, t_half_width

METRICS = ("test_accuracy", "test_accuracy_at_best")  # what --metric compares
MEANS = ("validation_accuracy", "train_accuracy", "generalization_gap", "final_cost", "test_accuracy_at_best",
         "best_epoch", "test_accuracy_mc", "group_train_seconds")
P_COLUMNS = ("p_value", "p_holm", "tost_p", "tost_p_holm", "wilcoxon_p", "lead_p_value", "lead_p_holm")
SUMMARY_COLUMNS = ["keep_probs", "keep_prob_mean", "input_keep_prob", "max_norm", "train_size", *AXIS_KEYS, "runs", "diverged",
                   "test_images", "test_accuracy_mean", "test_accuracy_std", "test_accuracy_ci95",
                   *[f"{m}_mean" for m in MEANS], "test_accuracy_at_best_ci95", "generalization_gap_ci95",
                   "metric", "role", "baseline", *COMPARISON_COLUMNS, *LEAD_COLUMNS]
BOOL_COLUMNS = ("same_diff_every_seed", "lead_same_every_seed", "lead_holds")
_TEXT = {"keep_probs": "text", "hidden": "text?", "metric": "text", "role": "text", "baseline": "text?", "conclusion": "text?",
         "runner_up": "text?", **{c: "text?" for c in BOOL_COLUMNS}}
_INT = {"train_size": "int", "runs": "int", "diverged": "int", "test_images": "int", "paired_seeds": "int?",
        "wins": "int?", "ties": "int?", "losses": "int?", "rank": "int?", "lead_seeds": "int?", "lead_wins": "int?"}
_EXACT = {"keep_prob_mean": "exact", "input_keep_prob": "exact", "max_norm": "exact?", "equivalence_margin_points": "exact?",
          "lr": "exact?"}
# summary.csv's columns and kinds (tables.py), in order
SUMMARY_SCHEMA = {c: _TEXT.get(c) or _INT.get(c) or _EXACT.get(c) or "float?" for c in SUMMARY_COLUMNS}


def _norm(value):
    return math.nan if value is None else value


def _describe_row(row) -> str:
    return describe({c: row[c] for c in KEY + AXIS_KEYS if c in row.index})


def _descriptive(runs: pd.DataFrame, metric: str, columns: list[str]) -> tuple[pd.DataFrame, list]:
    """One row per configuration (told apart by `columns`, key_of: its runs, means and intervals
    over seeds) and, per configuration, its key with the per-seed correct test images of `metric`."""
    ok = runs[runs["status"] == "ok"]
    rows, per_seed = [], []  # (configuration key, per-seed counts); keys hold NaN, so no dict
    for key, g in runs.groupby(columns, sort=False, dropna=False):
        good = ok.loc[ok.index.intersection(g.index)]
        acc = good["test_accuracy"].to_numpy(dtype=np.float64)
        n = len(good)
        row = {"keep_probs": key[0], "keep_prob_mean": float(g["keep_prob_mean"].iloc[0]), "input_keep_prob": key[1],
               "max_norm": _norm(key[2]), "train_size": key[3], "runs": n, "diverged": int(len(g) - n),
               "test_images": int(g["test_images"].iloc[0]),
               "test_accuracy_mean": acc.mean() if n else math.nan,
               "test_accuracy_std": float(np.std(acc, ddof=1)) if n > 1 else math.nan,
               "test_accuracy_ci95": t_half_width(acc),
               "test_accuracy_at_best_ci95": t_half_width(good["test_accuracy_at_best"].dropna().to_numpy(np.float64)),
               "generalization_gap_ci95": t_half_width(good["generalization_gap"].dropna().to_numpy(np.float64)),
               **dict(zip(columns[len(KEY):], key[len(KEY):]))}  # lr and hidden, where varied
        for m in MEANS:
            row[f"{m}_mean"] = good[m].mean() if n and good[m].notna().any() else math.nan
        rows.append(row)
        scored = good[good[metric].notna()]
        counts = correct_images(scored[metric], scored["test_images"], metric)
        per_seed.append((tuple(row[c] for c in columns), pd.Series(counts.to_numpy(), index=scored["seed"].to_numpy())))
    return pd.DataFrame(rows), per_seed


def summarise(runs: pd.DataFrame, metric: str = PRIMARY_METRIC, baseline: dict | None = None,
              margin: float = EQUIVALENCE_MARGIN) -> pd.DataFrame:
    """The summary of a study's runs (a runs.csv frame): one row per configuration, in
    SUMMARY_COLUMNS (see the module docstring). metric: one of METRICS; baseline: {column: value}
    (parse_baseline; default DEFAULT_BASELINE); margin: the equivalence margin in points.
    Raises UsageError for an unknown metric, DropcliError for runs over different test sets."""
    if metric not in METRICS:
        raise UsageError(f"--metric must be one of {', '.join(METRICS)}, not {metric!r}")
    sizes = sorted(set(int(n) for n in runs["test_images"]))
    if len(sizes) > 1:
        raise DropcliError(f"runs.csv mixes test sets of {sizes[0]:,} and {sizes[1]:,} images; "
                           "a study compares configurations on one test set")
    spec = DEFAULT_BASELINE if baseline is None else baseline
    key = key_of(runs)
    summary, per_seed = _descriptive(runs, metric, key)
    targets = []
    for _, row in summary.iterrows():
        target = {c: spec.get(c, row[c]) for c in key}
        target["max_norm"] = _norm(target["max_norm"])
        targets.append(target)
    scale = 100.0 / sizes[0] if sizes else 1.0
    comps = against_baselines(summary, per_seed, [tuple(t[c] for c in key) for t in targets], scale, margin, key)
    summary = pd.concat([summary, comps], axis=1)
    summary["metric"], summary["role"] = metric, "primary" if metric == PRIMARY_METRIC else "exploratory"
    summary["baseline"] = [describe(t) for t in targets]
    summary = pd.concat([summary, leads(summary, per_seed, list(summary["baseline"]), metric, scale, _describe_row, key)],
                        axis=1)
    summary = families(summary)
    summary = summary[[c for c in SUMMARY_COLUMNS if c not in AXIS_KEYS or c in key]]  # lr, hidden: where varied
    order = [c for c in ("hidden", "lr") if c in key] + ["train_size", "max_norm", "input_keep_prob", "keep_prob_mean",
                                                         "keep_probs"]
    return summary.sort_values(order, kind="stable", na_position="first",
                               key=lambda s: s.map(_width) if s.name == "hidden" else s).reset_index(drop=True)


def _width(hidden: str) -> tuple[int, ...]:
    """'512 512' -> (512, 512): widths sorted as numbers, not text."""
    return tuple(int(w) for w in str(hidden).split())


def best_index(summary: pd.DataFrame, metric: str = PRIMARY_METRIC) -> int | None:
    """The row of the highest mean `metric` (the table's ★), or None when no configuration has one or
    several share it (a tie names no best)."""
    s = summary[f"{metric}_mean"]
    return None if s.isna().all() or (s == s.max()).sum() > 1 else int(s.idxmax())


def summary_table(summary: pd.DataFrame, title: str = "Ablation summary"):
    """The Rich table of a summary frame: each configuration's accuracy, its paired difference with
    the baseline in points, the Holm-adjusted p (✓ below ALPHA), seeds won and the conclusion."""
    from rich.table import Table

    from dropcli.conclusions import diff_text, p_text, percent

    metric = summary["metric"].iloc[0] if len(summary) else PRIMARY_METRIC
    label = "test acc" if metric == PRIMARY_METRIC else "test acc at best epoch (exploratory)"
    table = Table(title=title, caption=f"acc, CI, gap in %; diff: {label} minus the baseline's, paired by seed, in points "
                                       f"(95% CI); ✓: Holm-adjusted p < {ALPHA}; ★: the highest mean")
    norms = summary["max_norm"].notna().any()  # the max-norm column only where a study varies it
    axes = [c for c in AXIS_KEYS if c in summary and summary[c].notna().any()]  # lr, hidden: where varied
    columns = ["keep", "input", *(["max-norm"] if norms else []), "images", *axes, "runs",
               "test acc" if metric == PRIMARY_METRIC else "acc @best", "±95% CI", "gap",
               "diff vs baseline", "p Holm", "wins", "conclusion"]
    for name in columns:
        table.add_column(name, justify="right", no_wrap=True)
    best = best_index(summary, metric)
    for i, r in summary.iterrows():
        runs = f"{r['runs']}" + (f" (+{r['diverged']} diverged)" if r["diverged"] else "")
        p = "" if pd.isna(r["p_holm"]) else p_text(r["p_holm"]) + (" ✓" if r["p_holm"] < ALPHA else "")
        wins = "" if pd.isna(r["paired_seeds"]) else f"{int(r['wins'])}/{int(r['paired_seeds'])}"
        mn = r["max_norm"]
        norm = ["none" if pd.isna(mn) else fmt_number(mn)] if norms else []
        varied = [fmt_number(r[c]) if c == "lr" else str(r[c]) for c in axes]
        table.add_row(str(r["keep_probs"]), fmt_number(r["input_keep_prob"]), *norm, f"{int(r['train_size']):,}", *varied,
                      runs,
                      percent(r[f"{metric}_mean"]) + (" ★" if i == best else ""), percent(r[f"{metric}_ci95"]),
                      percent(r["generalization_gap_mean"]), diff_text(r), p, wins, str(r["conclusion"] or ""),
                      style="bold green" if i == best else None)
    return table


def per_class_frame(result) -> pd.DataFrame:
    """An EvalResult's rows per true class: images, correct, accuracy, then the confusion row
    (predicted_0, ...)."""
    counts = np.asarray(result.confusion, dtype=np.int64)
    frame = pd.DataFrame({"class": np.arange(len(counts)), "images": counts.sum(1), "correct": np.diag(counts),
                          "accuracy": result.per_class})
    return pd.concat([frame, pd.DataFrame(counts, columns=[f"predicted_{p}" for p in range(len(counts))])], axis=1)


def mc_curve_frame(rows: list[dict], weight_scaling: float, images: int | None = None) -> pd.DataFrame:
    """Per number of samples: the repeats' mean, std, min and max accuracy, beside weight scaling.
    rows: dicts of repeat, samples, accuracy (fraction); images: the evaluated split's size (a
    column `images`, for the weight-scaling interval; omitted when None)."""
    df = pd.DataFrame(rows)
    g = df.groupby("samples")["accuracy"]
    out = pd.DataFrame({"samples": g.mean().index, "repeats": g.size().to_numpy(), "accuracy_mean": g.mean().to_numpy(),
                        "accuracy_std": g.std(ddof=1).to_numpy(), "accuracy_min": g.min().to_numpy(),
                        "accuracy_max": g.max().to_numpy()})
    out["weight_scaling_accuracy"] = weight_scaling
    if images is not None:
        out["images"] = int(images)
    return out


def read_summary(path: Path) -> pd.DataFrame:
    """A summary.csv written by summarise (SUMMARY_SCHEMA), with its true/false columns as bools
    (None where empty). Raises TableError for a file that is not one."""
    from dropcli.tables import read_table

    # lr and hidden are written only by studies that vary them
    summary = read_table(path, SUMMARY_SCHEMA, "dropcli summary table",
                         {c: lambda cols: [None] * len(cols["keep_probs"]) for c in AXIS_KEYS})
    for col in BOOL_COLUMNS:
        summary[col] = [None if v is None else v == "true" for v in summary[col]]
    for col in ("conclusion", "runner_up", "baseline"):
        summary[col] = [v or "" for v in summary[col]]
    return summary


def build_report(out: Path, metric: str = PRIMARY_METRIC, baseline: dict | None = None,
                 margin: float = EQUIVALENCE_MARGIN, command: str | None = None) -> pd.DataFrame:
    """Write summary.csv, the figures and report.html of the study folder `out` from its runs.csv,
    history.csv and study.json alone (replacing only files dropcli wrote there: study.study_folder);
    returns the summary as read back from summary.csv. command: the report command report.html
    shows. Raises DropcliError without runs or study.json, TableError for a row outside the grid."""
    from dropcli.grid import cells_of
    from dropcli.plot_study import draw_study_figures
    from dropcli.report_html import render
    from dropcli.study import REPORT_FILES, check_rows, history_of, readable_study, study_folder
    from dropcli.tables import check_history, csv_text, read_runs

    path = out / "runs.csv"
    identity = readable_study(out)
    folder = study_folder(out)
    folder.check(REPORT_FILES)  # a file report may not replace is refused before anything is written
    cells = cells_of(identity)
    if baseline:
        try:
            check_baseline(baseline, cells)  # before anything is written
        except ValueError as e:
            raise UsageError(str(e)) from None
    runs = read_runs(path)
    check_rows(runs, path, cells)
    if runs.empty:
        raise DropcliError(f"{path} holds no finished cells yet; run or resume 'dropcli ablate --out {out}' first")
    history = None
    if (out / "history.csv").exists():
        history = history_of(out)
        check_rows(history, out / "history.csv", cells)
        check_history(history, runs, out / "history.csv")
    folder.write_text("summary.csv", csv_text(summarise(runs, metric, baseline, margin), SUMMARY_SCHEMA, P_COLUMNS))
    summary = read_summary(out / "summary.csv")
    figures = draw_study_figures(folder, runs, summary, history)
    folder.write_text("report.html", render(out, runs, summary, figures, command, identity))
    return summary
