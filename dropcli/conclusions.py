"""The conclusions of a study as sentences, written from its summary.csv alone.

    $ dropcli report results/ablation      # prints them, and puts them in report.html

Every number in a sentence comes from a summary.csv column (compare.py says how each is made):
the paired difference in points with its 95% interval, the Holm-adjusted p-value, the seeds won;
"no different" only where the equivalence test holds; "inconclusive" with the difference the
study could have detected otherwise. p-values are given to 2 significant digits.
"""

from __future__ import annotations

import pandas as pd

from dropcli.compare import PRIMARY_METRIC, family_size, is_true
from dropcli.config import fmt_number
from dropcli.stats import ALPHA, CONFIDENCE, POWER

METRIC_NAMES = {"test_accuracy": "test accuracy after the last epoch",
                "test_accuracy_at_best": "test accuracy at each run's best validation epoch"}
SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def p_text(p: float) -> str:
    """A p-value to 2 significant digits: '0.37', '0.0035', '0.00091', '5.1 × 10⁻¹⁵' below 0.0001."""
    if p != p:
        return "n/a"  # no test (one seed, or every seed the same): the sentences say so before asking
    if p >= 0.0001:
        return fmt_number(float(f"{p:.2g}"))
    mantissa, exponent = f"{p:.1e}".split("e")
    return f"{mantissa} × 10{str(int(exponent)).translate(SUPERSCRIPT)}"


def points(x: float) -> str:
    """A difference in points with its sign: '+0.36', '−0.05' (3 decimals where 2 would show 0)."""
    text = f"{x:+.2f}" if abs(x) >= 0.005 or x == 0 else f"{x:+.3f}"
    return text.replace("-", "−")


def interval(low: float, high: float) -> str:
    """'[+0.22, +0.49]': a 95% interval in points."""
    return f"[{points(low)}, {points(high)}]"


def percent(x) -> str:
    """A fraction in % (or points) to 2 decimals; '' for a missing value."""
    return "" if pd.isna(x) else f"{100 * x:.2f}"


def diff_text(r) -> str:
    """'+0.36 [+0.22, +0.49]' (points), '-0.03 every seed', or '' without a comparison."""
    if pd.isna(r["diff_points"]):
        return ""
    if is_true(r["same_diff_every_seed"]):
        return f"{r['diff_points']:+.2f} every seed"
    ci = "" if pd.isna(r["diff_ci95_low_points"]) else f" [{r['diff_ci95_low_points']:+.2f}, {r['diff_ci95_high_points']:+.2f}]"
    return f"{r['diff_points']:+.2f}{ci}"


def varied_axes(summary: pd.DataFrame) -> list[str]:
    """The axes whose value differs between the summary's configurations."""
    cols = ("keep_probs", "input_keep_prob", "max_norm", "train_size", "lr", "hidden")  # lr, hidden: where written
    return [c for c in cols if c in summary and len({_text(v) for v in summary[c]}) > 1]


def _text(value) -> str:
    return "none" if pd.isna(value) else str(value)


def _axis(row, col: str, with_input: bool) -> str:
    v = row[col]
    if col == "keep_probs":
        return f"{'hidden keep' if with_input else 'keep'} {v}"
    if col == "input_keep_prob":
        return f"input keep {fmt_number(v)}"
    if col == "max_norm":
        return "no max-norm" if pd.isna(v) else f"max-norm {fmt_number(v)}"
    if col == "lr":
        return f"lr {fmt_number(v)}"
    if col == "hidden":
        return f"hidden {v}"
    return f"{int(v):,} images"


def label(row, axes: list[str], with_input: bool = False) -> str:
    """'keep 0.7', 'hidden keep 0.9, input keep 0.8', 'max-norm 3': the row's value of each axis."""
    return ", ".join(_axis(row, c, with_input) for c in axes) or "the one configuration"


class Namer:
    """Short names of a summary's configurations, from the axes the study varies."""

    def __init__(self, summary: pd.DataFrame):
        from dropcli.compare import describe

        self.summary, self.varied = summary, varied_axes(summary)
        self.with_input = "input_keep_prob" in self.varied
        self.by_description = {describe(r): r for _, r in summary.iterrows()}

    def row(self, description: str):
        """The summary row a `baseline` or `runner_up` description names, or None."""
        return self.by_description.get(description)

    def pair(self, row, other) -> tuple[str, str, str]:
        """(row's name, other's name, context): names on the axes where they differ, the context
        (' (input keep 1, 1,000 images)') on the varied axes they share."""
        differ = [c for c in self.varied if _text(row[c]) != _text(other[c])]
        same = [c for c in self.varied if c not in differ]
        a, b = label(row, differ, self.with_input), label(other, differ, self.with_input)
        if str(other["keep_probs"]) == "1" and float(other["input_keep_prob"]) == 1.0 and differ and set(differ) <= {
                "keep_probs", "input_keep_prob"}:
            b = "no dropout"
        context = f" ({label(row, same, self.with_input)})" if same else ""
        return a, b, context


def header(summary: pd.DataFrame) -> str:
    """What the sentences compare, and over which Holm families."""
    r = summary.iloc[0]
    metric = METRIC_NAMES.get(r["metric"], r["metric"])
    role = ("the study's primary metric" if r["role"] == "primary" else
            f"exploratory: the primary metric is {METRIC_NAMES[PRIMARY_METRIC]}, and Holm runs over this metric's tests only")
    diffs = family_size(summary)
    tosts = int(summary["tost_p"].notna().sum())
    margin = summary["equivalence_margin_points"].dropna()
    equivalence = (f", and over the {tests(tosts, 'equivalence')} (two one-sided paired t-tests, margin "
                   f"±{fmt_number(margin.iloc[0])} points)" if tosts else "")
    return (f"Metric: {metric} ({role}). Each configuration is compared with its baseline seed by seed, in points "
            f"of accuracy on the {int(r['test_images']):,} test images, with paired {CONFIDENCE:.0%} Student t intervals; "
            + (f"Holm's correction at {fmt_number(ALPHA)} runs over the {tests(diffs, 'difference')}{equivalence}."
               if diffs else "no comparison here allows a test, so Holm's correction has nothing to run over."))


def tests(n: int, kind: str) -> str:
    """'2 difference tests', '1 equivalence test'."""
    return f"{n} {kind} test{'s' if n != 1 else ''}"


def comparison(r, names: Namer, family: int) -> str | None:
    """The sentence of one row's comparison with its baseline, or None without one."""
    base = names.row(r["baseline"])
    if pd.isna(r["paired_seeds"]) or base is None:
        return None
    a, b, ctx = names.pair(r, base)
    n, c = int(r["paired_seeds"]), r["conclusion"]
    d = f"{points(r['diff_points'])} points"
    if c == "one seed":
        return f"{a} against {b}{ctx}: {d} from a single seed; one seed allows no interval and no test."
    if c == "same every seed":
        images = round(r["diff_points"] * r["test_images"] / 100)
        more = ("as many correct test images as" if images == 0 else
                f"{abs(images):,} {'more' if images > 0 else 'fewer'} correct test images than")
        return (f"{a} has {more} {b}{ctx} on every one of the {n} seeds ({d}): every seed "
                "gives the same difference, so there is no interval and no p-value.")
    ci, p = interval(r["diff_ci95_low_points"], r["diff_ci95_high_points"]), p_text(r["p_holm"])
    won = f"better on {int(r['wins'])} of {n} seeds"
    if c in ("better", "worse"):
        verb = "beats" if c == "better" else "is worse than"
        seeds = won if c == "better" else f"worse on {int(r['losses'])} of {n} seeds"
        return f"{a} {verb} {b}{ctx}: {d} {ci} (Holm p = {p}), {seeds}."
    margin = fmt_number(r["equivalence_margin_points"])
    if c == "no different":
        return (f"{a} is no different from {b}{ctx}: {d} {ci}, within the equivalence margin of ±{margin} points "
                f"(equivalence Holm p = {p_text(r['tost_p_holm'])}; difference Holm p = {p}), {won}.")
    detect = r["detectable_diff_points"]  # beyond 100 points: more than any accuracy can differ
    could = (f"this study could detect {detect:.2f} points" if detect < 100 else
             f"with {n} seeds this study could not detect even a 100-point difference")
    return (f"{a} against {b}{ctx}: {d} {ci} (Holm p = {p}), {won}: inconclusive, neither a difference nor "
            f"equivalence within ±{margin} points is shown; {could} ({POWER:.0%} power at {fmt_number(ALPHA)}/{family}).")


def ranking(r, names: Namer) -> str | None:
    """The sentence of a best row's lead over its runner-up, or None."""
    second = names.row(r["runner_up"])
    if second is None or pd.isna(r["lead_points"]):
        return None
    a, b, ctx = names.pair(r, second)
    n, d = int(r["lead_seeds"]), f"{points(r['lead_points'])} points"
    metric = r[f"{r['metric']}_mean"] * 100
    start = f"{a} has the highest mean{ctx}, {metric:.2f}%; against the runner-up, {b}, "
    if n < 2 or pd.isna(r["lead_p_holm"]) and not is_true(r["lead_same_every_seed"]):
        return start + f"it leads by {d} on {'a single seed' if n < 2 else f'{n} seeds'}, which allows no interval and no test."
    if is_true(r["lead_same_every_seed"]):
        return start + f"it leads by {d} on every one of the {n} seeds, so there is no interval and no p-value."
    ci, p = interval(r["lead_ci95_low_points"], r["lead_ci95_high_points"]), p_text(r["lead_p_holm"])
    verdict = "the ranking holds" if r["lead_holds"] else "the ranking is not established"
    return f"{start}it leads by {d} {ci} (Holm p = {p}), better on {int(r['lead_wins'])} of {n} seeds: {verdict}."


def diverged(summary: pd.DataFrame) -> list[str]:
    """The names (label, on the varied axes) of the configurations every run of which diverged: no
    comparison and no point in a figure holds them."""
    axes = varied_axes(summary)
    return [label(r, axes, "input_keep_prob" in axes) for _, r in summary[summary["runs"] == 0].iterrows()]


def sentences(summary: pd.DataFrame) -> list[str]:
    """The conclusions of a summary (as read_summary returns it): the header, one sentence per
    comparison with a baseline, one per ranking, then the configurations every run of which
    diverged. A summary without comparisons gets one sentence saying why; an empty one, []."""
    if not len(summary):
        return []
    names, gone = Namer(summary), diverged(summary)
    lost = "; ".join(gone)
    if summary["paired_seeds"].isna().all():
        why = ("the study has one configuration; a grid with keep 1 (no dropout) gives it a baseline" if len(summary) == 1
               else f"every run of {lost} diverged" if lost else "no configuration shares a finished seed with its baseline")
        return [f"Nothing is compared: {why}."]
    family = family_size(summary)
    out = [header(summary)]
    out += [s for _, r in summary.iterrows() if (s := comparison(r, names, family))]
    out += [s for _, r in summary.iterrows() if r["rank"] == 1 and (s := ranking(r, names))]
    return out + ([f"Every run of {lost} diverged: {'it is' if len(gone) == 1 else 'they are'} in no comparison."]
                  if lost else [])
