"""Interrupts: Ctrl-C, SIGTERM and SIGHUP stop a command the same way, with one line.

    $ dropcli ablate --grid     # Ctrl-C: "Interrupted (SIGINT): 4 of 24 cells are saved ..." (exit 130)

The handler raises Interrupted (a KeyboardInterrupt that knows its signal; exit 128 + the signal)
and records the signal, so that an interrupt which a library turns into another exception (numpy
reports a missing attribute when one lands in its lazy import) still ends as the stop it is
(as_interrupt). say_interrupted prints the one line and records that it did, so that no outer
handler prints a second (entry.py, terminal.OneLineErrors).
"""

from __future__ import annotations

import builtins
import contextlib
import signal
import sys
import threading
from typing import Callable

import typer

from dropcli.streams import protect

_told = {"interrupt": False, "signal": None}  # whether this process has said why it stopped; the stop signal it got


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, or SIGTERM/SIGHUP turned into the same clean stop."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        _told["signal"] = signum
        _held["pending"].clear()  # a stop raised: those held are this one

    @property
    def exit_code(self) -> int:
        """128 + the signal's number, as shells report a process stopped by it."""
        return 128 + self.signum


def interrupt_code(e: KeyboardInterrupt) -> int:
    """Exit status of an interrupt: 128 + its signal (130 for a plain Ctrl-C)."""
    return e.exit_code if isinstance(e, Interrupted) else 130


def interrupt_name(e: KeyboardInterrupt) -> str:
    """The signal an interrupt stands for, by name ('SIGTERM'; 'SIGINT' for a plain Ctrl-C)."""
    return e.args[0] if e.args and isinstance(e.args[0], str) else "SIGINT"


HELD_IMPORTS = ("torch", "torchvision")  # their import runs C++ that calls Python: an exception raised there aborts
_held = {"depth": 0, "pending": []}  # how many held() blocks are open; the stop signals received inside them


def _raise_interrupted(signum, frame):
    if _held["depth"]:
        _held["pending"].append(signum)
        return
    raise Interrupted(signum)


@contextlib.contextmanager
def held():
    """Hold stop signals for the block: the first one received inside is raised as Interrupted when
    the block ends (also when it ends with an error: the stop came first), not where it lands. For
    code that must not be cut (torch's import: C++ that calls Python, where a KeyboardInterrupt ends
    the process with 'terminate called after throwing pybind11::error_already_set', exit -6, no
    line). Outside the main thread, which never runs signal handlers, it holds nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _held["depth"] += 1
    try:
        yield
    finally:
        _held["depth"] -= 1
        if not _held["depth"] and _held["pending"]:
            raise Interrupted(_held["pending"][0])  # clears the pending ones


def _held_import(name, globals=None, locals=None, fromlist=(), level=0):
    """builtins.__import__, inside held() for a HELD_IMPORTS package and its modules: the stop is
    raised after the import is complete, so torch stays imported whole (raised inside the import,
    importlib would drop `torch` and keep its C++ part, and no later import could load it)."""
    if level == 0 and name.partition(".")[0] in HELD_IMPORTS:
        with held():
            return _plain_import(name, globals, locals, fromlist, level)
    return _plain_import(name, globals, locals, fromlist, level)


_plain_import = getattr(builtins.__import__, "plain", builtins.__import__)
_held_import.plain = _plain_import  # what a reloaded dropcli.interrupts wraps: never its own wrapper


def install_signal_handlers() -> None:
    """Ctrl-C, SIGTERM and SIGHUP raise Interrupted (entry.py installs the same before any import),
    held while torch and torchvision import (see held, _held_import)."""
    for sig in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        with contextlib.suppress(ValueError, OSError, TypeError):  # not the main thread, or no SIGHUP
            signal.signal(sig, _raise_interrupted)
    builtins.__import__ = _held_import


def stop_signal() -> int | None:
    """The stop signal this process received (an Interrupted was raised), or None. An interrupt that
    lands inside a library's import or error handling can come out as another exception (numpy, for
    one, then reports a missing attribute); the command line ends such an exception as the stop it is."""
    return _told["signal"]


def as_interrupt(e: BaseException) -> KeyboardInterrupt | None:
    """The interrupt `e` is: itself if a KeyboardInterrupt; if a stop signal was received, any other
    exception but SystemExit (what the interrupt turned into, see stop_signal); else None."""
    if isinstance(e, KeyboardInterrupt):
        return e
    if stop_signal() is None or isinstance(e, (SystemExit, typer.Exit)):
        return None
    return Interrupted(stop_signal())


def told_interrupt() -> bool:
    """Whether a line saying that the command was interrupted has been printed."""
    return _told["interrupt"]


def emit(text: str, err: bool = False) -> None:
    """One line on stdout (or stderr), written as it is and flushed at once."""
    stream = sys.stderr if err else sys.stdout
    protect(stream)
    stream.write(text + "\n")
    stream.flush()


def say_interrupted(text: str, write: Callable[[str], None] | None = None) -> None:
    """The one line an interrupted command ends with (on stderr, or through `write`)."""
    _told["interrupt"] = True
    (write or (lambda t: emit(t, err=True)))(text)


def forget() -> None:
    """A new command starts: no interrupt received or told yet (tests run many in one process)."""
    _told.update(interrupt=False, signal=None)
    _held["pending"].clear()
