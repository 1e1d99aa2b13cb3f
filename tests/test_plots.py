"""The study's pictures are drawn from its tables, with every line and panel they promise."""

import math

import pandas as pd

from dropcli.plots import plot_ablation, plot_curves, plot_mc_curve
from dropcli.report import mc_curve_frame, summarise


def runs_and_history():
    runs, history = [], []
    for keep in ("0.5", "1"):
        for ik in (0.8, 1.0):
            for seed in (1, 2, 3):
                acc = 0.9 + 0.01 * float(keep) + 0.001 * seed
                runs.append({"keep_probs": keep, "keep_prob_mean": float(keep), "input_keep_prob": ik, "max_norm": math.nan,
                             "train_size": 1000, "seed": seed, "status": "ok", "test_accuracy": acc,
                             **{m: acc for m in ("validation_accuracy", "train_accuracy", "test_accuracy_at_best")},
                             "generalization_gap": 0.01, "final_cost": 0.1, "best_epoch": 2, "test_accuracy_mc": math.nan,
                             "group_train_seconds": 1.0})
                for epoch in (1, 2, 3):
                    history.append({"keep_probs": keep, "keep_prob_mean": float(keep), "input_keep_prob": ik,
                                    "max_norm": math.nan, "train_size": 1000, "seed": seed, "epoch": epoch,
                                    "cost": 1 / epoch, "validation_accuracy": acc - 0.01 / epoch})
    return pd.DataFrame(runs), pd.DataFrame(history)


def is_png(path, min_bytes=15_000):
    data = path.read_bytes()
    return data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > min_bytes


def test_ablation_and_curves(tmp_path):
    runs, history = runs_and_history()
    summary = summarise(runs)
    assert is_png(plot_ablation(summary, tmp_path / "a.png", "title"))
    assert is_png(plot_curves(history, tmp_path / "c.png", "title"))
    from PIL import Image

    assert Image.open(tmp_path / "c.png").width > Image.open(tmp_path / "a.png").width  # one column per setting


def test_mc_curve(tmp_path):
    rows = [{"repeat": r, "samples": t, "accuracy": 0.97 + 0.001 * t / 10 + 0.0001 * r} for r in range(3) for t in (1, 10)]
    frame = mc_curve_frame(rows, 0.98)
    assert list(frame["samples"]) == [1, 10] and list(frame["repeats"]) == [3, 3]
    assert is_png(plot_mc_curve(frame, tmp_path / "m.png", "title"), 10_000)
    assert not list(tmp_path.glob("*.tmp"))
