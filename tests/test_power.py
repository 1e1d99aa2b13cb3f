"""The power of the paired t-test: against simulation, the normal approximation, and each other."""

import math

import numpy as np
import pytest
from scipy import stats

from dropcli.power import MAX_SEEDS, detectable_difference, power_of, seeds_needed


def test_power_matches_a_simulation_of_paired_t_tests():
    rng = np.random.default_rng(1)
    n, diff, sd, alpha = 8, 0.15, 0.19, 0.05 / 7
    d = rng.normal(diff, sd, size=(40_000, n))
    t = d.mean(1) / (d.std(1, ddof=1) / math.sqrt(n))
    simulated = float(np.mean(np.abs(t) > stats.t.ppf(1 - alpha / 2, n - 1)))
    assert power_of(n, diff, sd, alpha) == pytest.approx(simulated, abs=0.01)


def test_detectable_difference_has_the_power_asked_and_nears_the_normal_formula():
    for n, sd, alpha in ((3, 0.3, 0.05), (10, 0.19, 0.05 / 8), (5, 2.0, 0.05 / 16)):
        d = detectable_difference(n, sd, alpha)
        assert power_of(n, d, sd, alpha) == pytest.approx(0.8, abs=1e-9)
        assert power_of(n, 0.99 * d, sd, alpha) < 0.8
    z = stats.norm.ppf(1 - 0.01 / 2) + stats.norm.ppf(0.9)
    assert detectable_difference(5000, 1.0, 0.01, power=0.9) == pytest.approx(z / math.sqrt(5000), rel=2e-3)


def test_seeds_needed_is_the_inverse_of_detectable_difference():
    sd, alpha = 0.19, 0.05 / 8
    for n in (2, 3, 5, 10, 37):
        assert seeds_needed(detectable_difference(n, sd, alpha), sd, alpha) == n
    n = seeds_needed(0.1, sd, alpha)
    assert power_of(n, 0.1, sd, alpha) >= 0.8 > power_of(n - 1, 0.1, sd, alpha)
    assert seeds_needed(-0.1, sd, alpha) == n  # the sign of a difference does not matter


def test_edges():
    assert detectable_difference(10, 0.0, 0.05) == 0.0  # no spread: any difference shows
    assert math.isnan(detectable_difference(1, 0.2, 0.05)) and math.isnan(detectable_difference(5, math.nan, 0.05))
    assert math.isnan(power_of(1, 0.1, 0.2, 0.05))
    for bad in ((0.0, 0.2), (0.1, 0.0), (0.1, math.inf)):
        with pytest.raises(ValueError, match="non-zero difference"):
            seeds_needed(*bad, 0.05)
    with pytest.raises(ValueError, match=f"more than {MAX_SEEDS:,} seeds"):
        seeds_needed(1e-6, 1.0, 0.05)
