"""What the figures draw: the data behind each artist, every estimate with its interval, the marks
of Holm-significant differences, extremes at the edge with their values, titles inside the canvas,
readable colours, and the axes each figure promises."""

import math

import numpy as np
import pandas as pd
import pytest
from synthetic_study import write_study

from dropcli.errors import UsageError
from dropcli.plot_curves import draw_curves, draw_mc_curve
from dropcli.plot_study import comparison_rows, draw_ablation, draw_differences
from dropcli.plots import MIN_CONTRAST, contrast
from dropcli.report import build_report, mc_curve_frame
from dropcli.stats import wilson_interval
from dropcli.study import study_folder
from dropcli.tables import read_history


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """keep 0.3 is an extreme (about -3 points); the others lie within a point of no dropout."""
    def correct(keep, ik, mn, n, seed):
        rng = np.random.default_rng([seed, int(keep * 10), int(ik * 10)])
        return int(9775 + 300 * (keep == 0.3) * -1 + 30 * (0.5 < keep < 1) + 8 * (seed % 3) + rng.integers(-6, 7))

    folder = write_study(tmp_path_factory.mktemp("s") / "study", keeps=(0.3, 0.5, 0.6, 0.7, 0.8, 1.0),
                         input_keeps=(0.8, 1.0), seeds=range(777, 785), correct=correct)
    return folder, build_report(folder)


def inside_canvas(fig, artist) -> bool:
    renderer = fig.canvas.get_renderer()
    fig.canvas.draw()
    box, canvas = artist.get_window_extent(renderer), fig.bbox
    return box.x0 >= canvas.x0 and box.x1 <= canvas.x1 and box.y0 >= canvas.y0 and box.y1 <= canvas.y1


def errorbars(ax):
    """(x, lower, upper) of every vertical error bar on ax, from the drawn segments."""
    out = []
    for c in ax.containers:
        (bars,) = c.lines[2]
        for (x0, y0), (x1, y1) in bars.get_segments():
            out.append((x0, min(y0, y1), max(y0, y1)))
    return out


def test_ablation_draws_every_estimate_with_its_interval_in_one_unit(study):
    _, summary = study
    fig = draw_ablation(summary, "MNIST, 3 epochs, 8 seeds per point, hidden 512 512 512 512")
    top, middle, bottom = fig.axes
    assert inside_canvas(fig, fig._suptitle) and all(inside_canvas(fig, ax.title) for ax in fig.axes)
    assert "points" in middle.get_ylabel() and "points" in bottom.get_ylabel() and "%" in top.get_ylabel()
    compared = summary[summary["diff_points"].notna()]
    drawn = {(round(x, 6), round(lo, 6), round(hi, 6)) for x, lo, hi in errorbars(middle)}
    for _, r in compared.iterrows():  # each difference's 95% interval, in points
        assert (round(r["keep_prob_mean"], 6), round(r["diff_ci95_low_points"], 6), round(r["diff_ci95_high_points"], 6)) in drawn
    gap = {(round(x, 6), round(lo, 6), round(hi, 6)) for x, lo, hi in errorbars(bottom)}
    for _, r in summary.iterrows():  # the gap panel has intervals too
        mean, half = 100 * r["generalization_gap_mean"], 100 * r["generalization_gap_ci95"]
        assert (round(r["keep_prob_mean"], 6), round(mean - half, 6), round(mean + half, 6)) in gap
    filled = [c for c in middle.collections if c.get_offsets().size and not np.allclose(c.get_facecolors()[:, :3], 1)]
    filled_xy = {(round(x, 6), round(y, 6)) for c in filled for x, y in c.get_offsets()}
    significant = compared[compared["p_holm"] < 0.05]
    assert len(significant) and filled_xy == {(round(r["keep_prob_mean"], 6), round(r["diff_points"], 6))
                                             for _, r in significant.iterrows()}
    low, high = middle.get_ylim()
    extreme = compared[compared.keep_probs == "0.3"]["diff_points"]
    assert (extreme < low).all() and high - low < 3  # keep 0.3 does not set the scale ...
    notes = [t.get_text() for t in middle.texts]
    for d in extreme:  # ... it is marked at the edge with its value and interval
        assert any(t.startswith(f"keep 0.3: {d:+.2f}".replace("-", "−")) and "[" in t for t in notes)


def test_differences_has_one_row_per_comparison_with_its_conclusion(study):
    _, summary = study
    rows = comparison_rows(summary)
    assert len(rows) == summary["p_value"].notna().sum() + summary["lead_points"].notna().sum()
    fig = draw_differences(summary, "title")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == list(rows["label"])
    assert rows["label"].iloc[-1].startswith("best hidden keep ") and "runner-up hidden keep" in rows["label"].iloc[-1]
    notes = [t.get_text() for t in ax.texts]
    for _, r in rows.iterrows():
        assert any(t.startswith(r["conclusion"]) for t in notes)
    spans = [p for p in ax.patches if p.get_facecolor()[:3] == pytest.approx((0.85, 0.85, 0.85))]
    assert len(spans) == 1 and spans[0].get_x() == pytest.approx(-0.2) and spans[0].get_width() == pytest.approx(0.4)
    assert inside_canvas(fig, fig._suptitle)


def test_curves_title_inside_integer_epochs_zoomed_and_readable(study):
    folder, _ = study
    history = read_history(folder / "history.csv")
    history = history[history["input_keep_prob"] == 1.0]  # one setting: one column, the narrowest figure
    fig = draw_curves(history, "MNIST, 3 epochs, 8 seeds per point, hidden 512 512 512 512 and a long tail of words")
    assert inside_canvas(fig, fig._suptitle) and inside_canvas(fig, fig.legends[0])
    title, legend = (a.get_window_extent(fig.canvas.get_renderer()) for a in (fig._suptitle, fig.legends[0]))
    assert not title.overlaps(legend)
    acc = fig.axes[0]
    ticks = [t for t in acc.get_xticks() if acc.get_xlim()[0] <= t <= acc.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks)
    low, high = acc.get_ylim()
    assert low > 90 and high <= 100  # zoomed to where the accuracies are, in %, not 0-1
    assert any(t.get_text().startswith("below the range: keep 0.3") for t in acc.texts)
    for line in acc.get_lines():
        assert contrast(line.get_color()) >= MIN_CONTRAST, line.get_label()
    assert {line.get_label() for line in fig.axes[0].get_lines()} >= {"keep 0.7", "keep 1 (no dropout)"}


def test_mc_curve_log_ticks_at_each_count_and_an_interval_on_weight_scaling():
    rows = [{"repeat": r, "samples": t, "accuracy": (9700 + 10 * math.log(t) + r) / 10_000}
            for r in range(3) for t in (1, 2, 5, 10, 20, 50, 100)]
    frame = mc_curve_frame(rows, 0.9827, 10_000)
    fig = draw_mc_curve(frame, "0.7 keep, test split")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and list(ax.get_xticks()) == [1, 2, 5, 10, 20, 50, 100]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "5", "10", "20", "50", "100"]
    mc = next(line for line in ax.get_lines() if line.get_label().startswith("Monte-Carlo"))
    assert list(mc.get_ydata()) == pytest.approx(list(frame["accuracy_mean"] * 100))
    low, high = wilson_interval(9827, 10_000)
    band = next(p for p in ax.patches if "95% interval" in p.get_label())
    extent = band.get_transform().transform(band.get_path().vertices)
    data = ax.transData.inverted().transform(extent)[:, 1]
    assert (data.min(), data.max()) == (pytest.approx(low * 100, abs=1e-6), pytest.approx(high * 100, abs=1e-6))
    assert inside_canvas(fig, fig._suptitle)


def test_a_study_without_comparisons_gets_no_differences_figure(tmp_path):
    folder = write_study(tmp_path / "one", keeps=(0.7,), seeds=(777,))
    study_folder(folder).write_text("differences.png", "left by an earlier report")
    summary = build_report(folder)
    assert pd.isna(summary["paired_seeds"]).all() and not (folder / "differences.png").exists()
    assert (folder / "ablation.png").exists() and (folder / "curves.png").exists()
    mine = write_study(tmp_path / "mine", keeps=(0.7,), seeds=(777,))
    (mine / "differences.png").write_text("a file of the user's")  # not dropcli's: refused before anything is written
    with pytest.raises(UsageError, match="differences.png exists and was not written by dropcli"):
        build_report(mine)
    assert (mine / "differences.png").read_text() == "a file of the user's" and not (mine / "summary.csv").exists()


def test_the_title_counts_seeds_per_point_as_they_are(study):
    """A study still running has points with fewer seeds: the title gives the range, not the study's seeds."""
    from dropcli.plots import study_title
    from dropcli.tables import read_runs

    runs = read_runs(study[0] / "runs.csv")
    assert ", 8 seeds per point, " in study_title(runs)
    fewer = runs.drop(runs[(runs["keep_probs"] == "0.7") & (runs["seed"] > 780)].index)
    assert ", 4 to 8 seeds per point, " in study_title(fewer)


@pytest.mark.parametrize("axes, labels, shared", [
    ({"lr": [0.0003, 0.001, 0.003]}, ["lr 0.0003", "lr 0.001", "lr 0.003"], "input keep 1, 55,000 images"),
    ({"input_keep_prob": [0.8, 1.0], "max_norm": [None, 3.0]},
     ["input keep 0.8, no max-norm", "input keep 0.8, max-norm 3", "input keep 1, no max-norm", "input keep 1, max-norm 3"],
     "55,000 images"),
    ({"train_size": [1000, 55000], "hidden": ["512 512", "1024 1024"]},
     ["1,000 images, hidden 1024 1024", "1,000 images, hidden 512 512", "55,000 images, hidden 1024 1024",
      "55,000 images, hidden 512 512"], "input keep 1"),
    ({}, ["input keep 1, 55,000 images"], ""),
])
def test_the_legend_names_what_tells_the_lines_apart_and_its_title_what_they_share(axes, labels, shared):
    import itertools

    from dropcli.plots import line_labels, lines

    base = {"input_keep_prob": [1.0], "train_size": [55000], "max_norm": [None], "lr": [0.001], "hidden": ["512 512"]}
    grid = {**base, **axes}
    rows = [dict(zip(grid, values), keep_prob_mean=k) for values in itertools.product(*grid.values()) for k in (0.5, 1.0)]
    df = pd.DataFrame(rows)
    got, common = line_labels(df)
    assert [got[key] for key, _ in lines(df)] == labels and common == shared


def test_accuracy_intervals_are_drawn_within_0_and_100_percent(tmp_path):
    """Two seeds 0.5 points apart near 99.9%: the t interval (12.7 standard errors) reaches past
    100%, and the figure draws it up to 100% only."""
    def correct(keep, ik, mn, n, seed):
        return 9990 + (seed % 2) * (5 if keep == 0.7 else 3) - 50 * (seed % 2) * (keep == 1.0)

    folder = write_study(tmp_path / "s", keeps=(0.7, 1.0), seeds=(1, 2), correct=correct)
    summary = build_report(folder)
    assert (100 * (summary["test_accuracy_mean"] + summary["test_accuracy_ci95"]) > 100).all()
    top = draw_ablation(summary, "two seeds").axes[0]
    drawn = errorbars(top)
    assert len(drawn) == 2 and all(0 <= lo <= hi <= 100 for _, lo, hi in drawn)
    assert {round(hi, 6) for _, _, hi in drawn} == {100}


def test_a_one_epoch_study_has_whole_epoch_ticks(tmp_path):
    folder = write_study(tmp_path / "one", keeps=(0.5, 1.0), seeds=(777, 778), epochs=1)
    fig = draw_curves(read_history(folder / "history.csv"), "MNIST, 1 epoch")
    fig.canvas.draw()
    for ax in fig.axes:
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks == [1.0]
    history = read_history(folder / "history.csv")
    for keep, cell in history.groupby("keep_probs"):  # the band over seeds: an error bar at the one epoch
        lo, hi = cell["validation_accuracy"].min() * 100, cell["validation_accuracy"].max() * 100
        assert (1.0, pytest.approx(lo), pytest.approx(hi)) in [(x, a, b) for x, a, b in errorbars(fig.axes[0])]


def test_a_study_of_one_configuration_has_no_empty_difference_panel(tmp_path):
    folder = write_study(tmp_path / "one", keeps=(0.7,), seeds=(777, 778))
    fig = draw_ablation(build_report(folder), "MNIST")
    assert len(fig.axes) == 2 and not any("Paired difference" in ax.get_title() for ax in fig.axes)


def test_a_configuration_whose_every_run_diverged_is_named_not_dropped(tmp_path):
    folder = write_study(tmp_path / "d", keeps=(0.3, 0.7, 1.0), seeds=(777, 778, 779),
                         status=lambda keep, *rest: "diverged" if keep == 0.3 else "ok")
    summary = build_report(folder)
    fig = draw_ablation(summary, "MNIST")
    top = fig.axes[0]
    assert top.get_title(loc="left").splitlines()[1] == "not drawn, every run diverged: keep 0.3"
    assert inside_canvas(fig, top._left_title) and not top.texts  # above the panel, over no data


def test_many_diverged_configurations_are_counted_not_listed(tmp_path):
    folder = write_study(tmp_path / "d", keeps=(0.2, 0.3, 0.4, 0.5, 0.7, 1.0), seeds=(777, 778),
                         status=lambda keep, *rest: "diverged" if keep < 0.6 else "ok")
    title = draw_ablation(build_report(folder), "MNIST").axes[0].get_title(loc="left")
    assert title.endswith("not drawn, every run diverged: keep 0.2; keep 0.3; keep 0.4 and 1 more")
