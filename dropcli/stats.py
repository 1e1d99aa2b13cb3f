"""The statistics of a study: spread over seeds, and paired comparisons with a baseline.

Cells with the same seed share their initial weights, training subset and batch order across keep
probabilities, so a configuration and its baseline pair up seed by seed: the paired difference
removes the seed's own luck. Distributions and tests are scipy.stats'; the multiple-comparison
correction is Holm's step-down over every comparison of a study.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import stats

CONFIDENCE = 0.95


def t_half_width(values: np.ndarray, confidence: float = CONFIDENCE) -> float:
    """Half-width of the Student t interval of the mean; NaN below two values."""
    n = len(values)
    if n < 2:
        return math.nan
    return float(stats.t.ppf(0.5 + confidence / 2, n - 1) * np.std(values, ddof=1) / math.sqrt(n))


def paired(diffs: np.ndarray, confidence: float = CONFIDENCE) -> dict:
    """Mean paired difference, its Student t interval, the two-sided paired t-test p-value, the
    Wilcoxon signed-rank p-value (with at least 6 pairs) and the number of positive differences.
    NaN where a quantity is undefined (fewer than 2 pairs, or no spread at all)."""
    diffs = np.asarray(diffs, dtype=np.float64)
    n = len(diffs)
    out = {"paired_seeds": n, "diff_mean": float(diffs.mean()) if n else math.nan, "diff_ci95_low": math.nan,
           "diff_ci95_high": math.nan, "p_value": math.nan, "wins": int((diffs > 0).sum()), "wilcoxon_p": math.nan}
    if n < 2 or np.std(diffs) == 0:
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        test = stats.ttest_1samp(diffs, 0.0)
        low, high = test.confidence_interval(confidence)
        out.update(diff_ci95_low=float(low), diff_ci95_high=float(high), p_value=float(test.pvalue))
        if n >= 6 and np.any(diffs != 0):
            out["wilcoxon_p"] = float(stats.wilcoxon(diffs).pvalue)
    return out


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjustment; NaN p-values stay NaN and do not count as comparisons."""
    p = np.asarray(pvalues, dtype=np.float64)
    adjusted = np.full_like(p, math.nan)
    idx = np.flatnonzero(~np.isnan(p))
    m = len(idx)
    running = 0.0
    for rank, i in enumerate(idx[np.argsort(p[idx], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted
