"""The schemas of the JSON files dropcli reads back: study.json (a study or a shard of one), and
the manifest of an owned folder (owned.py).

    $ dropcli merge DIR        # reads DIR/study.json and DIR/shards/*/study.json through here

Every study.json is read by `read_study_json`, which checks its size before parsing, its shape and
every type after (pydantic), and the grid and settings by building the cells they describe. A file
that fails is refused with one line naming the file and the fix; nothing is "repaired". Formats:
`dropcli-study/3` is written now (it adds the data's content identity); `dropcli-study/2`, written
before, is read through the same model (its tables are migrated on reading, never rewritten), so
`report` and `merge` still read the committed studies, while `ablate` refuses to add cells to them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, ValidationError

from dropcli.config import NotHeld, held_float, held_int, no_constant
from dropcli.errors import DropcliError

MAX_JSON_BYTES = 1 << 20  # a study.json is a few kB; a bigger one is not dropcli's
FORMATS = ("dropcli-study/2", "dropcli-study/3")  # readable formats, oldest first; the last is written


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class GridModel(_Strict):
    """study.json's grid: the axes' values as study_identity writes them."""

    keep_probs: list[StrictStr] = Field(min_length=1)
    input_keep_probs: list[Union[StrictFloat, StrictInt]] = Field(min_length=1)
    max_norms: list[StrictStr] = Field(min_length=1)
    train_sizes: list[StrictInt] = Field(min_length=1)
    lrs: Optional[list[Union[StrictFloat, StrictInt]]] = Field(None, min_length=2)  # absent: settings' lr
    hiddens: Optional[list[list[StrictInt]]] = Field(None, min_length=2)  # absent: settings' hidden
    seeds: list[StrictInt] = Field(min_length=1)


class ShardModel(_Strict):
    """A shard's place: shard `index` of `count` (1-based)."""

    index: StrictInt = Field(ge=1)
    count: StrictInt = Field(ge=1)


class DataModel(_Strict):
    """The data a study trained on: its name and the SHA-256 of its files (data.data_identity)."""

    name: StrictStr
    sha256: StrictStr = Field(pattern=r"^[0-9a-f]{64}$")


class StudyModel(_Strict):
    """A whole study.json (format dropcli-study/2 or /3); settings are TrainConfig fields, checked by building the cells."""

    format: Literal["dropcli-study/2", "dropcli-study/3"]
    settings: dict
    grid: GridModel
    data: Optional[DataModel] = None
    shard: Optional[ShardModel] = None
    dropcli_version: Optional[StrictStr] = None


def load_json(path: Path, what: str, fix: str) -> object:
    """The JSON value in `path`, or DropcliError naming the file: unreadable, over MAX_JSON_BYTES,
    not UTF-8, not JSON, or nested deeper than Python's parser goes."""
    from dropcli.files import regular_file

    try:
        size = regular_file(path, what, fix).stat().st_size
        if size > MAX_JSON_BYTES:
            raise DropcliError(f"{path} has {size:,} bytes, too many for a {what}; {fix}")
        return json.loads(path.read_text(encoding="utf-8"), parse_float=held_float, parse_int=held_int, parse_constant=no_constant)
    except NotHeld as e:
        raise DropcliError(f"{path} holds {e}; {fix}") from None
    except OSError as e:
        raise DropcliError(f"cannot read {path}: {e.strerror}; {fix}") from None
    except (ValueError, RecursionError):
        raise DropcliError(f"{path} is not a {what} (not JSON, or nested too deep); {fix}") from None


def read_study_json(path: Path) -> dict:
    """A study.json checked against StudyModel and against the cells it describes; returns it as a
    dict (the study identity, see grid.study_identity). Raises DropcliError with one line."""
    from dropcli.config import TrainConfig
    from dropcli.grid import cells_of

    fix = "restore it from a copy, or use another folder"
    data = load_json(path, "dropcli study.json", fix)
    if isinstance(data, dict) and data.get("format") not in FORMATS and str(data.get("format", "")).startswith("dropcli-study/"):
        raise DropcliError(f"{path} was written by another dropcli version (format {data['format']!r}); "
                           f"use that version, or a new folder")
    try:
        model = StudyModel.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "the top level"
        raise DropcliError(f"{path} is not a dropcli study.json ({where}: {first['msg']}); {fix}") from None
    if model.shard and model.shard.index > model.shard.count:
        raise DropcliError(f"{path} names shard {model.shard.index} of {model.shard.count}; {fix}")
    identity = model.model_dump(exclude_none=True)
    unknown = sorted(set(identity["settings"]) - set(TrainConfig.__dataclass_fields__))
    if unknown:
        raise DropcliError(f"{path} has an unknown setting {unknown[0]!r}, so it is not dropcli's; {fix}")
    try:
        cells_of(identity)
    except (ValueError, TypeError) as e:
        raise DropcliError(f"{path} describes no valid grid ({e}); {fix}") from None
    return identity


class Content(_Strict):
    """What dropcli wrote under a name: the SHA-256 of its bytes and its size in bytes."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    sha256: StrictStr = Field(pattern=r"^[0-9a-f]{64}$")
    size: StrictInt = Field(ge=0)


class ManifestModel(_Strict):
    """A manifest (.dropcli-manifest.json): each file's recorded contents (one; two while a write is
    under way; None where an earlier dropcli listed the name only), each folder ('name/') with []."""

    format: Literal["dropcli-manifest/2"]
    files: dict[StrictStr, Optional[list[Content]]]


class OldManifest(_Strict):
    """An earlier dropcli's manifest: names only."""

    files: list[StrictStr]


# every name dropcli writes in a folder it claimed (study.TABLES and REPORT_FILES, shards/K-of-N/, slurm/'s
# scripts, logs/ and submitted.json): a manifest listing another name was edited, and is refused whole
MANIFEST_NAMES = re.compile(r"(study\.json|runs\.csv|history\.csv|summary\.csv|(ablation|differences|curves)\.png"
                            r"|report\.html|(shards|slurm|logs|\d+-of-\d+)/|array-\d+\.sbatch|merge\.sbatch|submit\.sh"
                            r"|submitted\.json)")


def _inside(name: str) -> bool:
    """A relative path below a folder: not empty, not '.', no '..', no NUL."""
    parts = Path(name).parts
    return bool(parts) and ".." not in parts and parts[0] != "." and not Path(name).is_absolute() and "\x00" not in name


def read_manifest_file(path: Path) -> dict:
    """A manifest as {name: tuple of Content (files: 1 or 2; folders: ()), or None (listed without
    content)}; an earlier dropcli's list of names reads with every file's content None.
    DropcliError (one line) for anything else: too big, not JSON, another shape, a name outside the
    folder or one dropcli never writes (MANIFEST_NAMES), a file with no or more than two contents."""
    fix = "restore it from a copy or use another folder"
    data = load_json(path, "dropcli manifest", fix)
    try:
        if isinstance(data, dict) and "format" in data:
            entries = {n: None if v is None else tuple(v) for n, v in ManifestModel.model_validate(data).files.items()}
        else:
            entries = {n: () if n.endswith("/") else None for n in OldManifest.model_validate(data).files}
    except ValidationError:
        entries = {"": None}  # refused below
    for name, versions in entries.items():
        ok = versions == () if name.endswith("/") else versions is None or 1 <= len(versions) <= 2
        if not (_inside(name) and ok):
            raise DropcliError(f"{path} is not a dropcli manifest; {fix}")
        if not MANIFEST_NAMES.fullmatch(name):  # so --fresh, report or a resume never deletes or replaces it
            raise DropcliError(f"{path} is not a dropcli manifest: it lists {name!r}, a name dropcli never writes; {fix}")
    return entries
