"""Standard streams that every console can take: no UnicodeEncodeError, whatever the encoding.

    $ PYTHONIOENCODING=cp1252 dropcli report results/ablation      # the table's star prints as '*'
    $ LC_ALL=C PYTHONUTF8=0 PYTHONCOERCECLOCALE=0 dropcli ablate ...  # an old cluster's C locale

A Windows console, a C locale or PYTHONIOENCODING=ascii gives stdout an encoding that lacks the
symbols dropcli prints (the summary table's star, the tick, '±', arrows, bar and box characters).
`protect` gives both streams an error handler that writes each such symbol as its ASCII stand-in,
a byte of a file name the locale could not decode (Python's surrogateescape) as that byte, and
any other character as a backslash escape, so a path stays unambiguous. Imports nothing heavy:
the console entry point calls it before anything else.
"""

from __future__ import annotations

import codecs
import sys

HANDLER = "dropcli-fallback"  # the codecs error handler's registered name
STAND_INS = {
    "★": "*", "✓": "+", "✗": "x", "±": "+/-", "→": "->", "←": "<-", "↑": "^", "↓": "v", "…": "...", "—": "--",
    "–": "-", "×": "x", "≤": "<=", "≥": ">=", "≈": "~", "·": ".", "•": "*", "‘": "'", "’": "'", "“": '"', "”": '"',
    "\u00a0": " ", "━": "-", "╸": "-", "╺": "-", "─": "-", "│": "|", "┃": "|", "█": "#", "░": ".", "▏": "|",
}  # what each symbol dropcli (or Rich) prints becomes where the encoding lacks it


def stand_in(ch: str) -> str:
    """The ASCII text that shows `ch` on a console that cannot encode it: a look-alike for the
    symbols above and for box drawing (U+2500-U+257F), a backslash escape (\\xe9) for the rest."""
    if ch in STAND_INS:
        return STAND_INS[ch]
    if "\u2500" <= ch <= "\u257f":  # box drawing: horizontal lines, vertical lines, corners
        return "-" if ch in "─━┄┅┈┉╌╍═╴╶╸╺╼╾" else ("|" if ch in "│┃┆┇┊┋╎╏║╵╷╹╻╽╿" else "+")
    return ch.encode("ascii", "backslashreplace").decode("ascii")


def _fallback(err: UnicodeError) -> tuple[str | bytes, int]:
    """The codecs error handler: one character at a time (see stand_in)."""
    if not isinstance(err, UnicodeEncodeError):
        raise err
    ch = err.object[err.start]
    if "\udc80" <= ch <= "\udcff":  # a byte the locale could not decode, kept by surrogateescape
        return bytes([ord(ch) - 0xDC00]), err.start + 1
    return stand_in(ch), err.start + 1


codecs.register_error(HANDLER, _fallback)


def protect(*streams) -> None:
    """Give each text stream (default: sys.stdout and sys.stderr) the fallback error handler, so
    that no write can raise UnicodeEncodeError; a stream without reconfigure is left alone."""
    for stream in streams or (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None and getattr(stream, "errors", None) != HANDLER:
            try:
                reconfigure(errors=HANDLER)
            except (ValueError, OSError, AttributeError):  # closed, or a stream that cannot change
                pass

