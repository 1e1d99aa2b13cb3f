"""Study identities (study.json's content): whether two are one study, whether one grows into
another, and how they differ, in words. study.check_folder, plan and shards decide with these.

    {"format": "dropcli-study/3", "settings": {...}, "grid": {"keep_probs": ["0.5", "1"], "seeds": [777, 778]},
     "data": {"name": "mnist", "sha256": "..."}}            (a shard's adds "shard" and "dropcli_version")
"""

from __future__ import annotations

import json

from dropcli.config import TRAIN_SPLIT, TrainConfig


def describe_difference(old: dict, new: dict, now: str = "now") -> str:
    """The first setting, grid axis, data or code version in which two study identities differ
    (a subset rule only where it chooses images, without_inert)."""
    old, new = without_inert(old), without_inert(new)
    if old.get("format") != new.get("format"):
        return f"format {old.get('format')} there, {new.get('format')} {now}"
    for section in ("settings", "grid"):
        for k in sorted(set(old.get(section, {})) | set(new.get(section, {}))):
            a, b = old.get(section, {}).get(k), new.get(section, {}).get(k)
            if json.dumps(a) != json.dumps(b):
                return f"{k} {_shown(a)} there, {_shown(b)} {now}"
    if old.get("data") != new.get("data"):
        return f"data {json.dumps(old.get('data'))} there, {json.dumps(new.get('data'))} {now}"
    if old.get("dropcli_version") != new.get("dropcli_version"):
        return f"dropcli {old.get('dropcli_version')} there, {new.get('dropcli_version')} {now}"
    return f"shard {json.dumps(old.get('shard'))} there, {json.dumps(new.get('shard'))} {now}"


def _shown(value) -> str:
    return "not set" if value is None else json.dumps(value)


def same(a: dict, b: dict, ignore: tuple[str, ...] = ()) -> bool:
    """Two identities are one study: equal as JSON, keys sorted, leaving out `ignore` (a shard's
    'shard'; 'dropcli_version' where shards meet), keys set to None and an inert subset rule."""
    a, b = ({k: v for k, v in without_inert(i).items() if k not in ignore and v is not None} for i in (a, b))
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def without_inert(identity: dict) -> dict:
    """The identity with the default subset rule ("random") where the study trains on the bundled
    MNIST (no data_dir, whose files may hold more images) and every train size is its whole
    training part (60,000 minus validation_size): a subset of all the images is all of them, in
    their order (data.subset_indices), so `--subset first` without `--train-sizes` trains the same
    cells as without it (and tables.setting_columns reads either rule in their rows)."""
    settings, grid = identity.get("settings"), identity.get("grid")
    if not isinstance(settings, dict) or not isinstance(grid, dict) or settings.get("data_dir") is not None:
        return identity
    validation, sizes = settings.get("validation_size", 0), grid.get("train_sizes")
    part = TRAIN_SPLIT - validation if type(validation) is int else None
    if "subset" not in settings or not isinstance(sizes, list) or any(n != part for n in sizes):
        return identity
    return {**identity, "settings": {**settings, "subset": DEFAULT_SUBSET}}


DEFAULT_SUBSET = TrainConfig().subset


LIFTED = {"lr": "lrs", "hidden": "hiddens"}  # a setting with one value, a grid axis with more (grid.study_identity)


def lifted(identity: dict) -> dict:
    """The identity with lr and hidden, where they are settings (one value), as one-value grid
    axes, so that a study at one learning rate and the same study at several compare axis by axis."""
    settings, grid = dict(identity.get("settings", {})), dict(identity.get("grid", {}))
    for setting, axis in LIFTED.items():
        if setting in settings and axis not in grid:
            grid[axis] = [json.loads(json.dumps(settings.pop(setting)))]
    return {**identity, "settings": settings, "grid": grid}


def regrids(old: dict, new: dict) -> bool:
    """Whether whole-study identity `new` differs from `old` only in the values on its grid axes
    (the same settings, data, format and axes, lr and hidden lifted): a study that may take the
    folder of old where every finished cell of old is a cell of new. Never a shard's identity."""
    a, b = lifted(old), lifted(new)
    return not old.get("shard") and not new.get("shard") and set(a["grid"]) == set(b["grid"]) and same(a, b, ("grid",))


def grows(old: dict, new: dict) -> bool:
    """Whether `new` is `old` with more values on its grid axes (more seeds, keep probabilities,
    sizes, learning rates, ...; regrids): every cell of old is one of new."""
    a, b = lifted(old)["grid"], lifted(new)["grid"]
    return regrids(old, new) and all({json.dumps(v) for v in a[k]} <= {json.dumps(v) for v in b[k]} for k in a)


def role(identity: dict) -> str:
    """What a study.json describes, in words: 'shard 2 of 8' or 'a whole study'."""
    shard = identity.get("shard")
    return f"shard {shard['index']} of {shard['count']}" if shard else "a whole study"
