"""JSON from files dropcli did not necessarily write: size and nesting bounded before any parser runs.

    >>> check_json_text('{"seed": 777}', "the config", max_chars=65_536)
    >>> check_json_text("[" * 200_000, "the config", max_chars=1_000_000)
    Traceback (most recent call last):
    ValueError: the config is nested deeper than 32 levels

A text nested 200,000 deep makes Python's json module raise RecursionError and costs a recursive
parser its stack; the depth is counted here with numpy, without recursion, after blanking string
literals (brackets inside strings do not nest).
"""

from __future__ import annotations

import re

import numpy as np

MAX_DEPTH = 32  # every file dropcli writes nests at most 4 levels; 32 leaves room for any honest file
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)


def json_depth(text: str) -> int:
    """The deepest nesting of [ and { in a JSON text, outside string literals (0 for a scalar).
    Linear in len(text); never recurses."""
    skeleton = _STRING.sub('""', text).encode("utf-8", "replace")
    b = np.frombuffer(skeleton, dtype=np.uint8)
    steps = np.isin(b, (ord("["), ord("{"))).astype(np.int64) - np.isin(b, (ord("]"), ord("}")))
    return int(np.cumsum(steps).max(initial=0))


def check_json_text(text: str, what: str, max_chars: int, max_depth: int = MAX_DEPTH) -> None:
    """Raise ValueError naming `what` when `text` (a JSON document, not yet parsed) is longer than
    max_chars characters or nests deeper than max_depth (default MAX_DEPTH) levels."""
    if not isinstance(text, str):
        raise ValueError(f"{what} is not text")
    if len(text) > max_chars:
        raise ValueError(f"{what} is {len(text):,} characters long, more than the {max_chars:,} allowed")
    if json_depth(text) > max_depth:
        raise ValueError(f"{what} is nested deeper than {max_depth} levels")
