"""Sizing a study (report --power): the seeds each comparison needs, from a pilot's paired SDs, after Holm."""

import math

import pytest
from conftest import check_error
from synthetic_study import write_study
from typer.testing import CliRunner

from dropcli.cli import app
from dropcli.compare import family_size
from dropcli.power import power_of
from dropcli.report import build_report
from dropcli.sizing import seeds_for

runner = CliRunner()


def correct(keep, ik, mn, n, seed):
    """Keep 0.5 varies a lot from seed to seed, keep 0.7 little; keep 0.9 loses 4 images on every seed."""
    return 9800 + {0.5: 30 * (seed % 4) - 45, 0.7: 20 + 6 * (seed % 3), 0.9: -4, 1.0: 0}[keep] + 3 * (seed % 5)


@pytest.fixture
def pilot(tmp_path):
    return write_study(tmp_path / "pilot", keeps=(0.5, 0.7, 0.9, 1.0), seeds=range(777, 785), correct=correct)


def test_each_comparison_gets_the_fewest_seeds_with_the_power_asked(pilot):
    summary = build_report(pilot)
    frame, m = seeds_for(summary, 0.2)
    assert m == family_size(summary) == 3  # keep 0.5 and 0.7 against keep 1, best against runner-up; 0.9 untested
    assert list(frame["comparison"]) == ["keep 0.5 vs no dropout", "keep 0.7 vs no dropout", "keep 0.9 vs no dropout"]
    for _, r in frame.iloc[:2].iterrows():
        n, sd = int(r["seeds_needed"]), r["diff_sd_points"]
        assert power_of(n, 0.2, sd, 0.05 / 3) >= 0.8 > power_of(n - 1, 0.2, sd, 0.05 / 3)
    assert frame["seeds_needed"].iloc[0] > frame["seeds_needed"].iloc[1]  # the larger SD asks for more seeds
    assert math.isnan(frame["seeds_needed"].iloc[2]) and "every seed the same difference" in frame["note"].iloc[2]
    fewer_tests, _ = seeds_for(summary, 0.2, tests=1)
    more_tests, _ = seeds_for(summary, 0.2, tests=20)
    assert (fewer_tests["seeds_needed"].iloc[:2] < frame["seeds_needed"].iloc[:2]).all()
    assert (more_tests["seeds_needed"].iloc[:2] > frame["seeds_needed"].iloc[:2]).all()
    for bad in ({"diff_points": 0.0}, {"diff_points": 0.2, "tests": 0}):
        with pytest.raises(ValueError):
            seeds_for(summary, **bad)


def test_report_power_prints_the_seeds_and_refuses_what_it_cannot_use(pilot):
    result = runner.invoke(app, ["report", str(pilot), "--power", "0.2", "--tests", "4"])
    assert result.exit_code == 0, result.output
    frame, _ = seeds_for(build_report(pilot), 0.2, tests=4)
    most = int(frame["seeds_needed"].max())
    assert "Seeds to detect 0.2 points (80% power, Holm over 4 tests)" in result.stdout
    assert f"{most} seeds cover all of them" in result.stdout and "keep 0.5 vs no dropout" in result.stdout
    check_error(runner.invoke(app, ["report", str(pilot), "--tests", "4"]), 2, "--tests sizes a study with --power")
    check_error(runner.invoke(app, ["report", str(pilot), "--power", "0"]), 2, "--power takes a difference in points")
    check_error(runner.invoke(app, ["report", str(pilot), "--power", "-1"]), 2, "--power")
