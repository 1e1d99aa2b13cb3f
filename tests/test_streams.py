"""Consoles that are not UTF-8: any text written through a protected stream, never an error."""

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dropcli.streams import HANDLER, STAND_INS, protect, stand_in

ENCODINGS = ["ascii", "cp1252", "latin-1", "cp437", "utf-8"]


def protected(encoding: str, errors: str = "strict") -> io.TextIOWrapper:
    stream = io.TextIOWrapper(io.BytesIO(), encoding=encoding, errors=errors, write_through=True)
    protect(stream)
    return stream


@pytest.mark.parametrize("encoding", ENCODINGS)
@given(text=st.text())
def test_any_text_writes_to_any_console(encoding, text):
    stream = protected(encoding)
    stream.write(text)  # lone surrogates, emoji, box drawing, control characters: never UnicodeEncodeError
    written = stream.buffer.getvalue().decode(encoding, "surrogateescape")
    assert stream.errors == HANDLER
    if text.isascii():
        assert written == text
    elif encoding == "utf-8" and not any("\ud800" <= ch <= "\udfff" for ch in text):
        assert written == text


@pytest.mark.parametrize("encoding", ["ascii", "cp437"])
def test_symbols_become_their_stand_ins_where_the_encoding_lacks_them(encoding):
    stream = protected(encoding)
    stream.write("0.9812 ★ | p < 0.05 ✓ | ± 0.0004 | a → b | ━━╸━━")
    text = stream.buffer.getvalue().decode(encoding)
    assert "★" not in text and "0.9812 *" in text and "0.05 +" in text and "a -> b" in text and "-----" in text
    assert ("+/- 0.0004" in text) if encoding == "ascii" else ("± 0.0004" in text)  # cp437 has ±


def test_a_letter_the_console_lacks_is_escaped_not_dropped_and_a_locale_byte_goes_through():
    stream = protected("ascii")
    stream.write("café/s[bold]\udcc3\udca9")  # é typed in a UTF-8 locale; é as C-locale surrogateescape bytes
    assert stream.buffer.getvalue() == b"caf\\xe9/s[bold]\xc3\xa9"


def test_every_stand_in_is_ascii():
    assert all(v.isascii() for v in STAND_INS.values())
    assert all(stand_in(chr(c)).isascii() for c in range(0x2500, 0x2580))


@pytest.mark.parametrize("encoding", ["ascii", "cp437"])
def test_a_conclusion_reads_in_ascii_with_its_signs_and_exponents(encoding):
    """conclusions writes minus signs (U+2212) and p-values as '8.5 × 10⁻⁶': on a console that lacks
    them they read '-0.61' and '10^-6', never '\\u22120.61' (which reads as 22120.61)."""
    from dropcli.conclusions import p_text
    from dropcli.streams import fit

    said = f"\u22120.61 points [\u22120.73, \u22120.49] (Holm p = {p_text(8.5e-6)}); {p_text(3e-15)}"
    stream = protected(encoding)
    stream.write(said)
    text = stream.buffer.getvalue().decode(encoding)
    assert text.startswith("-0.61 points [-0.73, -0.49] (Holm p = 8.5 ") and text.endswith("10^-15")
    assert "10^-6)" in text and "\\u" not in text
    assert fit(said, encoding) == text


@settings(max_examples=60, deadline=None)
@given(st.text(st.characters(exclude_characters="\x00", exclude_categories=("Cs",)) | st.sampled_from(
    ["\n", "\r", "\x1b", "\u2028", "'", "\\", "$", "`", " ", "\udc80", "\udcff", "!"]), max_size=12))
def test_a_shell_word_reads_back_as_itself_on_one_line(text):
    """What dropcli prints for the user to copy (a resume or merge command) is read back by bash as
    the text, and is one line of printable characters."""
    import os
    import subprocess

    from dropcli.streams import shell_word

    word = shell_word(text)
    assert word.isprintable()
    for locale in ("C.UTF-8", "C"):  # a compute node's shell may run in C: \u escapes would stay text there
        got = subprocess.run(["bash", "-c", f"printf %s {word}"], capture_output=True, check=True,
                             env={**os.environ, "LC_ALL": locale}).stdout
        assert got == os.fsencode(text), locale


def test_one_line_escapes_breaks_and_keeps_undecodable_bytes():
    """A file name's byte the locale could not decode (U+DC80-U+DCFF) stays for the stream to write as
    that byte; a line break or escape character is shown escaped."""
    from dropcli.terminal import one_line

    assert one_line("a\nb\x1b[31m\u2028c") == "a\\nb\\x1b[31m\\u2028c"
    assert one_line("study \udcc3\udcbc") == "study \udcc3\udcbc"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=8) | st.text(st.sampled_from(["a", " ", "\n", "\x1b", "\u2028", "\u200b", "\udc80",
                                                      "\udcff", "\ud800", "\ue000", "\x85"]), max_size=6))
def test_every_one_line_writer_leaves_the_same_characters_as_they_are(text):
    """An error message, a command to copy and a job script's line agree on which characters stay as
    they are (chars.as_is): what one writer escapes, the others escape or refuse."""
    from dropcli.chars import as_is
    from dropcli.slurm import unprintable
    from dropcli.streams import shell_word
    from dropcli.terminal import one_line

    clean = all(map(as_is, text))
    assert (one_line(text) == text) == clean and (unprintable(text) is None) == clean
    assert all(map(as_is, one_line(text))) and "\n" not in one_line(text)
    assert shell_word(text).startswith("$'") == (not text.isprintable())
