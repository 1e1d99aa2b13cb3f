"""Paired comparisons and Holm's correction against scipy and hand-worked answers."""

import math

import numpy as np
import pytest
from scipy import stats

from dropcli.stats import holm, paired, t_half_width


def test_paired_matches_scipy_paired_t_test_and_interval():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.98, 0.002, 10), rng.normal(0.977, 0.002, 10)
    got = paired(a - b)
    ref = stats.ttest_rel(a, b)
    low, high = ref.confidence_interval(0.95)
    assert got["p_value"] == pytest.approx(ref.pvalue, rel=1e-12)
    assert (got["diff_ci95_low"], got["diff_ci95_high"]) == (pytest.approx(low, rel=1e-12), pytest.approx(high, rel=1e-12))
    assert got["diff_mean"] == pytest.approx((a - b).mean()) and got["wins"] == int(((a - b) > 0).sum())
    assert got["wilcoxon_p"] == pytest.approx(stats.wilcoxon(a - b).pvalue)
    assert got["paired_seeds"] == 10


def test_the_readme_claim_the_issue_checked():
    """Keep 0.7 against no dropout, three seeds: +0.48 points, 95% CI -0.36 to +1.32, p = 0.13."""
    got = paired(np.array([0.0022, 0.0036, 0.0086]))
    assert round(100 * got["diff_mean"], 2) == 0.48
    assert round(100 * got["diff_ci95_low"], 2) == -0.36 and round(100 * got["diff_ci95_high"], 2) == 1.32
    assert round(got["p_value"], 2) == 0.13 and math.isnan(got["wilcoxon_p"])  # fewer than 6 pairs


def test_undefined_comparisons_are_empty():
    one = paired(np.array([0.01]))
    assert one["paired_seeds"] == 1 and math.isnan(one["p_value"]) and math.isnan(one["diff_ci95_low"])
    flat = paired(np.array([0.01, 0.01, 0.01]))
    assert flat["diff_mean"] == pytest.approx(0.01) and math.isnan(flat["p_value"])
    assert math.isnan(t_half_width(np.array([0.9])))


def test_holm_step_down_by_hand():
    # sorted p: 0.01, 0.02, 0.03, 0.5 -> 4*0.01, max(0.04, 3*0.02), max(0.06, 2*0.03), max(0.06, 1*0.5)
    got = holm([0.03, math.nan, 0.01, 0.5, 0.02])
    assert got[[2, 4, 0, 3]] == pytest.approx([0.04, 0.06, 0.06, 0.5])
    assert math.isnan(got[1])
    assert holm([0.9, 0.8])[0] == 1.0  # capped at 1


def test_t_half_width_is_scipys_interval():
    x = np.array([0.97, 0.975, 0.98, 0.972])
    low, high = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    assert t_half_width(x) == pytest.approx((high - low) / 2)
