"""The `dropcli` console script: signals and streams first, the command line after.

    $ dropcli train        # pyproject's [project.scripts] runs entry:main; python -m dropcli too

Importing the command line (typer, rich, pandas) takes a few tenths of a second; a Ctrl-C in that
time must end like one at any later moment: one line, exit 130, no traceback. So this module
imports only the standard library and dropcli.streams, installs the handlers, protects the
streams (streams.py), and only then imports dropcli.cli inside the same guard.
"""

from __future__ import annotations

import os
import signal
import sys

from dropcli import streams

STOPS = ("SIGINT", "SIGTERM", "SIGHUP")  # Ctrl-C, a scheduler's stop, a closed terminal
_received: list[int] = []  # the stop signals received


def _stop(signum, frame):
    """The handler of every stop signal: raise interrupts.Interrupted where it is imported (a
    KeyboardInterrupt that knows its signal), a plain KeyboardInterrupt before that."""
    _received.append(signum)
    interrupts = sys.modules.get("dropcli.interrupts")
    if interrupts is not None and hasattr(interrupts, "Interrupted"):
        raise interrupts.Interrupted(signum)
    raise KeyboardInterrupt(signal.Signals(signum).name)


def install_handlers() -> None:
    """Each stop signal raises (see _stop); where a signal does not exist or this is not the main
    thread, the default stays."""
    for name in STOPS:
        sig = getattr(signal, name, None)
        if sig is not None:
            try:
                signal.signal(sig, _stop)
            except (ValueError, OSError):
                pass


def _exit_code(e: BaseException) -> int:
    name = e.args[0] if e.args and isinstance(e.args[0], str) else "SIGINT"
    return 128 + getattr(signal, name, signal.SIGINT)


def _quiet_exit(signum, frame):
    os._exit(128 + signum)


def main() -> None:
    """Run the command line; an interrupt before or after the command's own handling ends with
    one line ('Interrupted.') and exit 128 + the signal. While Python shuts down, a stop signal
    exits at once (no 'Exception ignored' lines)."""
    install_handlers()
    streams.protect()
    try:
        from dropcli.cli import main as run

        run()
    except SystemExit:
        _after()
        raise
    except BaseException as e:  # an interrupt, or (see interrupts.stop_signal) what one turned into
        if not isinstance(e, KeyboardInterrupt) and not _received:
            raise
        interrupts = sys.modules.get("dropcli.interrupts")
        if interrupts is None or not getattr(interrupts, "told_interrupt", lambda: False)():
            try:
                sys.stderr.write("Interrupted.\n")
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
        _after()
        sys.exit(128 + _received[0] if _received else _exit_code(e))
    _after()


def _after() -> None:
    """From here on a stop signal ends the process at once: the command is over."""
    for name in STOPS:
        sig = getattr(signal, name, None)
        if sig is not None:
            try:
                signal.signal(sig, _quiet_exit)
            except (ValueError, OSError):
                pass
