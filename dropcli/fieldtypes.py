"""A dataclass's values checked against its own annotations: 5.5 is no int, 123 no path, True no number.

    >>> check_types(TrainConfig(seed=5.5))     # TrainConfig calls it first thing
    ValueError: --seed takes whole numbers (got 5.5)

A frozen dataclass converts nothing by itself; its values come from the command line (already
typed), from grids, and from files (checkpoints, study.json) that someone may have edited. Checking
each field against its annotation keeps one definition of each type: the dataclass's.
"""

from __future__ import annotations

import functools
import numbers
import types
import typing

WORDS = {int: "whole numbers", float: "numbers", str: "text"}


@functools.lru_cache(maxsize=None)
def field_types(cls: type) -> dict[str, tuple[type, bool, bool]]:
    """A dataclass's fields as {name: (element type, optional, sequence)} from its annotations:
    `int | None` is (int, True, False), `tuple[float, ...]` is (float, False, True)."""
    out = {}
    for name, hint in typing.get_type_hints(cls).items():
        args = typing.get_args(hint)
        optional = isinstance(hint, types.UnionType) and type(None) in args
        if optional:
            hint = next(a for a in args if a is not type(None))
        sequence = typing.get_origin(hint) is tuple
        out[name] = (typing.get_args(hint)[0] if sequence else hint, optional, sequence)
    return out


def type_ok(value, kind: type) -> bool:
    """Whether `value` is a `kind`: any integral number (numpy's too) for int, any real one for
    float, never a bool for a number."""
    if isinstance(value, bool):
        return kind is bool
    if kind is int:
        return isinstance(value, numbers.Integral)
    if kind is float:
        return isinstance(value, numbers.Real)
    return isinstance(value, kind)


def check_types(instance) -> None:
    """Raise ValueError, naming the field as an option (--validation-size), for a field of a
    dataclass instance whose value is not of its annotated type: a whole number for int, a
    number for float, text for str, a tuple or list of those for tuple[...], None only where
    the annotation allows it."""
    for name, (kind, optional, sequence) in field_types(type(instance)).items():
        value = getattr(instance, name)
        if value is None and optional:
            continue
        values = value if sequence and isinstance(value, (tuple, list)) else [value]
        if (sequence and not isinstance(value, (tuple, list))) or not all(type_ok(v, kind) for v in values):
            what = WORDS.get(kind, kind.__name__)
            what = f"a list of {what}" if sequence else what
            raise ValueError(f"--{name.replace('_', '-')} takes {what}{' or none' if optional else ''}"
                             f" (got {value!r:.60})")
