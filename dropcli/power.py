"""Power of the paired t-test: the smallest difference a study can detect, and the seeds a
difference needs.

    detectable_difference(10, 0.19, 0.05 / 8)   # 0.27 points: 10 seeds, paired SD 0.19, Holm's first step of 8 tests
    seeds_needed(0.2, 0.19, 0.05 / 8)           # 16: the seeds that detect 0.2 points with 80% power

The power of a two-sided paired t-test with n pairs at level alpha, for a true mean difference
delta and a paired standard deviation sd, is P(|T| > t_crit) where T follows the noncentral t
distribution with n - 1 degrees of freedom and noncentrality delta * sqrt(n) / sd (scipy.stats.nct).
"""

from __future__ import annotations

import math

from scipy import optimize, stats

from dropcli.stats import POWER

MAX_SEEDS = 100_000  # seeds_needed gives up beyond this: the difference is too small to chase


def power_of(n: int, diff: float, sd: float, alpha: float) -> float:
    """Probability (0-1) that a two-sided paired t-test at level `alpha` with `n` pairs finds a true
    mean difference `diff` significant, when the paired differences have standard deviation `sd`
    (diff and sd in one unit). NaN below 2 pairs or for an sd that is not positive and finite."""
    if n < 2 or not (sd > 0 and math.isfinite(sd)):
        return math.nan
    df = n - 1
    crit = stats.t.ppf(1 - alpha / 2, df)
    nc = abs(diff) * math.sqrt(n) / sd
    upper, lower = float(stats.nct.sf(crit, df, nc)), float(stats.nct.cdf(-crit, df, nc))
    # scipy's noncentral t gives NaN far in a tail: there the tail's probability is 0 (or the rest 1)
    upper = upper if math.isfinite(upper) else float(nc > crit)
    lower = lower if math.isfinite(lower) else 0.0
    return upper + lower


def detectable_difference(n: int, sd: float, alpha: float, power: float = POWER) -> float:
    """The smallest true mean difference (in sd's unit, >= 0) that a two-sided paired t-test with
    `n` pairs at level `alpha` detects with probability `power`, when the paired differences have
    standard deviation `sd`. 0 when sd is 0 (every seed the same: any difference shows); NaN below
    2 pairs or for an sd that is not finite. Defaults: power from stats.POWER (0.8)."""
    if n < 2 or not math.isfinite(sd) or sd < 0:
        return math.nan
    if sd == 0:
        return 0.0
    high = sd
    while power_of(n, high, sd, alpha) < power:
        high *= 2
    tol = 1e-12 * sd
    root = optimize.brentq(lambda d: power_of(n, d, sd, alpha) - power, 0.0, high, xtol=tol)
    return float(root + 2 * tol)  # the root lies within tol: above it, the power is at least `power`


def seeds_needed(diff: float, sd: float, alpha: float, power: float = POWER) -> int:
    """The fewest seeds (pairs, >= 2) with which a two-sided paired t-test at level `alpha` detects
    a true mean difference `diff` with probability `power`, when the paired differences have
    standard deviation `sd` (diff and sd in one unit): the inverse of detectable_difference.
    Raises ValueError when diff is 0, sd is not positive and finite, or more than MAX_SEEDS would
    be needed."""
    if diff == 0 or not (sd > 0 and math.isfinite(sd)) or not math.isfinite(diff):
        raise ValueError("seeds_needed takes a non-zero difference and a positive, finite paired SD")
    if power_of(MAX_SEEDS, diff, sd, alpha) < power:
        raise ValueError(f"a difference of {abs(diff):g} with a paired SD of {sd:g} needs more than {MAX_SEEDS:,} seeds")
    low, high = 1, 2  # power_of(low) < power <= power_of(high), power rising with n
    while power_of(high, diff, sd, alpha) < power:
        low, high = high, min(2 * high, MAX_SEEDS)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if power_of(mid, diff, sd, alpha) < power else (low, mid)
    return high
