"""The one schema of a checkpoint's metadata, checked (types included) before anything uses it.

    >>> config, info = parse_metadata(safe_open(path, "pt").metadata())

A checkpoint holds JSON texts in its safetensors header: `config` (a TrainConfig), `info` (data,
split, metrics, machine) and `versions`. Each text is bounded in size and depth before it is
parsed (jsonlimits), then validated by pydantic in strict mode: `"seed": 5.5`, `"data_dir": 123`,
`"validation_size": 200.5`, a bool for a number or an unknown config field is refused, then
TrainConfig checks the ranges. The config's schema is built from TrainConfig's own annotations,
so it cannot fall behind the dataclass.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import typing
from typing import Annotated, Optional

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, create_model

from dropcli.config import NotHeld, TrainConfig, held_float, held_int, no_constant
from dropcli.jsonlimits import check_json_text

MAX_CONFIG_CHARS = 65_536  # a config is a few hundred characters
MAX_INFO_CHARS = 1 << 20  # info holds a run's metrics and its data identity: a few kilobytes
STRICT = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)
Hex64 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
Count = Annotated[int, Field(ge=0)]


class DataIdentity(BaseModel):
    """A data set known by its content (data.data_identity): the dataset's name, the SHA-256 over
    its four files, its image counts and each file's SHA-256 (decompressed bytes)."""

    model_config = STRICT
    name: str
    sha256: Hex64
    train_images: Count
    test_images: Count
    files: dict[str, Hex64]


class RunInfo(BaseModel):
    """A checkpoint's `info`: only `data` is read back (to check the data a run is scored on); the
    rest (split, metrics, machine, times) is a record, kept as it is."""

    model_config = ConfigDict(strict=True, extra="allow", allow_inf_nan=False)
    data: Optional[DataIdentity] = None
    dataset: Optional[str] = None


@functools.lru_cache(maxsize=1)
def config_model() -> type[BaseModel]:
    """A strict pydantic model with TrainConfig's fields, annotations and defaults (a field a
    checkpoint lacks takes TrainConfig's default; an unknown field is refused)."""
    hints = typing.get_type_hints(TrainConfig)
    fields = {f.name: (hints[f.name], f.default) for f in dataclasses.fields(TrainConfig)}
    return create_model("CheckpointConfig", __config__=STRICT, **fields)


def _first_error(e: ValidationError, what: str) -> str:
    err = e.errors()[0]
    where = ".".join(str(p) for p in (what, *err["loc"]))
    return f"{where}: {err['msg']}"


def parse_metadata(meta: dict[str, str]) -> tuple[TrainConfig, dict]:
    """(config, info) from a checkpoint's metadata, whose `format` the caller has checked.

    `meta` maps header keys to JSON texts. Raises ValueError with a one-line reason for a missing
    config, a text too long (MAX_CONFIG_CHARS, MAX_INFO_CHARS) or nested deeper than
    jsonlimits.MAX_DEPTH, a value of the wrong type or range, or data recorded for another
    dataset than the config's, or a number a float cannot hold (1e-400; config.held_float). `info` is
    returned as a dict ({} when absent)."""
    if "config" not in meta:
        raise ValueError("no config")
    check_json_text(meta["config"], "config", MAX_CONFIG_CHARS)
    info_text = meta.get("info", "{}")
    check_json_text(info_text, "info", MAX_INFO_CHARS)
    for key, text in (("config", meta["config"]), ("info", info_text)):
        try:  # pydantic's JSON reader reads 1e-400 as 0.0, 1e400 and a 400-digit int as inf, then blames the value
            json.loads(text, parse_float=held_float, parse_int=held_int, parse_constant=no_constant)
        except NotHeld as e:
            raise ValueError(f"{key} holds {e}") from None
        except ValueError:
            pass  # not JSON: pydantic names where
    try:
        fields = config_model().model_validate_json(meta["config"]).model_dump()
    except ValidationError as e:
        raise ValueError(_first_error(e, "config")) from None
    config = TrainConfig(**fields)  # the ranges: ValueError naming the option
    try:
        info = RunInfo.model_validate_json(info_text)
    except ValidationError as e:
        raise ValueError(_first_error(e, "info")) from None
    if info.data is not None and info.data.name != config.dataset:
        raise ValueError(f"info.data names {info.data.name!r}, the config {config.dataset!r}")
    return config, info.model_dump(exclude_unset=True)
