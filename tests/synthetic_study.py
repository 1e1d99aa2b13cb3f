"""Study folders made of synthetic rows (no training): runs.csv, history.csv and study.json as
dropcli writes them, with accuracies that are whole numbers of correct test images."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from dropcli.config import TrainConfig, fmt_keep
from dropcli.grid import GridSpec, study_identity
from dropcli.tables import HISTORY_SCHEMA, RUNS_SCHEMA, frame, write_csv

TEST_IMAGES = 10_000


def default_correct(keep: float, input_keep: float, max_norm, train_size: int, seed: int) -> int:
    """Correct test images of a cell: best near keep 0.7, a seed effect shared by the seed's cells,
    and a little cell noise (deterministic)."""
    rng = np.random.default_rng([seed, int(keep * 1000), int(input_keep * 1000), train_size])
    return int(9775 + 36 * (1 - ((keep - 0.7) / 0.3) ** 2) - 40 * (keep < 0.45) + 9 * (seed % 3) + rng.integers(-8, 9))


def write_study(folder: Path, keeps=(0.5, 0.7, 1.0), input_keeps=(1.0,), max_norms=(None,), train_sizes=(None,),
                seeds=(777, 778, 779), epochs: int = 3, correct=default_correct, status=lambda *cell: "ok") -> Path:
    """Write a synthetic study into `folder` (created); returns the folder. correct(keep,
    input_keep, max_norm, train_size, seed) gives each cell's correct test images of 10,000."""
    folder.mkdir(parents=True, exist_ok=True)
    base = TrainConfig(epochs=epochs)
    grid = GridSpec(keep_probs=tuple((k,) for k in keeps), input_keep_probs=tuple(input_keeps),
                    max_norms=tuple(max_norms), train_sizes=tuple(train_sizes), seeds=tuple(seeds))
    (folder / "study.json").write_text(json.dumps(study_identity(grid, base), indent=2, sort_keys=True) + "\n")
    runs, history = [], []
    for keep in keeps:
        for ik in input_keeps:
            for mn in max_norms:
                for n in train_sizes:
                    size = n or 55_000
                    for seed in seeds:
                        state = status(keep, ik, mn, size, seed)
                        acc = correct(keep, ik, mn, size, seed) / TEST_IMAGES
                        head = {"keep_probs": fmt_keep((keep,)), "keep_prob_mean": keep, "input_keep_prob": ik,
                                "max_norm": mn, "train_size": size, "seed": seed}
                        per_epoch = size // 100
                        runs.append({**head, **_measures(acc, state, keep, epochs), "steps": epochs * per_epoch,
                                     "subset": "all" if n is None else "random",  # config.sampling
                                     "eval_every": per_epoch, "best_step": epochs * per_epoch if state == "ok" else None})
                        history += [{**head, "lr": 0.001, "hidden": "512 512 512 512", "epoch": e, "step": e * per_epoch,
                                     "cost": 1.5 / e * (2 - keep),
                                     "train_batch_accuracy": acc - 0.01 / e,
                                     "validation_accuracy": acc - 0.02 / e ** 1.5, "group_epoch_seconds": 1.0}
                                    for e in range(1, epochs + 1)]
    write_csv(frame(runs, RUNS_SCHEMA), folder / "runs.csv", RUNS_SCHEMA)
    write_csv(frame(history, HISTORY_SCHEMA), folder / "history.csv", HISTORY_SCHEMA)
    return folder


def _measures(acc: float, state: str, keep: float, epochs: int) -> dict:
    ok = state == "ok"
    return {"subset": "all", "epochs": epochs, "epochs_run": epochs, "hidden": "512 512 512 512", "init": "tutorial",
            "lr": 0.001, "batch_size": 100, "dataset": "mnist", "test_images": TEST_IMAGES,
            "final_cost": 0.05 if ok else math.nan, "train_accuracy": min(1.0, acc + 0.015) if ok else None,
            "validation_accuracy": acc - 0.001 if ok else None, "test_accuracy": acc if ok else None,
            "generalization_gap": min(1.0, acc + 0.015) - acc if ok else None, "test_loss": 0.07 if ok else None,
            "best_epoch": epochs if ok else None, "test_accuracy_at_best": acc if ok else None, "test_accuracy_mc": None,
            "mc_samples": 0, "group_size": 4, "group_train_seconds": 12.5, "device": "cpu", "cpu": "Synthetic CPU, 2 cores",
            "engine": "synthetic", "workers": 1, "threads": 2, "precision": "float32", "status": state, "finished_at": "2026-11-29T10:00:00+00:00",
            "dropcli_version": "0.1.0+g0123456789ab", "torch_version": "2.14.1"}
