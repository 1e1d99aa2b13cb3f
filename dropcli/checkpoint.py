"""Save and load weights with their metadata as safetensors: nothing is ever unpickled.

    $ dropcli evaluate results/runs/20261127-203000-keep0.7-seed777

A checkpoint holds `layers.{i}.weight` (in, out) and `layers.{i}.bias` tensors, and JSON
metadata: the full TrainConfig, the dataset and split, the run's accuracies and the versions
that produced it. A file without that metadata, or whose tensors do not match it, is refused.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

import torch

from dropcli import __version__
from dropcli.config import TrainConfig
from dropcli.errors import DropcliError
from dropcli.files import atomic_write
from dropcli.model import Params

FORMAT = "dropcli-checkpoint/1"
FILENAME = "model.safetensors"


def versions() -> dict:
    import numpy

    return {"dropcli": __version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "python": platform.python_version()}


def save_checkpoint(path: str | Path, params: Params, config: TrainConfig, info: dict) -> Path:
    from safetensors.torch import save_file

    tensors = {}
    for i, (W, b) in enumerate(params):
        tensors[f"layers.{i}.weight"] = W.detach().cpu().contiguous()
        tensors[f"layers.{i}.bias"] = b.detach().cpu().contiguous()
    meta = {"format": FORMAT, "config": config.to_json(), "info": json.dumps(info, sort_keys=True, default=str),
            "versions": json.dumps(versions())}
    return atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))


def resolve(path: str | Path) -> Path:
    p = Path(path)
    if p.is_dir():
        p = p / FILENAME
    if not p.is_file():
        raise DropcliError(f"no checkpoint at {path}; give a run directory written by 'dropcli train' or its {FILENAME}")
    return p


def load_checkpoint(path: str | Path) -> tuple[Params, TrainConfig, dict]:
    """Return (params, config, info) or raise DropcliError saying why the file is refused."""
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
        params.append((W.float(), b.float()))
    if tensors:
        raise DropcliError(f"{p} holds tensors of another architecture ({', '.join(sorted(tensors)[:3])}); use a dropcli checkpoint")
    return params, config, info
