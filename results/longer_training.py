"""The 60-epoch study's runs against the same seeds' 15-epoch runs: does training 4 times longer
change each keep probability's test accuracy? (README, "What the studies show".)

    python results/longer_training.py            # dropcli installed (make install); any folder
    python results/longer_training.py running/ablation-epochs-60     # the study while it runs

A 60-epoch cell starts from the same seed's weights and batch order as the 15-epoch cell of the
same keep probability, so its first 15 epochs are that run, step for step. This script checks it
(validation accuracy and cost at epoch 15, to the last digit, for every seed) before it compares:
a pair whose first 15 epochs differ would compare two trainings, not two lengths, and is refused.
The 15-epoch runs are results/ablation-width's at 512 units (keep 0.5, 0.7, 1) and
results/ablation-lr's at lr 1e-3 (keep 0.7, 1; the same runs to the last digit); keep 0.8 has no
15-epoch run made by this engine (results/ablation's are older code), so it is not compared.

Prints one line per keep probability: the paired difference in test accuracy (60 minus 15 epochs)
in points, its 95% Student t interval, the paired t-test's p-value and Holm's adjustment over the
keep probabilities compared (dropcli.stats, as `dropcli report` computes them), and seeds better.
Then, for each keep probability below 1, how its gain over no dropout changes with the length: per
seed, (keep minus no dropout at 60 epochs) minus (keep minus no dropout at 15 epochs), in points,
with its own Holm family. Exits 1 when a 60-epoch run does not continue its 15-epoch run.
"""

import sys
from pathlib import Path

import numpy as np

from dropcli.compare import correct_images
from dropcli.conclusions import interval, p_text, points
from dropcli.power import detectable_difference
from dropcli.stats import ALPHA, holm, paired
from dropcli.tables import read_history, read_runs

ROOT = Path(__file__).resolve().parent
LONG = ROOT / (sys.argv[1] if len(sys.argv) > 1 else "ablation-epochs-60")
SHORT = ROOT / "ablation-width"  # 15 epochs, hidden 512x4 and 1024x4, keep 0.5, 0.7, 1, lr 1e-3
TUTORIAL = "512 512 512 512"


def main() -> int:
    long_runs, short_runs = read_runs(LONG / "runs.csv"), read_runs(SHORT / "runs.csv")
    short_runs = short_runs[short_runs["hidden"] == TUTORIAL]
    at_15 = read_history(LONG / "history.csv")
    at_15 = at_15[at_15["epoch"] == 15].set_index(["keep_probs", "seed"])
    rows = []
    for keep in sorted(set(long_runs["keep_probs"]) & set(short_runs["keep_probs"]), key=float):
        a = long_runs[long_runs["keep_probs"] == keep].set_index("seed").sort_index()
        b = short_runs[short_runs["keep_probs"] == keep].set_index("seed").sort_index()
        seeds = a.index.intersection(b.index)
        for seed in seeds:
            h = at_15.loc[(keep, seed)]
            if (h["validation_accuracy"], h["cost"]) != (b.loc[seed, "validation_accuracy"], b.loc[seed, "final_cost"]):
                print(f"keep {keep}, seed {seed}: the 60-epoch run's epoch 15 is not the 15-epoch run "
                      f"(validation {h['validation_accuracy']} against {b.loc[seed, 'validation_accuracy']})")
                return 1
        diffs = (correct_images(a.loc[seeds, "test_accuracy"], a.loc[seeds, "test_images"])
                 - correct_images(b.loc[seeds, "test_accuracy"], b.loc[seeds, "test_images"]))
        rows.append((keep, diffs, a.loc[seeds, "test_accuracy"].mean(), b.loc[seeds, "test_accuracy"].mean()))
    scale = 100 / int(long_runs["test_images"].iloc[0])
    longer = [(keep, paired(d.to_numpy(), scale=scale), f"{100 * short:.2f}% -> {100 * long:.2f}%, ")
              for keep, d, long, short in rows]
    print(f"Test accuracy after 60 epochs minus after 15 epochs, paired by seed; Holm over {len(longer)} keep probabilities")
    ok = report(longer)
    baseline = dict((keep, d) for keep, d, _, _ in rows).get("1")
    if baseline is not None:  # the gain's change: a difference of paired differences, still paired by seed
        gains = [(keep, paired((d - baseline).dropna().to_numpy(), scale=scale), "") for keep, d, _, _ in rows if keep != "1"]
        print(f"Gain over no dropout at 60 epochs minus the gain at 15, paired by seed; Holm over {len(gains)} keep probabilities")
        ok = report(gains) and ok
    return 0 if ok else 1


def report(rows: list) -> bool:
    """Print one line per (keep, stats.paired result, prefix) with Holm's adjustment over the rows,
    and where it is not significant the smallest difference the seeds could detect (80% power at
    Holm's strictest level, 0.05 / rows; dropcli.power, as `dropcli report` says it). True when
    every row has a test."""
    adjusted = holm([r["p_value"] for _, r, _ in rows])
    for (keep, r, prefix), p_holm in zip(rows, adjusted):
        detect = detectable_difference(r["paired_seeds"], r["diff_sd"], ALPHA / len(rows))
        weak = "" if p_holm < ALPHA else f": not significant; these seeds could detect {detect:.2f} points"
        print(f"keep {keep}: {prefix}{points(r['diff'])} points {interval(r['diff_ci_low'], r['diff_ci_high'])} "
              f"(p = {p_text(r['p_value'])}, Holm p = {p_text(p_holm)}), better on {r['wins']} of {r['paired_seeds']} seeds{weak}")
    return bool(np.isfinite(adjusted).all())


if __name__ == "__main__":
    sys.exit(main())
