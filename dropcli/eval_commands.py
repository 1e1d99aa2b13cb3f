"""The bodies of evaluate and predict: score a saved run, then print through the Terminal.

    $ dropcli evaluate RUN --mc-curve 1,2,5,10,20,50,100 --csv curve.csv
    $ dropcli predict RUN photo.jpg --mc-samples 50

cli.py parses and validates; these functions load a run (checked), find its data by content, and
say what happened. Library calls raise DropcliError for failures, which the CLI turns into one
line and its exit status.
"""

from __future__ import annotations

import random
from pathlib import Path

from dropcli.config import check_monte_carlo
from dropcli.errors import DropcliError
from dropcli.terminal import Terminal, usage

RUN_MC_FIX = "leave out the option, or give a run trained with --keep-prob or --input-keep-prob below 1"


def load_checked_run(run: Path, mc_option: str | None = None):
    """checkpoint.load_run, then the checks every command reading a run shares (evaluate, predict):
    with mc_option (as typed, e.g. '--mc-samples 20'), the Monte-Carlo rule (config.check_monte_carlo,
    a usage error). Returns (params, config, info); raises DropcliError as load_run does."""
    from dropcli.checkpoint import load_run

    params, config, info = load_run(run)
    if mc_option:
        usage(check_monte_carlo, [config], mc_option, RUN_MC_FIX, trained=True)
    return params, config, info


def load_split(run: Path, split: str, data_dir: str | None, device_name: str, term: Terminal | None = None,
               mc_option: str | None = None):
    """A run's weights and the split to score: (params, config, info, device, Split, name), the
    split's x (N, 784) and y (N,) on the device, and the data's name for the terminal
    ('MNIST (sha256 0b1a2c3d4e5f)', data.describe). The data is the one --data-dir names, else the
    run's own, found and checked by its SHA-256 (data.data_for_run); a note goes to `term` when
    it is not the run's own. mc_option: see load_checked_run. Raises DropcliError as load_run and
    data_for_run do, or for a validation split the run did not keep."""
    from dropcli.data import data_for_run, describe
    from dropcli.device import resolve_device

    device = resolve_device(device_name)  # first: it sets the CPU's float mode before torch starts its threads
    params, config, info = load_checked_run(run, mc_option)
    data, note = data_for_run(config, info.get("data"), data_dir, device)
    if split == "validation":
        _, chosen = data.part(config.validation_size, config.n_train, whole=config.train_size is None)
        if chosen is None:
            raise DropcliError("this run kept no validation images (--validation-size 0); use --split test")
    else:
        chosen = data.test
    if note and term is not None:
        term.note(f"Note: {note}")
    return params, config, info, device, chosen, describe(data.identity, data.source)


def run_evaluate(run: Path, split: str, mc_samples: int, csv: Path | None, data_dir, device_name: str,
                 term: Terminal) -> None:
    """Print which data is scored, accuracy and loss with dropout off (and MC-dropout accuracy
    over mc_samples passes when > 0) and a per-class table for the `split` ('test' or
    'validation') of the run's data or --data-dir (load_split); with `csv`, write per-class
    accuracy and the confusion matrix there. Raises DropcliError as load_split does, WriteError
    when the CSV cannot be written."""
    from rich.table import Table

    from dropcli.evaluation import evaluate
    from dropcli.report import per_class_frame
    from dropcli.tables import write_csv

    mc_option = f"--mc-samples {mc_samples}" if mc_samples else None
    params, config, info, device, data, name = load_split(run, split, data_dir, device_name, term, mc_option)
    term.result(f"Data: {name}, {split} split, {len(data):,} images")
    r = evaluate(params, config, data, device, mc_samples=mc_samples)
    term.result(f"Accuracy: {r.accuracy:.4f}")
    term.result(f"Loss: {r.loss:.6f}")
    if r.mc_accuracy is not None:
        term.result(f"MC dropout accuracy ({mc_samples} passes): {r.mc_accuracy:.4f}")
    frame = per_class_frame(r)
    table = Table(title="Per-class accuracy", caption=f"{split} split, {len(r.labels):,} images, dropout off")
    for name in ("class", "images", "correct", "accuracy"):
        table.add_column(name, justify="right")
    for c, images, correct, accuracy in frame[["class", "images", "correct", "accuracy"]].itertuples(False, None):
        table.add_row(str(c), f"{images:,}", f"{correct:,}", f"{accuracy:.4f}")
    term.table(table)
    if csv:
        write_csv(frame, csv)
        term.note_path("Wrote per-class accuracy and the confusion matrix to", csv)


def run_mc_curve(run: Path, split: str, samples: tuple[int, ...], repeats: int, csv: Path | None, data_dir,
                 device_name: str, term: Terminal) -> None:
    """Monte-Carlo dropout accuracy against the number of passes (`samples`, each curve `repeats`
    times), beside weight scaling (dropout off), on the data load_split finds and names; with
    `csv`, the curve there and its plot beside it (.png). Raises UsageError for a run trained
    without dropout (config.check_monte_carlo), DropcliError as load_split does; WriteError when a
    file cannot be written."""
    from rich.table import Table

    from dropcli.displays import CountDisplay
    from dropcli.evaluation import evaluate, mc_curve
    from dropcli.plot_curves import plot_mc_curve
    from dropcli.report import mc_curve_frame
    from dropcli.tables import write_csv

    params, config, info, device, data, name = load_split(run, split, data_dir, device_name, term,
                                                          "--mc-curve " + ",".join(map(str, samples)))
    term.result(f"Data: {name}, {split} split, {len(data):,} images")
    scaled = evaluate(params, config, data, device).accuracy
    total, done = max(samples) * repeats, [0]
    with term.board() as board:
        display = CountDisplay(board, f"dropout passes ({repeats} repeats of {max(samples):,})")
        display(0, total)

        def on_pass() -> None:
            done[0] += 1
            display(done[0], total)

        rows = mc_curve(params, config, data, samples, repeats, on_pass=on_pass)
    frame = mc_curve_frame(rows, scaled, len(data))
    table = Table(title="Monte-Carlo dropout", caption=f"{split} split, {len(data):,} images, {repeats} repeats; "
                                                        f"weight scaling {scaled:.4f}")
    for name in ("samples", "accuracy (mean)", "± std", "min", "max", "vs weight scaling"):
        table.add_column(name, justify="right")
    for r in frame.itertuples():
        table.add_row(str(r.samples), f"{r.accuracy_mean:.4f}", f"{r.accuracy_std:.4f}", f"{r.accuracy_min:.4f}",
                      f"{r.accuracy_max:.4f}", f"{r.accuracy_mean - scaled:+.4f}")
    term.table(table)
    if csv:
        write_csv(frame, csv)
        png = plot_mc_curve(frame, csv.with_suffix(".png"), f"{config.keep_label} keep, {split} split")
        term.wrote(csv.parent, [csv.name, png.name])


def run_predict(run: Path, images: list[Path], index: int | None, invert: bool | None, mc_samples: int, data_dir,
                device_name: str, term: Terminal, rng: random.Random) -> None:
    """Print the prediction for each image file (made into an MNIST digit by images.load_image,
    with a note for an image far from MNIST's; one without a digit is refused), or for test image `index` (random from `rng`
    when None) of the run's data or --data-dir (load_split, which names the data). mc_samples
    > 0: mean probability, its std and the entropy over that many dropout-on passes. Raises
    UsageError for an unreadable image (before anything else is loaded), DropcliError as
    load_split does."""
    import torch

    from dropcli.evaluation import probabilities

    mc_option = f"--mc-samples {mc_samples}" if mc_samples else None
    if images:
        import numpy as np

        from dropcli.device import resolve_device
        from dropcli.images import load_image

        loaded = [load_image(p, invert) for p in images]  # refuse a bad file before loading anything else
        device = resolve_device(device_name)  # before torch computes (load_checked_run's checks do)
        params, config, _ = load_checked_run(run, mc_option)
        x = torch.from_numpy(np.stack([d.x.reshape(784) for d in loaded])).to(device)
        labels = [None] * len(images)
        names = [f"{p}{' (inverted: dark ink on light paper)' if d.inverted and invert is None else ''}"
                 for p, d in zip(images, loaded)]
        for p, d in zip(images, loaded):
            for note in d.notes:
                term.note(f"Note: {p}: {note}")
    else:
        params, config, _, device, test, name = load_split(run, "test", data_dir, device_name, term, mc_option)
        i = index if index is not None else rng.randrange(len(test))
        term.result(f"Data: {name}, test image {i}")
        x, labels, names = test.x[i : i + 1], [int(test.y[i])], [f"test image {i}"]
    mean, std = probabilities(params, x, config, mc_samples, seed=config.seed)
    for j, name in enumerate(names):
        p = mean[j]
        pred = int(p.argmax())
        if len(names) > 1 or images:
            term.result(f"{name}:")
        if labels[j] is not None:
            term.result(f"Label: {labels[j]}")
        if std is None:
            term.result(f"Prediction: {pred} (probability {float(p[pred]):.4f})")
        else:
            entropy = max(0.0, float(-(p * p.clamp_min(1e-12).log()).sum()))  # a certain prediction: 0, never -0.0000
            term.result(f"Prediction: {pred} (mean probability {float(p[pred]):.4f} ± {float(std[j, pred]):.4f}, "
                        f"entropy {entropy:.4f} nats over {mc_samples} passes)")
