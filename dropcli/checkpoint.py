"""A run folder and its weights, saved and loaded safely: nothing is ever unpickled.

    $ dropcli train --out results/runs/tutorial      # writes the three files below
    $ dropcli evaluate results/runs/tutorial

A run folder holds `model.safetensors` (the final weights, `layers.{i}.weight` (in, out) and
`layers.{i}.bias`, with JSON metadata: the full TrainConfig, the dataset and split, the run's
accuracies and the versions that produced it), `history.csv` (one row per epoch) and `run.json`
(all of it, and the command, as JSON). A file without that metadata, whose tensors do not match
it, or whose weights are not finite is refused.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import torch

from dropcli.config import TrainConfig
from dropcli.errors import DropcliError
from dropcli.files import atomic_write, atomic_write_text
from dropcli.model import Params
from dropcli.provenance import versions

FORMAT = "dropcli-checkpoint/1"
FILENAME = "model.safetensors"
HISTORY_COLUMNS = ("epoch", "cost", "train_batch_accuracy", "validation_accuracy", "seconds")


def save_checkpoint(path: str | Path, params: Params, config: TrainConfig, info: dict) -> Path:
    from safetensors.torch import save_file

    tensors = {}
    for i, (W, b) in enumerate(params):
        tensors[f"layers.{i}.weight"] = W.detach().cpu().contiguous()
        tensors[f"layers.{i}.bias"] = b.detach().cpu().contiguous()
    meta = {"format": FORMAT, "config": config.to_json(), "info": json.dumps(json_safe(info), sort_keys=True),
            "versions": json.dumps(versions())}
    return atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))


def json_safe(value):
    """NaN and infinities as null (bare NaN is not JSON: JavaScript's JSON.parse refuses it)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def save_run(out: Path, result, info: dict, record: dict) -> Path:
    """Write a run folder: weights (with config and info), history.csv and run.json. If the folder
    cannot be written after training, the weights go to a new temporary folder and the error says
    where, so that no trained run is lost."""
    import pandas as pd

    from dropcli.tables import write_csv

    try:
        save_checkpoint(out / FILENAME, result.params, result.config, info)
    except DropcliError as e:
        rescue = Path(tempfile.mkdtemp(prefix="dropcli-rescued-run-"))
        save_checkpoint(rescue / FILENAME, result.params, result.config, info)
        atomic_write_text(rescue / "run.json", json.dumps(json_safe(record), indent=2) + "\n")
        raise DropcliError(f"{e}; the trained weights and run.json are saved in {rescue}") from None
    write_csv(pd.DataFrame(result.history, columns=list(HISTORY_COLUMNS)), out / "history.csv")
    atomic_write_text(out / "run.json", json.dumps(json_safe(record), indent=2) + "\n")
    return out


def resolve(path: str | Path) -> Path:
    p = Path(path)
    if p.is_dir():
        p = p / FILENAME
    if not p.is_file():
        raise DropcliError(f"no checkpoint at {path}; give a run directory written by 'dropcli train' or its {FILENAME}")
    return p


def load_run(path: str | Path) -> tuple[Params, TrainConfig, dict]:
    """Return (params, config, info) of a run folder or checkpoint, or raise DropcliError saying
    why the file is refused."""
    from safetensors import safe_open

    p = resolve(path)
    try:
        with safe_open(str(p), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception:  # SafetensorError, OSError, ...: corrupt, truncated or foreign
        raise DropcliError(f"{p} is not a readable safetensors file (corrupt or not a checkpoint); retrain with 'dropcli train'") from None
    if meta.get("format") != FORMAT:
        raise DropcliError(f"{p} was not written by dropcli (no {FORMAT} metadata); give a checkpoint from 'dropcli train'")
    try:
        config = TrainConfig.from_dict(json.loads(meta["config"]))
        info = json.loads(meta.get("info", "{}"))
        if not isinstance(info, dict):
            raise ValueError("info is not a JSON object")
    except (KeyError, ValueError, TypeError) as e:
        raise DropcliError(f"{p} has unreadable dropcli metadata ({e}); retrain with 'dropcli train'") from None
    params = []
    sizes = config.sizes
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        W, b = tensors.pop(f"layers.{i}.weight", None), tensors.pop(f"layers.{i}.bias", None)
        if W is None or b is None or tuple(W.shape) != (fan_in, fan_out) or tuple(b.shape) != (fan_out,):
            found = "missing" if W is None or b is None else f"{tuple(W.shape)} and {tuple(b.shape)}"
            raise DropcliError(
                f"{p} does not hold the {'-'.join(map(str, sizes))} network its metadata describes "
                f"(layer {i}: expected ({fan_in}, {fan_out}) weights, found {found}); use the checkpoint of that run"
            )
        if not (W.is_floating_point() and b.is_floating_point()):
            raise DropcliError(f"{p} holds {W.dtype} weights in layer {i}, not floats; use a checkpoint from 'dropcli train'")
        W, b = W.float(), b.float()
        if not (torch.isfinite(W).all() and torch.isfinite(b).all()):
            raise DropcliError(f"{p} has NaN or infinite weights in layer {i} (the run diverged?); "
                               "retrain with a lower --lr or a higher --keep-prob")
        params.append((W, b))
    if tensors:
        raise DropcliError(f"{p} holds tensors of another architecture ({', '.join(sorted(tensors)[:3])}); use a dropcli checkpoint")
    return params, config, info
