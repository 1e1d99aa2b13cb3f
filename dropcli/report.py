"""Spreadsheet-ready CSV, seed aggregation, Rich tables and the ablation plot.

    $ dropcli report results/ablation      # rebuild summary.csv, the table and ablation.png

CSV files are UTF-8, comma-separated, one snake_case header row, no index column, numbers as
plain decimals (never 1e-05, never thousands separators), empty cells for missing values, and
text cells that a spreadsheet would run as a formula (leading = + - @) prefixed with a quote.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from dropcli.files import atomic_write

CONFIG_COLUMNS = ["keep_probs", "keep_prob", "input_keep_prob", "train_size"]
METRICS = ["test_accuracy", "validation_accuracy", "train_accuracy", "generalization_gap", "final_cost",
           "test_accuracy_mc", "train_seconds"]
# two-sided 95% Student t quantiles by degrees of freedom; beyond 30 the normal 1.96 is within 2%
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
       11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093,
       20: 2.086, 25: 2.060, 30: 2.042}


def t95(df: int) -> float:
    if df < 1:
        return math.nan
    return T95.get(df) or next((T95[k] for k in sorted(T95) if k >= df), 1.96)


def plain_number(x) -> str:
    """Plain decimal, at most 10 decimals (no float noise such as 0.01899999999999996), never an
    exponent; '' for NaN and infinities."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return ""
    if isinstance(x, (bool, np.bool_)):
        return str(bool(x)).lower()
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    return np.format_float_positional(float(x), precision=10, unique=True, trim="-")


def neutralise(text: str) -> str:
    """Stop spreadsheets from running a cell as a formula (CSV injection)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def to_csv_text(df: pd.DataFrame) -> str:
    out = pd.DataFrame(index=df.index)
    for col in df.columns:
        s = df[col]
        if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
            out[col] = [plain_number(v) for v in s.tolist()]
        else:
            out[col] = ["" if (v is None or (isinstance(v, float) and math.isnan(v))) else neutralise(str(v))
                        for v in s.tolist()]
    return out.to_csv(index=False, lineterminator="\n")


def write_csv(df: pd.DataFrame, path: str | Path) -> Path:
    text = to_csv_text(df)
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def read_runs(path: str | Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"keep_probs": str, "hidden": str, "status": str}, keep_default_na=True)


def per_class_frame(result) -> pd.DataFrame:
    """An EvalResult's rows per true class: images, correct, accuracy, then the confusion row
    (predicted_0, ...)."""
    counts = np.asarray(result.confusion, dtype=np.int64)
    frame = pd.DataFrame({"class": np.arange(len(counts)), "images": counts.sum(1), "correct": np.diag(counts),
                          "accuracy": result.per_class})
    return pd.concat([frame, pd.DataFrame(counts, columns=[f"predicted_{p}" for p in range(len(counts))])], axis=1)


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration over its seeds: counts, mean/std/95% CI of test accuracy, means."""
    rows = []
    for key, g in runs.groupby(CONFIG_COLUMNS, sort=False, dropna=False):
        ok = g[g["status"] == "ok"]
        n = len(ok)
        acc = ok["test_accuracy"]
        std = acc.std(ddof=1) if n > 1 else math.nan
        row = dict(zip(CONFIG_COLUMNS, key))
        row.update(runs=n, diverged=int((g["status"] != "ok").sum()), test_accuracy_mean=acc.mean() if n else math.nan,
                   test_accuracy_std=std, test_accuracy_ci95=t95(n - 1) * std / math.sqrt(n) if n > 1 else math.nan)
        for m in METRICS[1:]:
            if m in ok:
                row[f"{m}_mean"] = ok[m].mean() if n else math.nan
        rows.append(row)
    df = pd.DataFrame(rows)
    return df.sort_values(["train_size", "input_keep_prob", "keep_prob", "keep_probs"], kind="stable").reset_index(drop=True)


def best_index(summary: pd.DataFrame) -> int | None:
    s = summary["test_accuracy_mean"]
    return None if s.isna().all() else int(s.idxmax())


def summary_table(summary: pd.DataFrame, title: str = "Ablation summary"):
    from rich.table import Table

    table = Table(title=title)
    for name in ("keep", "input keep", "train size", "runs", "test acc (mean)", "± std", "± 95% CI",
                 "val acc", "train acc", "gap", "final cost"):
        table.add_column(name, justify="right")
    best = best_index(summary)

    def f(x, digits=4):
        return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"

    for i, r in summary.iterrows():
        runs = f"{r['runs']}" + (f" (+{r['diverged']} diverged)" if r["diverged"] else "")
        table.add_row(str(r["keep_probs"]), f"{r['input_keep_prob']:g}", str(r["train_size"]), runs,
                      f(r["test_accuracy_mean"]) + (" ★" if i == best else ""), f(r["test_accuracy_std"]),
                      f(r["test_accuracy_ci95"]), f(r["validation_accuracy_mean"]), f(r["train_accuracy_mean"]),
                      f(r["generalization_gap_mean"]), f(r["final_cost_mean"], 5),
                      style="bold green" if i == best else None)
    return table


def plot(summary: pd.DataFrame, path: str | Path, title: str) -> Path:
    """Test accuracy (mean ± 95% CI over seeds) and the generalization gap against keep probability."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7.5, 7), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    lines = summary.groupby(["input_keep_prob", "train_size"], sort=True)
    for (ik, ts), g in lines:
        g = g.sort_values("keep_prob")
        label = f"input keep {ik:g}, {int(ts):,} training images"
        mean, ci = g["test_accuracy_mean"], g["test_accuracy_ci95"].fillna(0)
        yerr = [ci.clip(upper=mean), ci.clip(upper=1 - mean)]  # accuracies live in [0, 1]
        top.errorbar(g["keep_prob"], mean, yerr=yerr, marker="o", capsize=4, label=label)
        bottom.errorbar(g["keep_prob"], g["generalization_gap_mean"], marker="s", capsize=4, label=label)
        for x, y, text in zip(g["keep_prob"], mean, g["keep_probs"].astype(str)):
            if " " in text:  # per-layer keep probabilities sit at their mean: name them
                top.annotate(text, (x, y), textcoords="offset points", xytext=(4, 6), fontsize=7)
    top.set_ylabel("test accuracy (mean ± 95% CI)")
    bottom.set_xlabel("hidden keep probability (mean over layers; 1.0 = no dropout)")
    top.set_title(title)
    top.grid(alpha=0.3)
    top.legend(loc="best", fontsize=8)
    bottom.axhline(0, color="grey", linewidth=0.8)
    bottom.set_ylabel("generalization gap\n(train − test accuracy)")
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)
    return path
