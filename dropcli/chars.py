"""Which characters a one-line writer leaves as they are: error messages (terminal.one_line), commands
printed for the user to copy (streams.shell_word) and #SBATCH lines (slurm.unprintable) share it.

Printable is Python's str.isprintable: ' ' and every character outside Unicode's C categories
(control, format, surrogate, private use, unassigned) and Z categories (line and paragraph
separators, spaces other than ' '); the others could break a line, hide text or move the cursor.

    >>> as_is("a"), as_is(" "), as_is("\\n"), as_is("\\u2028"), as_is("\\udcc3")
    (True, True, False, False, True)
"""

from __future__ import annotations


def undecodable(ch: str) -> bool:
    """True for a lone surrogate U+DC80-U+DCFF: a byte (0x80-0xFF) of a file name that the locale
    could not decode, as Python's surrogateescape keeps it (under a C locale, say). Written back as
    that byte it names the same file, and no such byte ends a line. `ch`: one character."""
    return "\udc80" <= ch <= "\udcff"


def as_is(ch: str) -> bool:
    """True where a one-line writer may write `ch` unescaped: a printable character (str.isprintable)
    or an undecodable byte of a file name (`undecodable`). `ch`: one character."""
    return ch.isprintable() or undecodable(ch)
