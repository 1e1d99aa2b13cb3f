"""The comparisons of a study summary: each configuration against its baseline, the best against the
runner-up, and the Holm families that the conclusions rest on.

    $ dropcli report results/ablation --equivalence-margin 0.2

Every comparison pairs two configurations seed by seed on whole numbers of correct test images
(see stats.py) and is given in points of accuracy (percentage points: 100 / test images per
image). Two families, each Holm-adjusted at stats.ALPHA: the difference tests (every configuration
against its baseline, and the best configuration against the runner-up of its baseline group,
counted once where that is a comparison with the baseline already),
and the equivalence tests (TOST at +-margin points). A comparison's `conclusion` is one of:
better, worse (Holm-adjusted difference test), no different (Holm-adjusted equivalence test,
where the difference test is not significant), inconclusive (neither; `detectable_diff_points`
gives the difference the study could have detected at 80% power at Holm's strictest level,
alpha / m), same every seed (every seed has the same difference: no test), one seed (no test).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from dropcli.config import fmt_keep, fmt_max_norm, fmt_number, parse_ints, parse_keep, trim
from dropcli.errors import DropcliError
from dropcli.grid import fmt_hidden, parse_lrs, parse_max_norms, parse_widths
from dropcli.power import detectable_difference
from dropcli.stats import ALPHA, POWER, holm, paired

PRIMARY_METRIC = "test_accuracy"  # the metric of a study's Holm family; others are labelled exploratory
DEFAULT_BASELINE = {"keep_probs": "1", "input_keep_prob": 1.0}  # no dropout at all
BASELINE_KEYS = {"keep": "keep_probs", "input_keep": "input_keep_prob", "max_norm": "max_norm",
                 "train_size": "train_size", "lr": "lr", "hidden": "hidden"}
KEY = ["keep_probs", "input_keep_prob", "max_norm", "train_size"]  # a configuration's identity
AXIS_KEYS = ["lr", "hidden"]  # also part of it in a study that varies them (--lrs, --hiddens)


def key_of(frame: pd.DataFrame) -> list[str]:
    """The columns that tell a frame's configurations apart (runs.csv or summary.csv rows): KEY, and
    lr and hidden where the frame holds more than one value of them."""
    return KEY + [c for c in AXIS_KEYS if c in frame and frame[c].nunique() > 1]
COMPARISON_COLUMNS = ["paired_seeds", "wins", "ties", "losses", "same_diff_every_seed", "diff_points", "diff_sd_points",
                      "diff_ci95_low_points", "diff_ci95_high_points", "p_value", "p_holm", "equivalence_margin_points",
                      "tost_p", "tost_p_holm", "detectable_diff_points", "wilcoxon_p", "conclusion"]
LEAD_COLUMNS = ["rank", "runner_up", "lead_seeds", "lead_wins", "lead_same_every_seed", "lead_points",
                "lead_ci95_low_points", "lead_ci95_high_points", "lead_p_value", "lead_p_holm", "lead_holds"]
_RENAMES = {"same_every_seed": "same_diff_every_seed", "diff": "diff_points", "diff_sd": "diff_sd_points",
            "diff_ci_low": "diff_ci95_low_points", "diff_ci_high": "diff_ci95_high_points"}


def parse_baseline(text: str) -> dict:
    """The --baseline option, 'keep=1,input_keep=1', as {summary column: value}; axes not named match
    the compared configuration's own. Raises ValueError naming the fix for anything else (an axis twice)."""
    spec = {}
    for part in [trim(p) for p in text.split(",") if trim(p)]:
        key, _, value = part.partition("=")
        key = trim(key).replace("-", "_")
        if key not in BASELINE_KEYS or not value:
            raise ValueError(f"--baseline takes axis=value pairs from {', '.join(BASELINE_KEYS)}, "
                             f"e.g. keep=1,input_keep=1 (got {part!r})")
        if (col := BASELINE_KEYS[key]) in spec:
            raise ValueError(f"--baseline names {key} twice; give each axis once, e.g. keep=1,input_keep=1")
        if col == "keep_probs":
            spec[col] = fmt_keep(parse_keep(value, "--baseline keep"))
        elif col == "input_keep_prob":
            spec[col] = parse_keep(value, "--baseline input_keep")[0]
        elif col == "max_norm":
            spec[col] = parse_max_norms(value, "--baseline max_norm")[0]
        elif col == "lr":
            spec[col] = parse_lrs(value, "--baseline lr")[0]
        elif col == "hidden":
            spec[col] = fmt_hidden(parse_widths(value, "--baseline hidden"))
        else:
            spec[col] = parse_ints(value, "--baseline train_size")[0]
    if not spec:
        raise ValueError("--baseline needs at least one axis=value pair, e.g. keep=1,input_keep=1")
    return spec


def check_baseline(baseline: dict | None, cells: list) -> None:
    """Refuse (ValueError) a --baseline (parse_baseline's dict) naming an axis value that no cell of
    the study has (cells: its config.TrainConfigs), naming the values it has: a baseline outside
    the study would leave every comparison empty. ablate checks before it trains, report before it
    writes anything. None: the default, DEFAULT_BASELINE (no dropout), which ablate requires of a
    grid that names no --baseline, so that no study trains to compare nothing."""
    if baseline is None:  # a grid is a product of its axes: each value there is a cell with the other's
        try:
            check_baseline(DEFAULT_BASELINE, cells)
        except ValueError:
            example = cells[0].keep_label.replace(" ", ":") if cells else "0.5"
            raise ValueError("the grid has no cell without dropout (keep 1, input keep 1), the baseline every "
                             "configuration is compared with; add 1 to --keep-probs (and --input-keep-probs), or "
                             f"name a baseline the grid has, e.g. --baseline keep={example}") from None
        return
    shown = {"keep_probs": lambda c: c.keep_label, "input_keep_prob": lambda c: fmt_number(c.input_keep_prob),
             "max_norm": lambda c: fmt_max_norm(c.max_norm), "train_size": lambda c: str(c.n_train),
             "lr": lambda c: fmt_number(c.lr), "hidden": lambda c: fmt_hidden(c.hidden)}
    given = {"keep_probs": str, "input_keep_prob": fmt_number, "max_norm": fmt_max_norm, "train_size": str,
             "lr": fmt_number, "hidden": str}
    for key, column in BASELINE_KEYS.items():
        if column not in baseline:
            continue
        there = list(dict.fromkeys(shown[column](c) for c in cells))
        value = given[column](baseline[column])
        if value not in there:
            raise ValueError(f"--baseline {key}={value} is not in this study, whose {key} values are "
                             f"{', '.join(there)}; e.g. --baseline {key}={there[-1].replace(' ', ':')}")


def describe(config) -> str:
    """A configuration ({column: value} of KEY, with lr and hidden where the study varies them;
    max_norm None or NaN for none) as summary.csv's `baseline` and `runner_up` name it: 'keep 1,
    input keep 1, max-norm none, 55000 images', then ', lr 0.003, hidden 1024 1024' where given."""
    mn = config["max_norm"]
    axes = "".join(f", {c} {fmt_number(config[c]) if c == 'lr' else config[c]}" for c in AXIS_KEYS
                   if c in config and not pd.isna(config[c]))
    return (f"keep {config['keep_probs']}, input keep {fmt_number(config['input_keep_prob'])}, "
            f"max-norm {fmt_max_norm(None if mn is None or (isinstance(mn, float) and math.isnan(mn)) else mn)}, "
            f"{int(config['train_size'])} images{axes}")


def correct_images(accuracy: pd.Series, test_images: pd.Series, what: str = "test_accuracy") -> pd.Series:
    """Whole numbers of correct test images, (n,) int64, from accuracies (fractions) and the
    test-set sizes of the same rows. Raises DropcliError when an accuracy is not a whole number of
    its test images (a runs.csv edited by hand, or from another program)."""
    counts = accuracy.to_numpy(np.float64) * test_images.to_numpy(np.float64)
    rounded = np.round(counts)
    bad = np.flatnonzero(np.abs(counts - rounded) > 1e-4)
    if len(bad):
        i = bad[0]
        raise DropcliError(f"{what} {accuracy.iloc[i]} is not a whole number of {int(test_images.iloc[i])} test images; "
                           "runs.csv was not written by dropcli, restore it from a copy")
    return pd.Series(rounded.astype(np.int64), index=accuracy.index)


def same_key(a: tuple, b: tuple) -> bool:
    """Configuration keys equal, NaN (no max-norm) equal to NaN."""
    return all(x == y or (isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y))
               for x, y in zip(a, b))


def _find(per_seed: list[tuple[tuple, pd.Series]], key: tuple):
    return next((s for k, s in per_seed if same_key(k, key)), None)


def _compare(mine: pd.Series, theirs: pd.Series, scale: float, margin: float | None) -> dict:
    common = mine.index.intersection(theirs.index)
    if not len(common):
        return {}
    got = paired((mine[common] - theirs[common]).to_numpy(), scale, margin)
    return {_RENAMES.get(k, k): v for k, v in got.items()}


def against_baselines(summary: pd.DataFrame, per_seed: list, baseline_keys: list[tuple], scale: float,
                      margin: float, key: list[str] = KEY) -> pd.DataFrame:
    """Each row of `summary` against the configuration baseline_keys[i], paired by seed.
    per_seed: (configuration key, per-seed correct images indexed by seed) pairs; scale: points
    per image; key: the columns of a configuration key (key_of). Returns the comparison columns
    (empty where a row is its own baseline or the baseline is missing)."""
    rows = []
    for (_, row), base in zip(summary.iterrows(), baseline_keys):
        own = tuple(row[c] for c in key)
        theirs = _find(per_seed, base)
        comp = {} if theirs is None or same_key(own, base) else _compare(_find(per_seed, own), theirs, scale, margin)
        if comp:
            comp["equivalence_margin_points"] = margin
        rows.append(comp)
    return pd.DataFrame(rows, index=summary.index, columns=[c for c in COMPARISON_COLUMNS if c not in
                                                              ("p_holm", "tost_p_holm", "detectable_diff_points", "conclusion")])


def leads(summary: pd.DataFrame, per_seed: list, groups: list[str], metric: str, scale: float,
          describe, key: list[str] = KEY) -> pd.DataFrame:
    """The ranking claim of each baseline group of 3 or more configurations: rank by the mean of
    `metric` (1 = best), and on the best row its paired comparison with the runner-up
    (lead_* columns, points). groups: each row's baseline group label; describe(row) names a row;
    key: the columns of a configuration key (key_of)."""
    out = pd.DataFrame(index=summary.index, columns=LEAD_COLUMNS, dtype=object)
    for _, idx in pd.Series(summary.index, index=groups).groupby(level=0, sort=False):
        g = summary.loc[idx.to_numpy()]
        g = g[g[f"{metric}_mean"].notna()]
        if len(g) < 3:
            continue
        order = g[f"{metric}_mean"].sort_values(ascending=False, kind="stable").index
        out.loc[order, "rank"] = np.arange(1, len(order) + 1)
        best, second = summary.loc[order[0]], summary.loc[order[1]]
        comp = _compare(_find(per_seed, tuple(best[c] for c in key)), _find(per_seed, tuple(second[c] for c in key)),
                        scale, None)
        if comp:
            out.loc[order[0], ["runner_up", "lead_seeds", "lead_wins", "lead_same_every_seed", "lead_points",
                               "lead_ci95_low_points", "lead_ci95_high_points", "lead_p_value"]] = [
                describe(second), comp["paired_seeds"], comp["wins"], comp["same_diff_every_seed"], comp["diff_points"],
                comp["diff_ci95_low_points"], comp["diff_ci95_high_points"], comp["p_value"]]
    return out


def repeated_leads(summary: pd.DataFrame) -> dict[int, int]:
    """The leads that repeat a difference test: {position of a best row: position of the row whose
    comparison with its baseline is the same pair}, where the best configuration of a baseline group
    is its baseline (the runner-up's comparison) or the runner-up is (the best's own comparison):
    the same hypothesis and p-value, which the Holm family counts once (summary: summary.csv's rows)."""
    names, out = [describe(r) for _, r in summary.iterrows()], {}
    for i, (_, r) in enumerate(summary.iterrows()):
        j = names.index(r["runner_up"]) if pd.notna(r["lead_p_value"]) and r["runner_up"] in names else i
        for row, other in ((j, i), (i, j)) if j != i else ():
            if pd.notna(summary["p_value"].iloc[row]) and summary["baseline"].iloc[row] == names[other]:
                out[i] = row
    return out


def family_size(summary: pd.DataFrame) -> int:
    """The difference tests of a summary's Holm family: each comparison with a baseline and each lead
    with a p-value, a lead that repeats one (repeated_leads) once; families, conclusions and sizing count so."""
    return int(summary["p_value"].notna().sum() + summary["lead_p_value"].notna().sum() - len(repeated_leads(summary)))


def families(summary: pd.DataFrame, alpha: float = ALPHA, power: float = POWER) -> pd.DataFrame:
    """Fill p_holm and lead_p_holm (one Holm family: every difference test, a lead that repeats a
    comparison with the baseline counted once and given that comparison's p_holm), tost_p_holm (the
    equivalence family), detectable_diff_points (at alpha / m, m = family_size, and `power`),
    conclusion and lead_holds. Returns a new frame."""
    s, repeats = summary.copy(), repeated_leads(summary)
    lead_p = s["lead_p_value"].to_numpy(np.float64).copy()
    lead_p[list(repeats)] = np.nan
    adjusted = holm(np.concatenate([s["p_value"].to_numpy(np.float64), lead_p]))
    s["p_holm"], s["lead_p_holm"] = adjusted[: len(s)], adjusted[len(s):]
    for best, runner_up in repeats.items():
        s.iloc[best, s.columns.get_loc("lead_p_holm")] = s["p_holm"].iloc[runner_up]
    s["tost_p_holm"] = holm(s["tost_p"].to_numpy(np.float64))
    m = family_size(s)
    s["detectable_diff_points"] = [
        detectable_difference(int(n), sd, alpha / m) if m and not same and n == n and n >= 2 else math.nan
        for n, sd, same in zip(s["paired_seeds"], s["diff_sd_points"], [is_true(v) for v in s["same_diff_every_seed"]])]
    s["conclusion"] = [_conclusion(r, alpha) for _, r in s.iterrows()]
    s["lead_holds"] = [None if pd.isna(r["lead_p_holm"]) else bool(r["lead_p_holm"] < alpha and r["lead_points"] > 0)
                       for _, r in s.iterrows()]
    return s


def is_true(value) -> bool:
    """True for a true bool (Python's or numpy's); False for False, None and NaN."""
    return isinstance(value, (bool, np.bool_)) and bool(value)


def _conclusion(r: pd.Series, alpha: float) -> str:
    n = r["paired_seeds"]
    if pd.isna(n):
        return ""
    if n < 2:
        return "one seed"
    if is_true(r["same_diff_every_seed"]):
        return "same every seed"
    if r["p_holm"] < alpha:
        return "better" if r["diff_points"] > 0 else "worse"
    if r["tost_p_holm"] < alpha:
        return "no different"
    return "inconclusive"
