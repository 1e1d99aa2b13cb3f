"""Measured speeds kept per machine: the cells per second of each lockstep group size.

    $ cat ~/.cache/dropcli/group-sizes.json     # ($DROPCLI_DATA_DIR/group-sizes.json where that is set)

groups.choose_parallel_models times a few steps at each group size once per machine (CPU model or
GPU), torch version, dropcli version, torch thread count and network shape (speed_key), and keeps
the rates here, beside the decompressed MNIST (data.cache_dir()), so that later grids of that
shape start training at once. It is only a cache: a missing, unreadable or invalid file (checked by
its pydantic schema) is measured again and replaced, and one that cannot be written is skipped.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, ValidationError

CACHE_FILE = "group-sizes.json"
CACHE_FORMAT = "dropcli-group-sizes/1"
MAX_BYTES = 1 << 20  # a cache of a few hundred shapes is a few tens of kB; a bigger file is not ours


def speed_key(device, c) -> str:
    """What a group size's speed depends on, for a torch.device and a TrainConfig: the machine (CPU
    model, or the GPU), torch, dropcli, torch's current thread count, the network's shape, batch
    size and precision."""
    import torch

    from dropcli import __version__
    from dropcli.provenance import cpu_model, device_description

    machine = device_description(device) if device.type == "cuda" else f"{device.type} on {cpu_model()}"
    return (f"{machine} | torch {torch.__version__} | dropcli {__version__} | {torch.get_num_threads()} threads | "
            f"{'-'.join(map(str, c.sizes))} | batch {c.batch_size} | {c.precision}")


Rate = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class Measured(BaseModel):
    """One speed_key's measurement: {group size: cells per second}, and when it was made (UTC)."""

    rates: dict[Annotated[int, Field(ge=1)], Rate] = Field(min_length=1)
    measured_at: str


class SpeedCache(BaseModel):
    """The cache file: its format and the measurements by speed_key."""

    format: Literal["dropcli-group-sizes/1"]
    entries: dict[str, Measured]


def cache_path():
    """data.cache_dir()/group-sizes.json."""
    from dropcli.data import cache_dir

    return cache_dir() / CACHE_FILE


def read_cache() -> dict[str, Measured]:
    """The cache's entries; {} where it is missing, a link, too big or not a valid cache."""
    try:
        path = cache_path()
        if path.is_symlink() or not path.is_file() or path.stat().st_size > MAX_BYTES:
            return {}
        return SpeedCache.model_validate_json(path.read_bytes()).entries
    except (OSError, ValidationError):
        return {}


def cached_rates(key: str) -> dict[int, float] | None:
    """The measured {group size: cells per second} for a speed_key, or None."""
    entry = read_cache().get(key)
    return dict(entry.rates) if entry else None


def remember_rates(key: str, rates: dict[int, float]) -> None:
    """Add a measurement to the cache (written atomically); a cache that cannot be written is skipped."""
    from dropcli.errors import DropcliError
    from dropcli.files import atomic_write_text
    from dropcli.provenance import utc_now

    entries = read_cache()
    entries[key] = Measured(rates=rates, measured_at=utc_now())
    text = SpeedCache(format=CACHE_FORMAT, entries=entries).model_dump_json(indent=1)
    try:
        path = cache_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text + "\n")
    except (OSError, DropcliError):
        pass
