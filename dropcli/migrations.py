"""How an older study table implies the columns added to its schema since it was written.

    $ dropcli report results/ablation      # a history.csv without step, lr, hidden still reads

Tables are never rewritten to migrate them: tables.read_table fills a missing column from the
file's other columns (and, for history.csv, the study's settings in study.json) as the file was
made: every run validated once an epoch, its epochs whole, one learning rate and one width per
study. Each function takes the parsed columns ({column: list of values}) and returns the new one.
"""

from __future__ import annotations

from dropcli.grid import fmt_hidden


def _per_epoch(columns: dict, batch_size) -> list[int]:
    """Steps per epoch of each row of an older table: its train_size // batch_size (the remainder dropped)."""
    sizes = columns["batch_size"] if batch_size is None else [batch_size] * len(columns["train_size"])
    return [n // b for n, b in zip(columns["train_size"], sizes)]


# columns added after tables were written: how an older file's parsed columns imply them (every run then
# validated once an epoch, and its epochs were whole); history's also need the study's settings
RUNS_DERIVED = {
    "steps": lambda c: [e * s for e, s in zip(c["epochs_run"], _per_epoch(c, None))],
    "eval_every": lambda c: _per_epoch(c, None),
    "best_step": lambda c: [None if e is None else e * s for e, s in zip(c["best_epoch"], _per_epoch(c, None))],
}


def history_derived(settings: dict | None) -> dict:
    """How an older history.csv implies its step, lr and hidden columns, from the study's settings
    (study.json's, TrainConfig fields): {} without settings, and no lr or hidden where the settings
    lack them (a study that varies them always wrote them)."""
    if not settings:
        return {}
    derived = {"step": lambda c: [e * s for e, s in zip(c["epoch"], _per_epoch(c, int(settings["batch_size"])))]}
    if "lr" in settings:
        derived["lr"] = lambda c: [float(settings["lr"])] * len(c["epoch"])
    if "hidden" in settings:
        derived["hidden"] = lambda c: [fmt_hidden(tuple(settings["hidden"]))] * len(c["epoch"])
    return derived
