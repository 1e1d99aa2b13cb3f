"""Paired comparisons, equivalence and Holm's correction against scipy and hand-worked answers."""

import math

import numpy as np
import pytest
from scipy import stats

from dropcli.stats import holm, paired, t_half_width, tost, wilson_interval

POINTS = 100 / 10_000  # points of accuracy per test image of 10,000


def test_paired_counts_match_scipy_paired_t_test_and_interval_in_points():
    rng = np.random.default_rng(0)
    a, b = rng.integers(9780, 9830, 10), rng.integers(9760, 9800, 10)  # correct images of 10,000
    got = paired(a - b, POINTS, margin=0.2)
    ref = stats.ttest_rel(a, b)
    low, high = ref.confidence_interval(0.95)
    assert got["p_value"] == pytest.approx(ref.pvalue, rel=1e-12)
    assert got["diff_ci_low"] == pytest.approx(low * POINTS, rel=1e-12)
    assert got["diff_ci_high"] == pytest.approx(high * POINTS, rel=1e-12)
    assert got["diff"] == pytest.approx((a - b).mean() * POINTS) and got["diff_sd"] == pytest.approx(np.std(a - b, ddof=1) * POINTS)
    assert (got["wins"], got["ties"], got["losses"]) == (int((a > b).sum()), int((a == b).sum()), int((a < b).sum()))
    assert got["wilcoxon_p"] == pytest.approx(stats.wilcoxon(a - b).pvalue)
    assert got["paired_seeds"] == 10 and got["same_every_seed"] is False


def test_the_same_difference_on_every_seed_is_said_so_with_no_interval_and_no_p():
    """Keep 0.7 losing exactly 3 test images on both seeds: from counts, the differences are
    equal on every machine, so there is no spread to test (not p = 0, not 'significant')."""
    acc_a, acc_b = np.array([0.9795, 0.9812]), np.array([0.9798, 0.9815])
    from_accuracies = acc_a - acc_b  # what float subtraction of accuracies gives: unequal in the last bits
    assert from_accuracies[0] != from_accuracies[1]
    counts = np.round(acc_a * 10_000).astype(int) - np.round(acc_b * 10_000).astype(int)
    got = paired(counts, POINTS, margin=0.2)
    assert got["same_every_seed"] is True and got["diff"] == pytest.approx(-0.03) and got["diff_sd"] == 0
    assert all(math.isnan(got[k]) for k in ("p_value", "diff_ci_low", "diff_ci_high", "tost_p", "wilcoxon_p"))
    assert (got["wins"], got["losses"]) == (0, 2)


def test_one_pair_has_no_test_and_differences_must_be_whole_images():
    one = paired(np.array([4]), POINTS)
    assert one["paired_seeds"] == 1 and one["same_every_seed"] is False and math.isnan(one["p_value"])
    assert one["diff"] == pytest.approx(0.04)
    with pytest.raises(ValueError, match="whole numbers"):
        paired(np.array([0.5, 1.0]))
    assert math.isnan(t_half_width(np.array([0.9])))


def test_tost_is_the_larger_of_two_one_sided_t_tests():
    d = np.array([-3.0, 1, 2, -1, 0, 4, -2, 1])  # images
    margin = 5.0
    se = d.std(ddof=1) / math.sqrt(len(d))
    lower = stats.t.sf((d.mean() + margin) / se, len(d) - 1)  # H0: mean <= -margin
    upper = stats.t.cdf((d.mean() - margin) / se, len(d) - 1)  # H0: mean >= +margin
    assert tost(d, margin) == pytest.approx(max(lower, upper), rel=1e-10)
    assert tost(d, margin) < 0.01 < tost(d, 1.0)  # within 5 images, not shown within 1
    assert paired(d, POINTS, margin=0.05)["tost_p"] == pytest.approx(tost(d, 5.0), rel=1e-12)  # margin in points


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


def test_wilson_interval_by_its_formula():
    k, n, z = 9827, 10_000, stats.norm.ppf(0.975)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert wilson_interval(k, n) == (pytest.approx(centre - half, rel=1e-9), pytest.approx(centre + half, rel=1e-9))
