"""The body of train: call the library, then print through the Terminal (evaluate and predict:
eval_commands.py).

cli.py parses and validates; these functions do the work and say what happened. Library calls
raise DropcliError for failures, which the CLI turns into one line and its exit status.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

from dropcli.config import TrainConfig
from dropcli.errors import DropcliError
from dropcli.terminal import Terminal, as_interrupt, interrupt_code, interrupt_name


def duration(seconds: float) -> str:
    """Seconds as a person reads them: '45s', '3m 05s', '2h 10m'."""
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h {m:02d}m" if h else (f"{m}m {s:02d}s" if m else f"{s}s")


def load_modules() -> None:
    """Import every module of dropcli now. A long command (an `ablate` of hours) imports its report
    code at its end; were the installed code upgraded or edited in between, that one process would
    mix two versions of dropcli (an ImportError after the last cell). Costs well under a second."""
    import importlib
    import pkgutil

    import dropcli

    for module in pkgutil.iter_modules(dropcli.__path__):
        if module.name != "__main__":
            importlib.import_module(f"dropcli.{module.name}")


def run_train(config: TrainConfig, device_name: str, out: Path, default_out: bool, term: Terminal,
              command: str = "", rng: random.Random | None = None) -> Path:
    """Train `config` on `device_name` ('auto', 'cpu', 'cuda:N', ...), print the tutorial's lines
    through `term`, and save the run folder (checkpoint.save_run) at `out`, claimed first (with
    default_out, a taken default name gets a suffix); returns the folder. The data's identity
    (data.data_identity) and the split's sizes, read from the files, are recorded with the run.
    `rng` picks the random test image shown at the end (default: unseeded). Progress: a
    displays.TrainDisplay from the first moment (starting, loading the data, epochs and batches with
    their ETAs, the final evaluation; a line per epoch in a log). Raises DropcliError (usage errors
    as UsageError) for anything that stops the run; SystemExit after an interrupt."""
    from dropcli.displays import TrainDisplay

    claimed: list[Path] = []
    try:
        with term.board() as board:
            display = TrainDisplay(board, config)
            display.status("starting", log=False)
            started, data, result = _train(config, device_name, out, default_out, term, display, claimed)
    except DropcliError:
        _remove_if_empty(claimed)
        raise
    except BaseException as caught:
        e = as_interrupt(caught)
        if e is None:
            raise
        _remove_if_empty(claimed)
        term.interrupted(f"Interrupted ({interrupt_name(e)}): the run was not finished and nothing was saved.")
        raise SystemExit(interrupt_code(e)) from None
    from dropcli.checkpoint import save_run
    from dropcli.evaluation import probabilities
    from dropcli.provenance import cpu_model, utc_now, versions

    out = claimed[0]
    term.result("Learning Finished!")
    sample = None
    if result.status == "ok":
        term.result(f"Accuracy: {result.test_accuracy:.4f}")
        if result.test_accuracy_mc is not None:
            term.result(f"MC dropout accuracy ({config.mc_samples} passes): {result.test_accuracy_mc:.4f}")
        i = (rng or random.Random()).randrange(len(data.test))  # as the tutorial: one random test image
        probs, _ = probabilities(result.params, data.test.x[i : i + 1])
        sample = {"index": i, "label": int(data.test.y[i]), "prediction": int(probs.argmax(1))}
        term.result(f"Label: {sample['label']}")
        term.result(f"Prediction: {sample['prediction']}")
    part_size = len(data.train_full) - config.validation_size  # from the files, not a constant
    split = {"validation_size": config.validation_size, "train_size": config.n_train,
             "subset": "all" if config.n_train == part_size else config.subset, "test_size": len(data.test)}
    schedule = {"steps": config.total_steps, "epochs": config.epochs, "eval_every": config.eval_interval}  # as run
    info = {"dataset": config.dataset, "data": data.identity, "source": data.source, "split": split,
            "schedule": schedule, "metrics": result.metrics(),
            "cpu": cpu_model(), "started_at": started, "finished_at": utc_now()}
    record = {"command": command, "config": config.to_dict(), **info, "random_test_image": sample,
              "history": result.history, "versions": versions()}
    save_run(out, result, info, record)
    if result.status != "ok":
        raise DropcliError(f"training diverged (the cost became NaN or infinite at epoch {len(result.history)}; "
                           f"its history is saved in {out}); lower --lr or raise --keep-prob")
    term.note_path("Saved run to", out)
    return out


def _remove_if_empty(claimed: list[Path]) -> None:
    if claimed and claimed[0].is_dir() and not any(claimed[0].iterdir()):
        claimed[0].rmdir()  # the run folder this command claimed and never wrote


def _train(config: TrainConfig, device_name: str, out: Path, default_out: bool, term: Terminal, display,
           claimed: list[Path]):
    """run_train's checks and training, labelled on `display` (displays.TrainDisplay); the run
    folder, once claimed, is appended to `claimed`. Returns (start time, data set, train.RunResult)."""
    from dropcli.data import load_dataset
    from dropcli.device import check_precision, resolve_device
    from dropcli.files import new_run_folder
    from dropcli.plan import check_memory
    from dropcli.provenance import utc_now
    from dropcli.train import train

    started = utc_now()
    device = resolve_device(device_name)
    check_precision(config.precision, device)
    check_memory(config, device)
    claimed.append(new_run_folder(out, exclusive_name=default_out))  # claimed, and writable, before any training
    display.status(f"loading the data ({config.dataset})")
    data = load_dataset(config.dataset, config.data_dir, device)
    data.part(config.validation_size, config.n_train, whole=config.train_size is None)  # sizes, before training
    display.start()

    def on_epoch(epoch: int, records: list[dict]) -> None:
        r = records[0]
        val = "" if math.isnan(r["validation_accuracy"]) else f"  validation accuracy = {r['validation_accuracy']:.4f}"
        where = (f"Epoch: {epoch:04d}" if r["step"] == epoch * config.steps_per_epoch  # the tutorial's line
                 else f"Step: {r['step']:06d} (epoch {epoch})")  # a validation within an epoch
        term.result(f"{where} cost = {r['cost']:.9f}{val}")
        display.on_epoch(epoch, r["step"])

    return started, data, train(config, data, device, on_epoch=on_epoch, on_step=display.on_step)
