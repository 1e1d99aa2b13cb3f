"""Sizing a study before running it: the seeds each comparison needs, from a pilot's paired SDs.

    $ dropcli report results/ablation --power 0.2              # this study's Holm family
    $ dropcli report results/ablation --power 0.2 --tests 4    # for a planned study of 4 tests

Each comparison of a summary (a configuration against its baseline, paired by seed) has an
observed paired standard deviation (`diff_sd_points`). A planned study that repeats it detects a
true difference of D points with 80% power (stats.POWER) at Holm's strictest level, alpha / m
(m: its difference tests), with power.seeds_needed(D, SD, alpha / m) seeds: the same power
computation as the summary's `detectable_diff_points`, inverted. Holm's later steps test at
larger levels, so these counts are enough for every test of the family.
"""

from __future__ import annotations

import math

import pandas as pd

from dropcli.compare import family_size
from dropcli.conclusions import Namer, is_true
from dropcli.power import seeds_needed
from dropcli.stats import ALPHA, POWER

SIZING_COLUMNS = ["comparison", "paired_seeds", "diff_points", "diff_sd_points", "seeds_needed", "note"]


def seeds_for(summary: pd.DataFrame, diff_points: float, tests: int | None = None, alpha: float = ALPHA,
              power: float = POWER) -> tuple[pd.DataFrame, int]:
    """The seeds each comparison of `summary` (as report.read_summary returns it) needs to detect a
    true paired difference of `diff_points` (points of accuracy, > 0) with probability `power` in a
    Holm family of `tests` difference tests (None: this summary's, family_size), from its observed
    paired SD. Returns (frame of SIZING_COLUMNS, one row per comparison with an SD, the family size
    used): seeds_needed is NaN where no count applies, and `note` says why (every seed the same
    difference; more than power.MAX_SEEDS). Raises ValueError for diff_points <= 0 or tests < 1."""
    if not (diff_points > 0 and math.isfinite(diff_points)):
        raise ValueError(f"--power takes a difference in points above 0, e.g. 0.2 (got {diff_points})")
    m = family_size(summary) if tests is None else tests
    if m < 1:
        raise ValueError(f"--tests takes the number of difference tests of the planned study, at least 1 (got {m})")
    names, rows = Namer(summary), []
    for _, r in summary[summary["diff_sd_points"].notna()].iterrows():
        base = names.row(r["baseline"])
        a, b, ctx = names.pair(r, base) if base is not None else (r["keep_probs"], r["baseline"], "")
        row = {"comparison": f"{a} vs {b}{ctx}", "paired_seeds": int(r["paired_seeds"]), "diff_points": r["diff_points"],
               "diff_sd_points": r["diff_sd_points"], "seeds_needed": math.nan, "note": ""}
        if is_true(r["same_diff_every_seed"]) or r["diff_sd_points"] == 0:
            row["note"] = "every seed the same difference: no SD to plan with"
        else:
            try:
                row["seeds_needed"] = seeds_needed(diff_points, r["diff_sd_points"], alpha / m, power)
            except ValueError as e:
                row["note"] = str(e)
        rows.append(row)
    return pd.DataFrame(rows, columns=SIZING_COLUMNS), m


def sizing_sentence(frame: pd.DataFrame, diff_points: float, m: int, alpha: float = ALPHA,
                    power: float = POWER) -> str:
    """One sentence: the seeds that detect `diff_points` in every comparison of `frame` (seeds_for),
    and the comparison whose SD asks for the most."""
    need = frame["seeds_needed"].dropna()
    level = f"{power:.0%} power after Holm over {m} test{'s' if m != 1 else ''} (alpha {alpha:g}/{m})"
    if need.empty:
        return f"No comparison has a paired SD to size a study for {diff_points:g} points at {level}."
    worst = frame.loc[need.idxmax()]
    spread = f"{int(need.min())} to {int(need.max())}" if need.min() != need.max() else f"{int(need.max())}"
    return (f"To detect a paired difference of {diff_points:g} points at {level}, the comparisons need {spread} seeds; "
            f"{int(need.max())} seeds cover all of them (the largest paired SD, {worst['diff_sd_points']:.3f} points, "
            f"is {worst['comparison']}).")
