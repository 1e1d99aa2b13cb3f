"""The statistics of a study: spread over seeds, paired comparisons with a baseline, equivalence.

Cells with the same seed share their initial weights, training subset and batch order across keep
probabilities, so a configuration and its baseline pair up seed by seed, and the test compares
the per-seed differences. Accuracies are whole numbers of correct test images, so differences
are taken between counts (integers): two seeds with the same difference have exactly the same
difference on every machine, and a comparison where every seed has the same difference is said
to be so, with no interval and no p-value (a t-test on a difference with no spread is undefined).
Distributions and tests are scipy.stats'; the multiple-comparison correction is Holm's step-down.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import stats

CONFIDENCE = 0.95  # the intervals
ALPHA = 0.05  # the family-wise level of the Holm-adjusted tests
POWER = 0.8  # the power at which a study's detectable difference is stated


def t_half_width(values: np.ndarray, confidence: float = CONFIDENCE) -> float:
    """Half-width of the Student t interval of the mean of `values` (1-D, any unit, returned in
    the same unit); NaN below two values."""
    n = len(values)
    if n < 2:
        return math.nan
    return float(stats.t.ppf(0.5 + confidence / 2, n - 1) * np.std(values, ddof=1) / math.sqrt(n))


def paired(diffs, scale: float = 1.0, margin: float | None = None, confidence: float = CONFIDENCE) -> dict:
    """The paired comparison of one configuration with its baseline.

    diffs: (n,) whole numbers, the per-seed difference in correct test images (configuration minus
    baseline). scale: the unit the results are given in per image (100 / test images gives points
    of accuracy). margin: the equivalence margin in that unit (None: no equivalence test).
    Returns a dict: paired_seeds; wins, ties, losses (seeds where the configuration is better,
    equal, worse); same_every_seed (True when there are 2+ pairs and every one has the same
    difference); diff, diff_sd (paired SD), diff_ci_low, diff_ci_high (Student t interval);
    p_value (two-sided paired t-test); tost_p (two one-sided tests against +-margin: small when the
    difference lies within the margin); wilcoxon_p (signed-rank, with at least 6 pairs). NaN where a
    quantity is undefined: one pair, or no spread (then same_every_seed says why). Raises
    ValueError when a difference is not a whole number.
    """
    d = np.asarray(diffs, dtype=np.float64)
    if not np.all(d == np.round(d)):
        raise ValueError("paired differences are counted in test images and must be whole numbers")
    n = len(d)
    out = {"paired_seeds": n, "wins": int((d > 0).sum()), "ties": int((d == 0).sum()), "losses": int((d < 0).sum()),
           "same_every_seed": bool(n >= 2 and np.all(d == d[0])),
           "diff": float(d.mean()) * scale if n else math.nan, "diff_sd": math.nan, "diff_ci_low": math.nan,
           "diff_ci_high": math.nan, "p_value": math.nan, "tost_p": math.nan, "wilcoxon_p": math.nan}
    if n < 2:
        return out
    out["diff_sd"] = float(np.std(d, ddof=1)) * scale
    if out["same_every_seed"]:
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        test = stats.ttest_1samp(d, 0.0)
        low, high = test.confidence_interval(confidence)
        out.update(diff_ci_low=float(low) * scale, diff_ci_high=float(high) * scale, p_value=float(test.pvalue))
        if margin is not None:
            out["tost_p"] = tost(d, margin / scale)
        if n >= 6:
            out["wilcoxon_p"] = float(stats.wilcoxon(d).pvalue)
    return out


def tost(diffs: np.ndarray, margin: float) -> float:
    """Schuirmann's two one-sided paired t-tests: the p-value for "the mean difference lies within
    (-margin, +margin)" (diffs (n,) and margin in one unit; the larger of the two one-sided p-values)."""
    lower = stats.ttest_1samp(diffs, -margin, alternative="greater").pvalue
    upper = stats.ttest_1samp(diffs, margin, alternative="less").pvalue
    return float(max(lower, upper))


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjustment of (m,) p-values; NaN p-values stay NaN and do not count as
    comparisons. Returns (m,) adjusted p-values, capped at 1."""
    p = np.asarray(pvalues, dtype=np.float64)
    adjusted = np.full_like(p, math.nan)
    idx = np.flatnonzero(~np.isnan(p))
    m = len(idx)
    running = 0.0
    for rank, i in enumerate(idx[np.argsort(p[idx], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted


def wilson_interval(correct: int, total: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The Wilson score interval (fractions) of an accuracy of `correct` out of `total` images: the
    uncertainty of one model's accuracy from the sampling of its test set."""
    ci = stats.binomtest(int(correct), int(total)).proportion_ci(confidence, method="wilson")
    return float(ci.low), float(ci.high)
