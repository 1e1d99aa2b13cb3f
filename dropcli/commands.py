"""The bodies of the commands: call the library, then print (stdout) and draw progress (stderr).

cli.py parses and validates; this module is where results meet the terminal. Library calls
raise DropcliError for failures; cli.py turns those into one line and exit status 1.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path
from typing import Callable

import typer

from dropcli.config import GridSpec, TrainConfig
from dropcli.errors import DropcliError
from dropcli.terminal import stdout_console

Echo = Callable[[str], None]


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def duration(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h {m:02d}m" if h else (f"{m}m {s:02d}s" if m else f"{s}s")


def run_train(config: TrainConfig, device_name: str, out: Path, echo: Echo, progress, command: str = "",
              rng=None) -> None:
    import random

    import pandas as pd

    from dropcli.checkpoint import save_checkpoint, versions
    from dropcli.data import load_dataset
    from dropcli.files import atomic_write_text
    from dropcli.report import write_csv
    from dropcli.train import check_precision, probabilities, resolve_device, train

    started = now()
    device = resolve_device(device_name)
    check_precision(config.precision, device)
    data = load_dataset(config.dataset, config.data_dir, device)
    with progress:
        epochs = progress.add_task("epoch", total=config.epochs)
        batches = progress.add_task("batch", total=config.steps_per_epoch)

        def on_epoch(epoch: int, records: list[dict]) -> None:
            r = records[0]
            val = "" if math.isnan(r["validation_accuracy"]) else f"  validation accuracy = {r['validation_accuracy']:.4f}"
            echo(f"Epoch: {epoch:04d} cost = {r['cost']:.9f}{val}")
            progress.update(epochs, completed=epoch)

        result = train(config, data, device, on_epoch=on_epoch,
                       on_step=lambda s, n: progress.update(batches, completed=s))
    echo("Learning Finished!")
    sample = None
    if result.status == "ok":
        echo(f"Accuracy: {result.test_accuracy:.4f}")
        if result.test_accuracy_mc is not None:
            echo(f"MC dropout accuracy ({config.mc_samples} passes): {result.test_accuracy_mc:.4f}")
        i = (rng or random.Random()).randrange(len(data.test))  # as the tutorial: one random test image
        probs, _ = probabilities(result.params, data.test.x[i : i + 1])
        sample = {"index": i, "label": int(data.test.y[i]), "prediction": int(probs.argmax(1))}
        echo(f"Label: {sample['label']}")
        echo(f"Prediction: {sample['prediction']}")
    split = {"validation_size": config.validation_size, "train_size": config.n_train, "test_size": len(data.test)}
    info = {"dataset": config.dataset, "source": data.source, "split": split, "metrics": result.metrics(),
            "started_at": started, "finished_at": now()}
    save_checkpoint(out / "model.safetensors", result.params, config, info)
    write_csv(pd.DataFrame(result.history), out / "history.csv")
    record = {"command": command, "config": config.to_dict(),
              **info, "random_test_image": sample, "history": result.history, "versions": versions()}
    atomic_write_text(out / "run.json", json.dumps(record, indent=2, default=str) + "\n")
    typer.echo(f"Saved run to {out}", err=True)
    if result.status != "ok":
        raise DropcliError(f"training diverged (the cost became NaN or infinite at epoch {len(result.history)}); "
                           "lower --lr or raise --keep-prob")


def load_split(run: Path, split: str, data_dir, device_name: str):
    from dropcli.checkpoint import load_checkpoint
    from dropcli.data import load_dataset
    from dropcli.train import resolve_device

    params, config, info = load_checkpoint(run)
    device = resolve_device(device_name)
    data = load_dataset(config.dataset, str(data_dir) if data_dir else config.data_dir, device)
    train_split, val = data.split(config.validation_size, config.train_size)
    if split == "validation" and val is None:
        raise DropcliError("this run kept no validation images (--validation-size 0); use --split test")
    return params, config, info, device, (val if split == "validation" else data.test)


def run_evaluate(run: Path, split: str, mc_samples: int, csv: Path | None, data_dir, device_name: str, echo: Echo) -> None:
    from rich.table import Table

    from dropcli.report import per_class_frame, write_csv
    from dropcli.train import evaluate

    params, config, info, device, data = load_split(run, split, data_dir, device_name)
    r = evaluate(params, config, data, device, mc_samples=mc_samples)
    echo(f"Accuracy: {r.accuracy:.4f}")
    echo(f"Loss: {r.loss:.6f}")
    if r.mc_accuracy is not None:
        echo(f"MC dropout accuracy ({mc_samples} passes): {r.mc_accuracy:.4f}")
    frame = per_class_frame(r)
    table = Table(title=f"Per-class accuracy, {split} split ({len(r.labels):,} images, dropout off)")
    for name in ("class", "images", "correct", "accuracy"):
        table.add_column(name, justify="right")
    for c, images, correct, accuracy in frame[["class", "images", "correct", "accuracy"]].itertuples(False, None):
        table.add_row(str(c), f"{images:,}", f"{correct:,}", f"{accuracy:.4f}")
    stdout_console().print(table)
    if csv:
        write_csv(frame, csv)
        typer.echo(f"Wrote per-class accuracy and the confusion matrix to {csv}", err=True)


def load_image(path: Path, invert: bool):
    import numpy as np
    import torch
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("L").resize((28, 28), Image.Resampling.LANCZOS)
            x = np.asarray(im, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError):
        raise typer.BadParameter(f"{path} is not a readable image; give a PNG or JPEG of a digit",
                                 param_hint="IMAGES") from None
    x = 1.0 - x if invert else x
    return torch.from_numpy(x.reshape(1, 784).copy())


def run_predict(run: Path, images: list[Path], index: int | None, invert: bool, mc_samples: int, data_dir,
                device_name: str, echo: Echo, rng) -> None:
    import torch

    from dropcli.train import probabilities

    if images:
        from dropcli.checkpoint import load_checkpoint
        from dropcli.train import resolve_device

        xs = torch.cat([load_image(p, invert) for p in images])  # refuse a bad file before loading anything else
        params, config, _ = load_checkpoint(run)
        device = resolve_device(device_name)
        x, labels, names = xs.to(device), [None] * len(images), [str(p) for p in images]
    else:
        params, config, _, device, test = load_split(run, "test", data_dir, device_name)
        i = index if index is not None else rng.randrange(len(test))
        x, labels, names = test.x[i : i + 1], [int(test.y[i])], [f"test image {i}"]
    mean, std = probabilities(params, x, config, mc_samples, seed=config.seed)
    for j, name in enumerate(names):
        p = mean[j]
        pred = int(p.argmax())
        if len(names) > 1 or images:
            echo(f"{name}:")
        if labels[j] is not None:
            echo(f"Label: {labels[j]}")
        if std is None:
            echo(f"Prediction: {pred} (probability {float(p[pred]):.4f})")
        else:
            entropy = float(-(p * p.clamp_min(1e-12).log()).sum())
            echo(f"Prediction: {pred} (mean probability {float(p[pred]):.4f} ± {float(std[j, pred]):.4f}, "
                 f"entropy {entropy:.4f} nats over {mc_samples} passes)")


def run_ablate(cells: list[TrainConfig], spec: GridSpec, base: TrainConfig, device_name: str, out: Path,
               parallel_models: int, fresh: bool, dry_run: bool, echo: Echo, progress, resume: str) -> None:
    from dropcli.ablate import StudyProgress, build_report, done_keys, run_study, study_identity
    from dropcli.train import check_precision, resolve_device

    device = resolve_device(device_name)
    check_precision(base.precision, device)
    identity = study_identity(spec, base)
    if dry_run:
        return dry_run_table(cells, out, identity, device, parallel_models, fresh, echo)
    state = {"done": len(done_keys(out)) if not fresh and (out / "study.json").exists() else 0}

    def on_group(gi: int, n: int, group: list[TrainConfig]) -> None:
        c = group[0]
        progress.update(epoch_task, description=f"group {gi + 1}/{n}: {len(group)} cells, {c.n_train:,} images",
                        total=c.epochs, completed=0)
        progress.update(step_task, total=c.steps_per_epoch, completed=0)

    def on_cell(row: dict) -> None:
        state["done"] += 1
        progress.update(cells_task, completed=state["done"])

    try:
        with progress:
            cells_task = progress.add_task("cells done", total=len(cells), completed=state["done"])
            epoch_task = progress.add_task("epoch", total=base.epochs)
            step_task = progress.add_task("batch", total=base.steps_per_epoch)
            counts = run_study(cells, out, identity, device, parallel_models, fresh, StudyProgress(
                on_group=on_group, on_epoch=lambda e, recs: progress.update(epoch_task, completed=e),
                on_step=lambda s, n: progress.update(step_task, completed=s), on_cell=on_cell))
    except KeyboardInterrupt:
        done = len(done_keys(out))
        typer.echo(f"Interrupted: {done} of {len(cells)} cells are saved in {out / 'runs.csv'}; "
                   f"{len(cells) - done} remain. Resume with: {resume}", err=True)
        raise SystemExit(130) from None
    if counts["skipped"]:
        typer.echo(f"Resumed: {counts['skipped']} cells were already in {out / 'runs.csv'}, ran {counts['ran']}.", err=True)
    summary = build_report(out)
    stdout_console().print(summary_table_for(summary, out))
    typer.echo(f"Wrote {', '.join(str(out / f) for f in ('runs.csv', 'summary.csv', 'history.csv', 'ablation.png'))}", err=True)


def summary_table_for(summary, out: Path):
    from dropcli.report import summary_table

    return summary_table(summary, title=f"Ablation summary ({out})")


def dry_run_table(cells, out: Path, identity: dict, device, parallel_models: int, fresh: bool, echo: Echo) -> None:
    from rich.table import Table

    from dropcli.ablate import config_key, done_keys, same_study
    from dropcli.groups import auto_parallel_models, estimate_seconds, plan_groups

    done = done_keys(out) if not fresh and same_study(out, identity) else set()
    todo = [c for c in cells if config_key(c) not in done]
    k = parallel_models or (auto_parallel_models(device, todo) if todo else 1)
    groups = plan_groups(todo, k) if todo else []
    group_of = {config_key(c): gi + 1 for gi, g in enumerate(groups) for c in g}
    table = Table(title=f"{len(cells)} cells, {len(todo)} to run")
    for name in ("keep", "input keep", "train size", "seed", "epochs", "group"):
        table.add_column(name, justify="right")
    for c in cells:
        key = config_key(c)
        table.add_row(c.keep_label, f"{c.input_keep_prob:g}", f"{c.n_train:,}", str(c.seed), str(c.epochs),
                      str(group_of[key]) if key in group_of else "done")
    stdout_console().print(table)
    if not todo:
        echo(f"Nothing to run: every cell is already in {out / 'runs.csv'}.")
        return
    seconds = estimate_seconds(groups, device)
    echo(f"Would run {len(todo)} cells in {len(groups)} lockstep group(s) of up to {k} on {device}; "
         f"estimated {duration(seconds)} (timed from a few steps on this machine). Nothing was trained.")


def run_report(out: Path, echo: Echo) -> None:
    from dropcli.ablate import build_report

    summary = build_report(out)
    stdout_console().print(summary_table_for(summary, out))
    typer.echo(f"Wrote {out / 'summary.csv'} and {out / 'ablation.png'}", err=True)
