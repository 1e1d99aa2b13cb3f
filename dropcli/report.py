"""A study's summary: per configuration over seeds, each compared with a baseline seed by seed.

    $ dropcli report results/ablation                          # summary.csv, the table, the plots
    $ dropcli report results/ablation --metric test_accuracy_at_best --baseline keep=1,input_keep=1

summary.csv has one row per configuration: its runs, the mean, std and 95% Student-t half-width
of test accuracy, the means of the other measures, then the paired comparison of the chosen metric
with the baseline configuration (by default no dropout at all at the same training-set size and
max-norm): `baseline`, `paired_seeds`, `diff_mean`, `diff_ci95_low`, `diff_ci95_high`, `p_value`
(paired t-test, two-sided), `p_holm` (Holm-adjusted over all comparisons of the study), `wins`
(seeds where the configuration beats the baseline) and `wilcoxon_p` (with at least 6 pairs).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from dropcli.config import fmt_keep, fmt_max_norm, fmt_number, parse_keep
from dropcli.errors import DropcliError, UsageError
from dropcli.grid import parse_max_norms
from dropcli.stats import holm, paired, t_half_width

CONFIG_COLUMNS = ["keep_probs", "keep_prob_mean", "input_keep_prob", "max_norm", "train_size"]
MATCH_COLUMNS = ["keep_probs", "input_keep_prob", "max_norm", "train_size"]  # a configuration's identity
METRICS = ("test_accuracy", "test_accuracy_at_best")  # what --metric compares
MEANS = ("validation_accuracy", "train_accuracy", "generalization_gap", "final_cost", "test_accuracy_at_best",
         "best_epoch", "test_accuracy_mc", "group_train_seconds")
DEFAULT_BASELINE = {"keep_probs": "1", "input_keep_prob": 1.0}  # no dropout at all
BASELINE_KEYS = {"keep": "keep_probs", "input_keep": "input_keep_prob", "max_norm": "max_norm",
                 "train_size": "train_size"}
ALPHA = 0.05  # the level the table marks Holm-adjusted differences at


def parse_baseline(text: str) -> dict:
    """'keep=1,input_keep=1' (axes not named match the compared configuration's own)."""
    spec = {}
    for part in [p.strip() for p in text.split(",") if p.strip()]:
        key, _, value = part.partition("=")
        key = key.strip().replace("-", "_")
        if key not in BASELINE_KEYS or not value:
            raise ValueError(f"--baseline takes axis=value pairs from {', '.join(BASELINE_KEYS)}, "
                             f"e.g. keep=1,input_keep=1 (got {part!r})")
        col = BASELINE_KEYS[key]
        if col == "keep_probs":
            spec[col] = fmt_keep(parse_keep(value, "--baseline keep"))
        elif col == "input_keep_prob":
            spec[col] = parse_keep(value, "--baseline input_keep")[0]
        elif col == "max_norm":
            spec[col] = parse_max_norms(value, "--baseline max_norm")[0]
        else:
            try:
                spec[col] = int(value)
            except ValueError:
                raise ValueError(f"--baseline train_size takes a whole number (got {value!r})") from None
    if not spec:
        raise ValueError("--baseline needs at least one axis=value pair, e.g. keep=1,input_keep=1")
    return spec


def describe(config: dict) -> str:
    """'keep 1, input keep 1, max-norm none, 55000 images'."""
    mn = config["max_norm"]
    return (f"keep {config['keep_probs']}, input keep {fmt_number(config['input_keep_prob'])}, "
            f"max-norm {fmt_max_norm(None if mn is None or (isinstance(mn, float) and math.isnan(mn)) else mn)}, "
            f"{int(config['train_size'])} images")


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def _norm(value):
    return math.nan if value is None else value


def summarise(runs: pd.DataFrame, metric: str = "test_accuracy", baseline: dict | None = None) -> pd.DataFrame:
    """One row per configuration over its seeds, compared with its baseline (see module docstring)."""
    if metric not in METRICS:
        raise UsageError(f"--metric must be one of {', '.join(METRICS)}, not {metric!r}")
    spec = DEFAULT_BASELINE if baseline is None else baseline
    ok = runs[runs["status"] == "ok"]
    rows, per_seed = [], []  # (configuration key, per-seed metric); keys hold NaN, so no dict
    for key, g in runs.groupby(MATCH_COLUMNS, sort=False, dropna=False):
        good = ok.loc[ok.index.intersection(g.index)]
        acc = good["test_accuracy"].to_numpy(dtype=np.float64)
        n = len(good)
        row = {"keep_probs": key[0], "keep_prob_mean": float(g["keep_prob_mean"].iloc[0]), "input_keep_prob": key[1],
               "max_norm": key[2], "train_size": key[3], "runs": n, "diverged": int(len(g) - n),
               "test_accuracy_mean": acc.mean() if n else math.nan,
               "test_accuracy_std": float(np.std(acc, ddof=1)) if n > 1 else math.nan,
               "test_accuracy_ci95": t_half_width(acc),
               "test_accuracy_at_best_ci95": t_half_width(good["test_accuracy_at_best"].dropna().to_numpy(np.float64))}
        for m in MEANS:
            row[f"{m}_mean"] = good[m].mean() if n and good[m].notna().any() else math.nan
        rows.append(row)
        per_seed.append((tuple(_norm(k) for k in key), good.set_index("seed")[metric].dropna()))
    summary = pd.DataFrame(rows)
    comparisons = []
    for _, row in summary.iterrows():
        target = {c: spec.get(c, row[c]) for c in MATCH_COLUMNS}
        target["max_norm"] = _norm(target["max_norm"])
        own = tuple(_norm(row[c]) for c in MATCH_COLUMNS)
        base_key = tuple(target[c] for c in MATCH_COLUMNS)
        mine = next(s for k, s in per_seed if all(_same(a, b) for a, b in zip(k, own)))
        found = next(((k, s) for k, s in per_seed if all(_same(a, b) for a, b in zip(k, base_key))), None)
        comp = {"metric": metric, "baseline": describe(target)}
        if found is not None and not all(_same(a, b) for a, b in zip(found[0], own)):
            theirs = found[1]
            common = mine.index.intersection(theirs.index)
            if len(common):
                comp.update(paired((mine[common] - theirs[common]).to_numpy()))
        comparisons.append(comp)
    summary = pd.concat([summary, pd.DataFrame(comparisons, index=summary.index)], axis=1)
    for col in ("paired_seeds", "diff_mean", "diff_ci95_low", "diff_ci95_high", "p_value", "wins", "wilcoxon_p"):
        if col not in summary:
            summary[col] = math.nan
    summary["p_holm"] = holm(summary["p_value"].to_numpy(dtype=np.float64))
    order = ["keep_probs", "keep_prob_mean", "input_keep_prob", "max_norm", "train_size", "runs", "diverged",
             "test_accuracy_mean", "test_accuracy_std", "test_accuracy_ci95", *[f"{m}_mean" for m in MEANS],
             "test_accuracy_at_best_ci95",
             "metric", "baseline", "paired_seeds", "diff_mean", "diff_ci95_low", "diff_ci95_high", "p_value", "p_holm",
             "wins", "wilcoxon_p"]
    summary = summary[order]
    return summary.sort_values(["train_size", "max_norm", "input_keep_prob", "keep_prob_mean", "keep_probs"],
                               kind="stable", na_position="first").reset_index(drop=True)


def best_index(summary: pd.DataFrame, metric: str = "test_accuracy") -> int | None:
    s = summary[f"{metric}_mean"]
    return None if s.isna().all() else int(s.idxmax())


def summary_table(summary: pd.DataFrame, title: str = "Ablation summary"):
    """The Rich table: each configuration's accuracy, and its paired difference with the baseline;
    ✓ marks a difference that survives Holm's correction at 0.05."""
    from rich.table import Table

    metric = summary["metric"].iloc[0] if len(summary) else "test_accuracy"
    label = "test acc" if metric == "test_accuracy" else "test acc at best epoch"
    table = Table(title=title, caption=f"diff: {label} minus the baseline's, paired by seed, in points (95% CI); "
                                       f"✓ = Holm-adjusted p < {ALPHA}")
    norms = summary["max_norm"].notna().any()  # the max-norm column only where a study varies it
    at_best = metric == "test_accuracy_at_best"
    shown = "test_accuracy_at_best" if at_best else "test_accuracy"
    columns = ["keep", "input", *(["max-norm"] if norms else []), "images", "runs",
               "acc @best" if at_best else "test acc", "±95% CI", "gap",
               "diff vs baseline", "p Holm", "wins"]
    for name in columns:
        table.add_column(name, justify="right", no_wrap=True)
    best = best_index(summary, shown)

    def f(x, digits=4):
        return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"

    for i, r in summary.iterrows():
        runs = f"{r['runs']}" + (f" (+{r['diverged']} diverged)" if r["diverged"] else "")
        diff = ""
        if not math.isnan(r["diff_mean"]):
            ci = (f" [{100 * r['diff_ci95_low']:+.2f}, {100 * r['diff_ci95_high']:+.2f}]"
                  if not math.isnan(r["diff_ci95_low"]) else "")
            diff = f"{100 * r['diff_mean']:+.2f}{ci}"
        p = ("" if math.isnan(r["p_holm"]) else ("<0.001" if r["p_holm"] < 0.001 else f"{r['p_holm']:.3f}")
             + (" ✓" if r["p_holm"] < ALPHA else ""))
        wins = "" if math.isnan(r["paired_seeds"]) else f"{int(r['wins'])}/{int(r['paired_seeds'])}"
        mn = r["max_norm"]
        norm = ["none" if mn is None or math.isnan(mn) else fmt_number(mn)] if norms else []
        table.add_row(str(r["keep_probs"]), fmt_number(r["input_keep_prob"]), *norm, f"{int(r['train_size']):,}", runs,
                      f(r[f"{shown}_mean"]) + (" ★" if i == best else ""), f(r[f"{shown}_ci95"]),
                      f(r["generalization_gap_mean"]), diff, p, wins, style="bold green" if i == best else None)
    return table


def per_class_frame(result) -> pd.DataFrame:
    """An EvalResult's rows per true class: images, correct, accuracy, then the confusion row
    (predicted_0, ...)."""
    counts = np.asarray(result.confusion, dtype=np.int64)
    frame = pd.DataFrame({"class": np.arange(len(counts)), "images": counts.sum(1), "correct": np.diag(counts),
                          "accuracy": result.per_class})
    return pd.concat([frame, pd.DataFrame(counts, columns=[f"predicted_{p}" for p in range(len(counts))])], axis=1)


def mc_curve_frame(rows: list[dict], weight_scaling: float) -> pd.DataFrame:
    """Per number of samples: the repeats' mean, std, min and max accuracy, beside weight scaling."""
    df = pd.DataFrame(rows)
    g = df.groupby("samples")["accuracy"]
    out = pd.DataFrame({"samples": g.mean().index, "repeats": g.size().to_numpy(), "accuracy_mean": g.mean().to_numpy(),
                        "accuracy_std": g.std(ddof=1).to_numpy(), "accuracy_min": g.min().to_numpy(),
                        "accuracy_max": g.max().to_numpy()})
    out["weight_scaling_accuracy"] = weight_scaling
    return out


def build_report(out: Path, metric: str = "test_accuracy", baseline: dict | None = None) -> pd.DataFrame:
    """summary.csv, ablation.png and curves.png from runs.csv and history.csv alone."""
    from dropcli.data import TITLES
    from dropcli.grid import cells_of
    from dropcli.plots import plot_ablation, plot_curves
    from dropcli.study import check_rows, read_identity, study_folder
    from dropcli.tables import read_history, read_runs, write_csv

    path = out / "runs.csv"
    if not path.exists():
        raise DropcliError(f"{path} does not exist; run 'dropcli ablate --out {out}' first")
    identity = read_identity(out)
    if identity is None:
        raise DropcliError(f"{out} has no study.json, so its rows cannot be checked against a grid; "
                           "report reads only study folders written by dropcli ablate or merge")
    cells = cells_of(identity)
    runs = read_runs(path)
    check_rows(runs, path, cells)
    if runs.empty:
        raise DropcliError(f"{path} holds no finished cells yet; run or resume 'dropcli ablate --out {out}' first")
    summary = summarise(runs, metric, baseline)
    folder = study_folder(out)
    write_csv(summary, folder.claim_name("summary.csv"))
    seeds = runs["seed"].nunique()
    dataset = runs["dataset"].iloc[0]
    title = (f"{TITLES.get(dataset, dataset)}, {int(runs['epochs'].iloc[0])} epochs, "
             f"{seeds} seed{'s' if seeds != 1 else ''} per point, hidden {runs['hidden'].iloc[0]}")
    history = None
    if (out / "history.csv").exists():
        history = read_history(out / "history.csv")
        check_rows(history, out / "history.csv", cells)
    plot_ablation(summary, folder.claim_name("ablation.png"), title)
    if history is not None:
        plot_curves(history, folder.claim_name("curves.png"), title)
    return summary
