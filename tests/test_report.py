"""summary.csv against an independent recomputation from runs.csv with scipy, on a fresh grid and on
every committed study; baselines, metrics, the table's marks and the plots."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from typer.testing import CliRunner

from dropcli.ablate import run_study
from dropcli.cli import app
from dropcli.config import TrainConfig
from dropcli.device import resolve_device
from dropcli.grid import GridSpec
from dropcli.plan import make_plan
from dropcli.report import build_report, parse_baseline, summarise
from dropcli.tables import read_runs

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = sorted(p.parent for p in (ROOT / "results").glob("*/runs.csv"))
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


def recompute(runs: pd.DataFrame, metric="test_accuracy", baseline=None) -> pd.DataFrame:
    """The paired columns of every configuration, computed from the runs alone with scipy."""
    spec = baseline or {"keep_probs": "1", "input_keep_prob": 1.0}
    ok = runs[runs["status"] == "ok"].copy()
    ok["mn"] = ok["max_norm"].fillna(-1)
    configs = ok[["keep_probs", "input_keep_prob", "mn", "train_size"]].drop_duplicates()
    rows = []
    for c in configs.itertuples(index=False):
        target = {"keep_probs": spec.get("keep_probs", c.keep_probs),
                  "input_keep_prob": spec.get("input_keep_prob", c.input_keep_prob),
                  "mn": -1 if spec.get("max_norm", c.mn) is None else spec.get("max_norm", c.mn),
                  "train_size": spec.get("train_size", c.train_size)}
        mine = ok[(ok.keep_probs == c.keep_probs) & (ok.input_keep_prob == c.input_keep_prob) & (ok.mn == c.mn)
                  & (ok.train_size == c.train_size)]
        base = ok[(ok.keep_probs == target["keep_probs"]) & (ok.input_keep_prob == target["input_keep_prob"])
                  & (ok.mn == target["mn"]) & (ok.train_size == target["train_size"])]
        row = {"keep_probs": c.keep_probs, "input_keep_prob": c.input_keep_prob, "mn": c.mn, "train_size": c.train_size,
               "p_value": math.nan, "low": math.nan, "high": math.nan, "diff": math.nan, "n": math.nan, "wins": math.nan}
        if len(base) and not base.index.equals(mine.index):
            m = mine.merge(base, on="seed", suffixes=("", "_b"))
            a, b = m[metric].to_numpy(), m[f"{metric}_b"].to_numpy()
            row.update(diff=(a - b).mean(), n=len(m), wins=int((a > b).sum()))
            if len(m) >= 2 and np.std(a - b) > 0:
                t = stats.ttest_rel(a, b)
                row.update(p_value=t.pvalue, low=t.confidence_interval(0.95).low, high=t.confidence_interval(0.95).high)
        rows.append(row)
    ref = pd.DataFrame(rows)
    ref["holm"] = reference_holm(list(ref["p_value"]))
    return ref.rename(columns={c: f"ref_{c}" for c in ("p_value", "low", "high", "diff", "n", "wins", "holm")})


def assert_summary_matches(summary: pd.DataFrame, runs: pd.DataFrame, **kw):
    ref = recompute(runs, **kw)
    summary = summary.assign(mn=summary["max_norm"].fillna(-1))
    merged = summary.merge(ref, on=["keep_probs", "input_keep_prob", "mn", "train_size"], how="outer", validate="1:1")
    assert len(merged) == len(summary) == len(ref)
    for mine, theirs in (("p_value", "ref_p_value"), ("diff_ci95_low", "ref_low"), ("diff_ci95_high", "ref_high"),
                         ("diff_mean", "ref_diff"), ("paired_seeds", "ref_n"), ("wins", "ref_wins"), ("p_holm", "ref_holm")):
        a, b = merged[mine].to_numpy(dtype=float), merged[theirs].to_numpy(dtype=float)
        assert np.array_equal(np.isnan(a), np.isnan(b)), mine
        assert np.allclose(a[~np.isnan(a)], b[~np.isnan(b)], rtol=1e-9, atol=1e-10), mine


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
    on_disk = pd.read_csv(fresh / "summary.csv", dtype={"keep_probs": str})
    assert list(on_disk.columns[-10:]) == ["metric", "baseline", "paired_seeds", "diff_mean", "diff_ci95_low",
                                           "diff_ci95_high", "p_value", "p_holm", "wins", "wilcoxon_p"]
    assert_summary_matches(on_disk, read_runs(fresh / "runs.csv"))
    baseline = summary[(summary.keep_probs == "1") & (summary.input_keep_prob == 1.0)]
    assert baseline["p_value"].isna().all() and baseline["paired_seeds"].isna().all()  # no comparison with itself
    assert set(summary["baseline"]) == {"keep 1, input keep 1, max-norm none, 600 images"}


def test_another_baseline_and_the_best_epoch_metric(fresh):
    runs = read_runs(fresh / "runs.csv")
    spec = parse_baseline("keep=0.8")
    summary = summarise(runs, "test_accuracy_at_best", spec)
    assert_summary_matches(summary, runs, metric="test_accuracy_at_best", baseline=spec)
    assert set(summary["metric"]) == {"test_accuracy_at_best"}
    assert summary[summary.keep_probs == "0.8"]["p_value"].isna().all()
    assert len(summary["baseline"].unique()) == 2  # keep 0.8 at input keep 0.8, and at 1


def test_report_command_prints_the_comparison_and_draws_the_plots(fresh):
    result = runner.invoke(app, ["report", str(fresh), "--baseline", "keep=1,input_keep=1"])
    assert result.exit_code == 0, result.output
    assert "diff vs baseline" in result.stdout and "Holm-adjusted p < 0.05" in result.stdout
    for name in ("ablation.png", "curves.png"):
        png = (fresh / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    bad = runner.invoke(app, ["report", str(fresh), "--baseline", "dropout=none"])
    assert bad.exit_code == 2 and "--baseline takes axis=value pairs" in bad.stderr


def test_the_table_marks_differences_that_survive_holm():
    from rich.console import Console

    from dropcli.report import summary_table

    runs = []
    for seed in range(6):
        for keep, acc in (("1", 0.90), ("0.5", 0.95), ("0.7", 0.90)):
            runs.append({"keep_probs": keep, "keep_prob_mean": float(keep), "input_keep_prob": 1.0, "max_norm": math.nan,
                         "train_size": 1000, "seed": seed, "status": "ok", "test_accuracy": acc + seed * 1e-3 * (keep == "0.5")
                         + (0.002 if (keep == "0.7" and seed % 2) else -0.002 if keep == "0.7" else 0),
                         **{m: 0.5 for m in ("validation_accuracy", "train_accuracy", "generalization_gap", "final_cost",
                                             "test_accuracy_at_best", "best_epoch", "test_accuracy_mc", "group_train_seconds")}})
    summary = summarise(pd.DataFrame(runs))
    console = Console(width=200, record=True)
    console.print(summary_table(summary))
    lines = console.export_text().splitlines()
    half = next(line for line in lines if line.strip().startswith("│  0.5"))
    seven = next(line for line in lines if line.strip().startswith("│  0.7"))
    assert "✓" in half and "6/6" in half and "✓" not in seven and "3/6" in seven


@pytest.mark.parametrize("study", COMMITTED, ids=[p.name for p in COMMITTED])
def test_every_committed_summary_equals_scipy_from_its_runs(study):
    runs = read_runs(study / "runs.csv")
    on_disk = pd.read_csv(study / "summary.csv", dtype={"keep_probs": str})
    metric = on_disk["metric"].iloc[0]
    baseline = None if on_disk["baseline"].str.startswith("keep 1, input keep 1,").all() else "custom"
    if baseline:
        pytest.skip("a committed summary with a custom baseline is checked by its own test")
    assert_summary_matches(on_disk, runs, metric=metric)
