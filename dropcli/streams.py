"""Standard streams that every console can take: no UnicodeEncodeError, whatever the encoding.

    $ PYTHONIOENCODING=cp1252 dropcli report results/ablation      # the table's star prints as '*'
    $ LC_ALL=C PYTHONUTF8=0 PYTHONCOERCECLOCALE=0 dropcli ablate ...  # an old cluster's C locale

A Windows console, a C locale or PYTHONIOENCODING=ascii gives stdout an encoding that lacks the
symbols dropcli prints (the summary table's star, the tick, '±', arrows, bar and box characters).
`protect` gives both streams an error handler that writes each such symbol as its ASCII stand-in,
a byte of a file name the locale could not decode (Python's surrogateescape) as that byte, and
any other character as a backslash escape, so a path stays unambiguous. Imports nothing heavy:
the console entry point calls it before anything else. A table is fitted to its console too:
its symbols as their stand-ins (fit_table), its width to the screen without cutting a value
(fit_width).
"""

from __future__ import annotations

import codecs
import sys
from pathlib import Path

from dropcli.chars import undecodable

HANDLER = "dropcli-fallback"  # the codecs error handler's registered name
STAND_INS = {
    "★": "*", "✓": "+", "✗": "x", "±": "+/-", "→": "->", "←": "<-", "↑": "^", "↓": "v", "…": "...", "—": "--",
    "–": "-", "×": "x", "≤": "<=", "≥": ">=", "≈": "~", "·": ".", "•": "*", "‘": "'", "’": "'", "“": '"', "”": '"',
    "\u00a0": " ", "\u2212": "-", "━": "-", "╸": "-", "╺": "-", "─": "-", "│": "|", "┃": "|", "█": "#", "░": ".", "▏": "|",
}  # what each symbol dropcli (or Rich) prints becomes where the encoding lacks it
SUPERSCRIPTS = dict(zip("⁰¹²³⁴⁵⁶⁷⁸⁹⁻⁺", "0123456789-+"))  # a p-value's exponent: '10⁻¹⁵' is '10^-15'


def stand_in(ch: str, before: str = "") -> str:
    """The ASCII text that shows `ch` on a console that cannot encode it: a look-alike for the
    symbols above and for box drawing (U+2500-U+257F), '^' and the digit for a superscript that
    begins an exponent (`before`: the character before it), a backslash escape (\\xe9) for the rest."""
    if ch in SUPERSCRIPTS:
        return ("" if before in SUPERSCRIPTS else "^") + SUPERSCRIPTS[ch]
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
    return stand_in(ch, err.object[err.start - 1] if err.start else ""), err.start + 1


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



def fit(text: str, encoding: str) -> str:
    """`text` with each character that `encoding` lacks written as its stand_in, the way the
    streams' handler would write it, but before anything measures the text."""
    if not text.isascii():
        return "".join(ch if _encodes(ch, encoding) else stand_in(ch, text[i - 1] if i else "")
                       for i, ch in enumerate(text))
    return text


def _encodes(ch: str, encoding: str) -> bool:
    try:
        ch.encode(encoding)
        return True
    except (UnicodeEncodeError, LookupError):
        return False


def fit_table(table, encoding: str) -> None:
    """Apply `fit` to a Rich Table's title, caption, headers and text cells in place, so that a
    wider stand-in ('±' as '+/-') is measured when Rich lays out the columns, and the rows stay
    aligned with their header on a console without those symbols. A styled cell (rich.text.Text)
    keeps its base style and loses its spans where its text changed."""
    from rich.text import Text

    def one(value):
        if isinstance(value, str):
            return fit(value, encoding)
        if isinstance(value, Text) and fit(value.plain, encoding) != value.plain:
            return Text(fit(value.plain, encoding), style=value.style, justify=value.justify)
        return value

    table.title, table.caption = one(table.title), one(table.caption)
    for column in table.columns:
        column.header = one(column.header)
        column._cells = [one(cell) for cell in column._cells]



def fit_width(table, console, keys: int = 1) -> list:
    """A Rich Table laid out for `console`'s width (at least 20 columns), losing no value: the
    table itself where it fits; else without its vertical rules; else split into tables of
    consecutive columns that fit, each led by the first `keys` columns (those that name a row),
    the title above the first and the caption, as a line of text, below the last. A part still too
    wide (a key column wider than the screen) wraps its cells, folding long words, and never cuts
    one to '…'."""
    import copy

    from rich import box
    from rich.measure import Measurement

    width = max(console.width, 20)

    def fits(t) -> bool:  # the table's width on an unbounded screen is within the screen's
        return Measurement.get(console, console.options.update_width(10**4), t).maximum <= width

    def part(columns: list):
        t = copy.copy(table)
        t.columns, t.title, t.caption, t.min_width = [copy.copy(c) for c in columns], None, None, None
        for i, column in enumerate(t.columns):
            column._index = i
        return t

    if fits(table):
        return [table]
    table.box, table.show_edge = box.SIMPLE_HEAD, False
    if fits(table):
        return [table]
    lead, rest, parts = table.columns[:keys], table.columns[keys:], []
    while rest:
        take = 1
        while take < len(rest) and fits(part(lead + rest[: take + 1])):
            take += 1
        parts.append(part(lead + rest[:take]))
        rest = rest[take:]
    parts[0].title = table.title
    for t in parts:
        if not fits(t):
            for column in t.columns:
                column.no_wrap, column.overflow = False, "fold"
    if table.caption is not None:  # below the last part, at the screen's width rather than that part's
        from rich.text import Text

        parts.append(Text(str(table.caption), style="table.caption"))
    return parts


def shell_word(text: str) -> str:
    """`text` as one word that bash reads back as `text`, on one line: shlex.quote where every
    character is printable, else ANSI-C quoting ($'...') with each control character, line
    separator or other unprintable character escaped as its UTF-8 bytes (\\n, \\x1b, \\xe2\\x80\\xa8
    for U+2028: bash reads those in every locale, \\u2028 only in a UTF-8 one), and each byte of a
    file name the locale could not decode (surrogateescape, U+DC80-U+DCFF) as that byte (\\xHH).
    A command printed for the user to copy (resume, merge) is built of these words."""
    import shlex

    if text.isprintable():
        return shlex.quote(text)
    named = {"\\": "\\\\", "'": "\\'", "\n": "\\n", "\t": "\\t", "\r": "\\r"}
    out = []
    for ch in text:
        if ch in named:
            out.append(named[ch])
        elif undecodable(ch):
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")
        elif not ch.isprintable():  # as its UTF-8 bytes: bash reads \\u escapes only in a UTF-8 locale
            out.extend(f"\\x{b:02x}" for b in ch.encode("utf-8", "surrogatepass"))
        else:
            out.append(ch)
    return "$'" + "".join(out) + "'"


def shell_command(*words: str | Path) -> str:
    """A command printed for the user to copy (resume, merge, report, the Slurm submit line): the
    words, each a shell_word, on one line that bash reads back as these words."""
    return " ".join(shell_word(str(w)) for w in words)
