"""A run folder and its weights, saved and loaded safely: nothing is ever unpickled.

    $ dropcli train --out results/runs/tutorial      # writes the three files below
    $ dropcli evaluate results/runs/tutorial

A run folder holds `model.safetensors` (the final weights, `layers.{i}.weight` (in, out) and
`layers.{i}.bias`, with JSON metadata: the full TrainConfig, the data it was trained on (name,
SHA-256 of its files, sizes) and the split, the run's accuracies and the versions that produced
it), `history.csv` (one row per validation: each epoch, or every --eval-every steps) and `run.json`
(all of it, and the command, as JSON). A file whose metadata does not fit its one schema
(run_schema.py), whose tensors do not match it, or whose weights are not finite is refused. Every
file goes through files.atomic_write, so a full disk is one line, and the trained run is rescued
to another folder (save_run).
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import tempfile
from pathlib import Path

import torch

from dropcli.config import TrainConfig
from dropcli.errors import DropcliError, UsageError
from dropcli.files import atomic_write, atomic_write_text
from dropcli.model import Params
from dropcli.provenance import versions

FORMAT = "dropcli-checkpoint/1"
FILENAME = "model.safetensors"
RUN_FILES = (FILENAME, "history.csv", "run.json")
HISTORY_COLUMNS = ("epoch", "step", "cost", "train_batch_accuracy", "validation_accuracy", "seconds")


def save_checkpoint(path: str | Path, params: Params, config: TrainConfig, info: dict) -> Path:
    """Write `params` (per layer (W (in, out), b (out,)), any device) as float tensors
    `layers.{i}.weight` and `layers.{i}.bias`, with the config, `info` (JSON-safe) and versions as
    metadata, atomically to `path`; returns `path`. Raises WriteError (files.atomic_write) for
    any failure to write, safetensors' own included."""
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


def _write_run(folder: Path, result, info: dict, record: dict) -> None:
    import pandas as pd

    from dropcli.tables import write_csv

    save_checkpoint(folder / FILENAME, result.params, result.config, info)
    write_csv(pd.DataFrame(result.history, columns=list(HISTORY_COLUMNS)), folder / "history.csv")
    atomic_write_text(folder / "run.json", json.dumps(json_safe(record), indent=2) + "\n")


RESCUE_PLACES = (None, Path.home())  # None: the system's temporary folder ($TMPDIR, else /tmp)


def save_run(out: Path, result, info: dict, record: dict) -> Path:
    """Write a run folder: weights (with config and info), history.csv and run.json; returns `out`.

    `result` is a train.RunResult; `info` goes into the weights' metadata, `record` into
    run.json. If any of the three cannot be written (a full disk, whatever the library raises),
    all three go to a new folder dropcli-rescued-run-* in the first of RESCUE_PLACES that takes
    them, and the DropcliError raised names it, so that no trained run is lost (what was written
    into `out`, a folder claimed for this run, is removed); if none takes them, the error says so
    and `out` keeps what it got."""
    try:
        _write_run(out, result, info, record)
        return out
    except DropcliError as e:
        failure = e
    problems = []
    for place in RESCUE_PLACES:
        try:
            rescue = Path(tempfile.mkdtemp(prefix="dropcli-rescued-run-", dir=place))
        except OSError as e:
            problems.append(f"{place or tempfile.gettempdir()}: {e.strerror or e}")
            continue
        try:
            _write_run(rescue, result, info, record)
        except DropcliError as e:
            shutil.rmtree(rescue, ignore_errors=True)  # the folder mkdtemp just made for us
            problems.append(str(e))
            continue
        for name in RUN_FILES:  # what this call wrote into `out` (a folder claimed for this run) before failing
            (out / name).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            out.rmdir()  # only if empty
        raise DropcliError(f"{failure}; the trained run (weights, history.csv, run.json) is saved in {rescue}") from None
    raise DropcliError(f"{failure}; the trained run could not be saved elsewhere either ({'; '.join(problems)}); "
                       "free some space and train again") from None


def resolve(path: str | Path) -> Path:
    """A run folder's model.safetensors, or the file given; UsageError (exit 2: the command names no
    run) if there is none."""
    p = Path(path)
    if p.is_dir():
        p = p / FILENAME
    if not p.is_file():
        raise UsageError(f"no checkpoint at {path}; give a run directory written by 'dropcli train' or its {FILENAME}")
    return p


def load_run(path: str | Path) -> tuple[Params, TrainConfig, dict]:
    """Return (params, config, info) of a run folder or checkpoint: params per layer (W (in, out),
    b (out,)) float32 on the CPU; info as run_schema.parse_metadata checked it (its `data` is the
    run's data identity, absent for runs from before they were recorded). Raises DropcliError
    saying why the file is refused: unreadable, foreign, metadata of the wrong shape or type,
    tensors that do not match the config, or weights that are not finite."""
    from safetensors import safe_open

    from dropcli.run_schema import parse_metadata

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
        config, info = parse_metadata(meta)
    except ValueError as e:
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
        for name, t in (("weight", W), ("bias", b)):
            if not t.is_floating_point():
                raise DropcliError(f"{p} holds layers.{i}.{name} as {str(t.dtype).removeprefix('torch.')}, not floats; "
                                   "use a checkpoint from 'dropcli train'")
        if not (torch.isfinite(W).all() and torch.isfinite(b).all()):
            raise DropcliError(f"{p} has NaN or infinite weights in layer {i} (the run diverged?); "
                               "retrain with a lower --lr or a higher --keep-prob")
        params.append((W, b))
    if tensors:
        raise DropcliError(f"{p} holds tensors of another architecture ({', '.join(sorted(tensors)[:3])}); use a dropcli checkpoint")
    bound = output_bound(params, config)  # of the stored values: a float64 1e300 is not float32's inf
    if not bound <= MAX_OUTPUT:
        raise DropcliError(f"{p} has weights so large that the network's outputs can reach {bound:.1e}, which float32 "
                           "evaluation cannot hold; no working training run has them: retrain with 'dropcli train'")
    return [(W.float(), b.float()) for W, b in params], config, info


# the largest output bound accepted: the outputs, their differences (softmax, cross-entropy) and a loss
# summed over a million images stay finite in float32 (a trained tutorial network's bound is about 5e8)
MAX_OUTPUT = float(torch.finfo(torch.float32).max) / 2**21


def output_bound(params: Params, config: TrainConfig) -> float:
    """The largest |output| (logit) that any input in [0, 1]^784 can give, dropout on or off: each
    layer's inputs bounded by |W| and |b| in float64, scaled by 1/keep as a dropout pass scales its
    kept units. Finite float32 weights can still overflow float32 in the forward pass (a weight of
    3e38 gave a loss of inf; a bias of +-3e38 outputs whose difference does): see MAX_OUTPUT."""
    keep = (config.input_keep_prob, *config.keep_prob, 1.0)
    u = torch.ones(params[0][0].shape[0], dtype=torch.float64)
    for i, (W, b) in enumerate(params):
        u = W.double().abs().T @ (u / keep[i]) + b.double().abs()
    return u.max().item()
