"""summary.csv against an independent recomputation from runs.csv with scipy, on a fresh grid, on
synthetic studies at the edges and on every committed study; baselines, metrics, the table's marks,
the conclusions and the report command."""

import math

import numpy as np
import pandas as pd
import pytest
from committed import committed_studies
from conftest import check_error
from scipy import stats
from synthetic_study import write_study
from typer.testing import CliRunner

from dropcli.ablate import run_study
from dropcli.cli import app
from dropcli.compare import describe, family_size, parse_baseline
from dropcli.conclusions import p_text, sentences
from dropcli.config import TrainConfig
from dropcli.device import resolve_device
from dropcli.grid import GridSpec
from dropcli.plan import make_plan
from dropcli.report import build_report, read_summary, summarise
from dropcli.tables import read_runs

COMMITTED = committed_studies()
KEY = ["keep_probs", "input_keep_prob", "max_norm", "train_size"]
runner = CliRunner()


def reference_holm(p):
    """Holm (1979) as written: reject in order while p_(i) <= alpha / (m - i + 1); adjusted values
    are the running maximum of (m - i + 1) p_(i), capped at 1."""
    order = sorted((v, i) for i, v in enumerate(p) if not math.isnan(v))
    m, out, running = len(order), [math.nan] * len(p), 0.0
    for rank, (v, i) in enumerate(order):
        running = max(running, (m - rank) * v)
        out[i] = min(1.0, running)
    return out


def reference_power(n, diff, sd, alpha):
    df, crit = n - 1, stats.t.ppf(1 - alpha / 2, n - 1)
    nc = diff * math.sqrt(n) / sd
    return stats.nct.sf(crit, df, nc) + np.nan_to_num(stats.nct.cdf(-crit, df, nc))


def pair(ok: pd.DataFrame, mine: tuple, theirs: tuple, metric: str, columns=KEY):
    """Per-seed correct test images of two configurations (their values of `columns`), merged on seed."""
    def rows(key):
        sel = np.ones(len(ok), bool)
        for c, v in zip(columns, key):
            sel &= (ok[c].isna() & pd.isna(v)).to_numpy() | (ok[c] == v).to_numpy()
        g = ok[sel & ok[metric].notna().to_numpy()]
        return pd.DataFrame({"seed": g["seed"], "n": np.round(g[metric] * g["test_images"]).astype(int)})
    m = rows(mine).merge(rows(theirs), on="seed", suffixes=("", "_b"))
    return m["n"].to_numpy(), m["n_b"].to_numpy()


def recompute(runs: pd.DataFrame, summary: pd.DataFrame, metric="test_accuracy", margin=0.2) -> pd.DataFrame:
    """Every comparison of `summary` (each row against the configuration its `baseline` names, and
    each best row against its runner-up) from the runs alone, with scipy."""
    ok = runs[runs["status"] == "ok"]
    key = KEY + [c for c in ("lr", "hidden") if c in summary and summary[c].notna().any()]  # axes a study varies
    configs = {describe(dict(zip(key, k))): k for k in summary[key].itertuples(index=False)}
    rows = []
    for _, r in summary.iterrows():
        own, base = tuple(r[c] for c in key), configs.get(r["baseline"])
        row = {"p": math.nan, "low": math.nan, "high": math.nan, "diff": math.nan, "n": math.nan, "wins": math.nan,
               "tost": math.nan, "sd": math.nan, "lead_p": math.nan, "lead": math.nan}
        if base is not None and describe(dict(zip(key, own))) != r["baseline"]:
            a, b = pair(ok, own, base, metric, key)
            d = a - b
            row.update(diff=d.mean() / 100, n=len(d), wins=int((d > 0).sum()), sd=np.std(d, ddof=1) / 100)
            if len(d) >= 2 and np.ptp(d) > 0:
                t = stats.ttest_rel(a, b)
                ci = t.confidence_interval(0.95)
                se = np.std(d, ddof=1) / math.sqrt(len(d))
                row.update(p=t.pvalue, low=ci.low / 100, high=ci.high / 100,
                           tost=max(stats.t.sf((d.mean() + 100 * margin) / se, len(d) - 1),
                                    stats.t.cdf((d.mean() - 100 * margin) / se, len(d) - 1)))
        if r["rank"] == 1 and r["runner_up"]:
            a, b = pair(ok, own, configs[r["runner_up"]], metric, key)
            row.update(lead=(a - b).mean() / 100, lead_p=stats.ttest_rel(a, b).pvalue if np.ptp(a - b) > 0 else math.nan)
        rows.append(row)
    ref = pd.DataFrame(rows, index=summary.index)
    # a best row that is its group's baseline: its lead over the runner-up is the runner-up's own test
    names = [describe(dict(zip(key, k))) for k in summary[key].itertuples(index=False)]
    runner = {i: names.index(r["runner_up"]) for i, (_, r) in enumerate(summary.iterrows())
              if r["rank"] == 1 and names[i] == r["baseline"] and not pd.isna(ref["lead_p"].iloc[i])}
    # ... and a best row whose runner-up is its baseline: the lead is the best row's own test
    runner.update({i: i for i, (_, r) in enumerate(summary.iterrows())
                   if r["rank"] == 1 and r["runner_up"] == r["baseline"] and not pd.isna(ref["lead_p"].iloc[i])})
    lead_p = [math.nan if i in runner else p for i, p in enumerate(ref["lead_p"])]
    holm = reference_holm(list(ref["p"]) + lead_p)
    ref["holm"], ref["lead_holm"] = holm[: len(ref)], holm[len(ref):]
    for i, j in runner.items():
        ref.iloc[i, ref.columns.get_loc("lead_holm")] = ref["holm"].iloc[j]
    ref["tost_holm"] = reference_holm(list(ref["tost"]))
    ref["m"] = int(ref["p"].notna().sum() + pd.Series(lead_p).notna().sum())
    return ref


def assert_summary_matches(summary: pd.DataFrame, runs: pd.DataFrame, metric="test_accuracy", margin=0.2, rtol=1e-9):
    ref = recompute(runs, summary, metric, margin)
    for mine, theirs in (("p_value", "p"), ("diff_ci95_low_points", "low"), ("diff_ci95_high_points", "high"),
                         ("diff_points", "diff"), ("paired_seeds", "n"), ("wins", "wins"), ("p_holm", "holm"),
                         ("tost_p", "tost"), ("tost_p_holm", "tost_holm"), ("lead_points", "lead"),
                         ("lead_p_holm", "lead_holm"), ("diff_sd_points", "sd")):
        a, b = summary[mine].to_numpy(dtype=float), ref[theirs].to_numpy(dtype=float)
        assert np.array_equal(np.isnan(a), np.isnan(b)), mine
        assert np.allclose(a[~np.isnan(a)], b[~np.isnan(b)], rtol=rtol, atol=1e-10), mine
    for (_, r), m in zip(summary.iterrows(), ref["m"]):  # the detectable difference has 80% power at alpha / m
        if not math.isnan(r["detectable_diff_points"]):
            assert reference_power(int(r["paired_seeds"]), r["detectable_diff_points"], r["diff_sd_points"],
                                   0.05 / m) == pytest.approx(0.8, abs=1e-6)


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    base = TrainConfig(hidden=(32, 32), epochs=2, validation_size=500, batch_size=50)
    grid = GridSpec(keep_probs=((0.5,), (0.8,), (1.0,)), input_keep_probs=(0.8, 1.0), train_sizes=(600,),
                    seeds=(1, 2, 3))
    run_study(make_plan(grid, base, out), resolve_device("cpu"), parallel_models=6)
    return out


def test_summary_of_a_fresh_grid_equals_scipy_from_runs_csv(fresh):
    summary = build_report(fresh)
    runs = read_runs(fresh / "runs.csv")
    assert set(runs["test_images"]) == {10_000}  # the bundled MNIST's test split, recorded per run
    on_disk = read_summary(fresh / "summary.csv")
    assert_summary_matches(on_disk, runs, rtol=1e-5)  # p-values are written to 6 significant digits
    baseline = summary[(summary.keep_probs == "1") & (summary.input_keep_prob == 1.0)]
    assert baseline["p_value"].isna().all() and baseline["paired_seeds"].isna().all()  # no comparison with itself
    assert set(summary["baseline"]) == {"keep 1, input keep 1, max-norm none, 600 images"}
    assert set(summary["role"]) == {"primary"} and (fresh / "report.html").exists()


def test_another_baseline_and_the_best_epoch_metric_is_exploratory(fresh):
    runs = read_runs(fresh / "runs.csv")
    summary = summarise(runs, "test_accuracy_at_best", parse_baseline("keep=0.8"))
    assert_summary_matches(summary, runs, metric="test_accuracy_at_best")
    assert set(summary["metric"]) == {"test_accuracy_at_best"} and set(summary["role"]) == {"exploratory"}
    assert summary[summary.keep_probs == "0.8"]["p_value"].isna().all()
    assert len(summary["baseline"].unique()) == 2  # keep 0.8 at input keep 0.8, and at 1
    assert "exploratory" in sentences(summary)[0]


def test_report_command_prints_the_table_and_the_conclusions_and_refuses_bad_options(fresh):
    result = runner.invoke(app, ["report", str(fresh), "--baseline", "keep=1,input_keep=1", "--equivalence-margin", "0.5"])
    assert result.exit_code == 0, result.output
    assert "diff vs baseline" in result.stdout and "Holm-adjusted p <" in result.stdout
    assert "margin ±0.5 points" in result.stdout and "report.html" in result.stderr
    assert set(read_summary(fresh / "summary.csv")["equivalence_margin_points"].dropna()) == {0.5}
    assert "dropcli report" in (fresh / "report.html").read_text() and "--equivalence-margin 0.5" in (fresh / "report.html").read_text()
    check_error(runner.invoke(app, ["report", str(fresh), "--baseline", "dropout=none"]), 2, "--baseline takes axis=value pairs")
    check_error(runner.invoke(app, ["report", str(fresh), "--equivalence-margin", "0"]), 2, "--equivalence-margin takes points above 0")


def test_the_table_marks_differences_that_survive_holm(tmp_path):
    from rich.console import Console

    from dropcli.report import summary_table

    def correct(keep, ik, mn, n, seed):
        return 9000 + 50 * (keep == 0.5) + (seed - 777) * 10 * (keep == 0.5) + (20 if (keep == 0.7 and seed % 2) else -20 if keep == 0.7 else 0)

    study = write_study(tmp_path / "s", keeps=(0.5, 0.7, 1.0), seeds=range(777, 783), correct=correct)
    summary = summarise(read_runs(study / "runs.csv"))
    console = Console(width=200, record=True)
    console.print(summary_table(summary))
    lines = console.export_text().splitlines()
    half = next(line for line in lines if line.strip().startswith("│  0.5"))
    seven = next(line for line in lines if line.strip().startswith("│  0.7"))
    assert "✓" in half and "6/6" in half and "better" in half
    assert "✓" not in seven and "3/6" in seven and "inconclusive" in seven


def test_every_seed_losing_the_same_images_is_said_so_not_tested(tmp_path):
    """Two seeds, keep 0.7 losing exactly 3 test images on each: no p-value, no interval, no Holm
    entry, and a sentence that says so (the issue's p = 0 and empty-cell studies)."""
    study = write_study(tmp_path / "s", keeps=(0.7, 1.0), seeds=(777, 778),
                        correct=lambda k, ik, mn, n, s: (9795 if s == 777 else 9812) - 3 * (k == 0.7))
    summary = build_report(study)
    row = summary[summary.keep_probs == "0.7"].iloc[0]
    assert row["same_diff_every_seed"] is True and row["conclusion"] == "same every seed"
    assert row["diff_points"] == -0.03 and all(math.isnan(row[c]) for c in ("p_value", "p_holm", "diff_ci95_low_points", "tost_p"))
    text = (study / "summary.csv").read_text()
    assert ",true," in text and ",-0.03," in text
    said = sentences(summary)
    assert "no comparison here allows a test, so Holm's correction has nothing to run over" in said[0]
    assert said[1] == ("keep 0.7 has 3 fewer correct test images than no dropout on every one of the 2 seeds "
                       "(−0.03 points): every seed gives the same difference, so there is no interval and no p-value.")


def test_no_different_only_where_equivalence_holds_else_inconclusive_with_what_could_be_detected(tmp_path):
    def correct(keep, ik, mn, n, seed):
        base = 9770 + 13 * ((seed * 7919) % 11)  # seed luck shared by the seed's cells
        wobble = ((seed * 31 + int(keep * 10)) % 5) - 2  # -2..+2 images
        return base + (wobble if keep == 0.9 else 6 * wobble + 40 if keep == 0.5 else 0)

    study = write_study(tmp_path / "s", keeps=(0.5, 0.9, 1.0), seeds=range(777, 789), correct=correct)
    summary = build_report(study)
    assert_summary_matches(summary, read_runs(study / "runs.csv"), rtol=1e-5)
    nine, half = (summary[summary.keep_probs == k].iloc[0] for k in ("0.9", "0.5"))
    assert nine["conclusion"] == "no different" and nine["tost_p_holm"] < 0.05 <= nine["p_holm"]
    said = sentences(summary)
    assert any(s.startswith("keep 0.9 is no different from no dropout: ") and "within the equivalence margin of ±0.2 points" in s
               for s in said)
    assert half["conclusion"] in ("better", "inconclusive")
    worse = write_study(tmp_path / "t", keeps=(0.5, 1.0), seeds=(777, 778, 779),
                        correct=lambda k, ik, mn, n, s: 9780 + (k == 0.5) * (5, -30, 12)[s - 777])
    row = build_report(worse).iloc[0]
    assert row["conclusion"] == "inconclusive" and row["detectable_diff_points"] > 0.2
    line = sentences(read_summary(worse / "summary.csv"))[1]
    assert f"this study could detect {row['detectable_diff_points']:.2f} points (80% power at 0.05/1)" in line
    assert "no different" not in line
    few = write_study(tmp_path / "u", keeps=(0.5, 1.0), seeds=(777, 778),  # 2 seeds that disagree by 20 points
                      correct=lambda k, ik, mn, n, s: 9000 + (k == 0.5) * (1000, -1000)[s - 777])
    row = build_report(few).iloc[0]
    assert row["conclusion"] == "inconclusive" and row["detectable_diff_points"] > 100
    line = sentences(read_summary(few / "summary.csv"))[1]
    assert "with 2 seeds this study could not detect even a 100-point difference (80% power at 0.05/1)." in line


def test_sentences_quote_summary_csv_and_rank_best_against_runner_up(tmp_path):
    study = write_study(tmp_path / "s", keeps=(0.3, 0.5, 0.7, 0.9, 1.0), seeds=range(777, 787))
    summary = build_report(study)
    said = sentences(summary)
    for _, r in summary[summary["p_value"].notna()].iterrows():
        line = next(s for s in said if s.startswith(f"keep {r['keep_probs']} "))
        assert f"{r['diff_points']:+.2f}".replace("-", "−") in line and f"Holm p = {p_text(r['p_holm'])}" in line
        assert f"[{r['diff_ci95_low_points']:+.2f}, ".replace("-", "−") in line and f" of {int(r['paired_seeds'])} seeds" in line
    best = summary[summary["rank"] == 1].iloc[0]
    assert best["keep_probs"] == "0.7" and best["runner_up"].startswith("keep ")
    ranking = said[-1]
    assert ranking.startswith("keep 0.7 has the highest mean") and f"Holm p = {p_text(best['lead_p_holm'])}" in ranking
    assert ("the ranking holds" in ranking) == bool(best["lead_holds"])


def test_p_values_are_written_with_significant_digits_never_as_zero(tmp_path):
    study = write_study(tmp_path / "s", keeps=(0.3, 1.0), seeds=range(777, 807),
                        correct=lambda k, ik, mn, n, s: 9700 + (s % 7) - 400 * (k == 0.3) + (s % 3) * (k == 0.3))
    build_report(study)
    on_disk = pd.read_csv(study / "summary.csv", dtype=str)
    p = on_disk["p_value"].dropna().iloc[0]
    assert float(p) > 0 and "e" not in p.lower() and len(p.lstrip("0.")) <= 6  # 6 significant digits
    assert float(p) == pytest.approx(read_summary(study / "summary.csv")["p_value"].dropna().iloc[0])


def test_runs_that_are_not_whole_images_or_mix_test_sets_are_refused(tmp_path):
    study = write_study(tmp_path / "s")
    text = (study / "runs.csv").read_text().splitlines()
    header = text[0].split(",")
    cells = text[1].split(",")
    cells[header.index("test_accuracy")] = "0.97755"
    (study / "runs.csv").write_text("\n".join([text[0], ",".join(cells), *text[2:]]) + "\n")
    check_error(runner.invoke(app, ["report", str(study)]), 1, "test_accuracy 0.97755 is not a whole number of 10000 test images")
    cells[header.index("test_accuracy")], cells[header.index("test_images")] = "0.9775", "5000"
    (study / "runs.csv").write_text("\n".join([text[0], ",".join(cells), *text[2:]]) + "\n")
    check_error(runner.invoke(app, ["report", str(study)]), 1, "mixes test sets of 5,000 and 10,000 images")


@pytest.mark.parametrize("study", COMMITTED, ids=[p.name for p in COMMITTED])
def test_every_committed_summary_equals_scipy_from_its_runs(study):
    runs = read_runs(study / "runs.csv")
    on_disk = read_summary(study / "summary.csv")
    margin = on_disk["equivalence_margin_points"].dropna().iloc[0]
    assert_summary_matches(on_disk, runs, metric=on_disk["metric"].iloc[0], margin=margin, rtol=1e-5)


def test_a_lead_of_the_baseline_repeats_the_runner_ups_test_and_holm_counts_it_once(tmp_path):
    """No dropout best of three: its lead over the runner-up is the runner-up's own comparison with
    it (same pair, same p), so the family holds 2 tests, not 3, and the lead reports that test's
    Holm p. With another baseline the lead is a test of its own again."""
    def correct(keep, input_keep, max_norm, train_size, seed):  # keep 1 best, 0.7 close, 0.5 far
        return {1.0: 9800, 0.7: 9790, 0.5: 9700}[keep] + (seed % 3) * {1.0: 1, 0.7: 4, 0.5: 9}[keep]

    study = write_study(tmp_path / "s", seeds=tuple(range(1, 9)), correct=correct)
    build_report(study)
    summary = read_summary(study / "summary.csv")
    assert_summary_matches(summary, read_runs(study / "runs.csv"), rtol=1e-5)
    best, runner_up = (summary[summary.keep_probs == k].iloc[0] for k in ("1", "0.7"))
    assert best["rank"] == 1 and best["runner_up"].startswith("keep 0.7") and best["lead_points"] > 0
    assert best["lead_p_value"] == pytest.approx(runner_up["p_value"])  # the same test, from the other side
    assert best["lead_p_holm"] == runner_up["p_holm"] and family_size(summary) == 2
    assert "runs over the 2 difference tests" in sentences(summary)[0]
    other = summarise(read_runs(study / "runs.csv"), baseline=parse_baseline("keep=0.5"))
    assert family_size(other) == 3 and other["lead_p_value"].notna().sum() == 1  # 0.7 and 1 against 0.5; the lead
    mirror = summarise(read_runs(study / "runs.csv"), baseline=parse_baseline("keep=0.7"))  # runner-up = baseline
    top = mirror[mirror.keep_probs == "1"].iloc[0]
    assert top["rank"] == 1 and top["runner_up"].startswith("keep 0.7") and family_size(mirror) == 2
    assert top["lead_p_holm"] == top["p_holm"]  # the best's own comparison with keep 0.7, counted once
    assert_summary_matches(mirror, read_runs(study / "runs.csv"))


def test_a_one_seed_pilot_of_three_configurations_says_its_lead_allows_no_test(tmp_path):
    """One seed and three configurations: the ranking has no interval and no p (it raised on
    formatting a NaN Holm p), and every figure and page is written."""
    study = write_study(tmp_path / "pilot", keeps=(0.5, 0.8, 1.0), seeds=(777,))
    summary = build_report(study)
    said = sentences(summary)
    assert any("on a single seed, which allows no interval and no test" in s for s in said), said
    assert all(s.endswith(".") for s in said) and (study / "report.html").exists() and p_text(math.nan) == "n/a"


def test_every_seed_scoring_the_same_images_reads_as_many_and_counts_read_in_the_singular(tmp_path):
    """Keep 0.7 scores exactly what no dropout scores on every seed: 'as many correct test images
    as', and one equivalence test is '1 equivalence test'."""
    from dropcli.conclusions import tests

    study = write_study(tmp_path / "s", keeps=(0.7, 1.0), seeds=(777, 778),
                        correct=lambda k, ik, mn, n, s: 9795 if s == 777 else 9812)
    said = sentences(build_report(study))
    assert said[1] == ("keep 0.7 has as many correct test images as no dropout on every one of the 2 seeds "
                       "(+0.00 points): every seed gives the same difference, so there is no interval and no p-value.")
    assert [tests(n, "equivalence") for n in (0, 1, 2)] == ["0 equivalence tests", "1 equivalence test",
                                                             "2 equivalence tests"]


def test_a_tie_for_the_highest_mean_stars_no_configuration():
    from dropcli.report import best_index

    tied = pd.DataFrame({"test_accuracy_mean": [0.1009, 0.1009, 0.05]})
    assert best_index(tied) is None
    assert best_index(tied.assign(test_accuracy_mean=[0.1009, 0.1010, 0.05])) == 1
    assert best_index(tied.assign(test_accuracy_mean=[float("nan")] * 3)) is None


@pytest.mark.parametrize("keeps, diverged, said", [
    ((0.7,), (), ["Nothing is compared: the study has one configuration; a grid with keep 1 (no dropout) gives it a baseline."]),
    ((0.5, 0.7, 1.0), (1.0,), ["Nothing is compared: every run of keep 1 diverged."]),
    ((0.5, 0.7, 1.0), (0.5, 0.7, 1.0), ["Nothing is compared: every run of keep 0.5; keep 0.7; keep 1 diverged."]),
])
def test_a_study_that_compares_nothing_says_why(tmp_path, keeps, diverged, said):
    folder = write_study(tmp_path / "s", keeps=keeps, seeds=(777, 778, 779),
                         status=lambda keep, *rest: "diverged" if keep in diverged else "ok")
    assert sentences(build_report(folder)) == said
    assert f"<p>{said[0]}</p>" in (folder / "report.html").read_text() and "<ol>" not in (folder / "report.html").read_text()


def test_a_configuration_whose_every_run_diverged_is_the_last_conclusion(tmp_path):
    folder = write_study(tmp_path / "s", keeps=(0.3, 0.5, 0.7, 1.0), seeds=(777, 778, 779),
                         status=lambda keep, *rest: "diverged" if keep < 0.45 else "ok")
    said = sentences(build_report(folder))
    assert said[-1] == "Every run of keep 0.3 diverged: it is in no comparison."
    assert said[0].startswith("Metric: ") and sum(s.startswith("keep ") for s in said) >= 2
