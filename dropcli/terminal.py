"""How dropcli meets the terminal: results, notes, progress, one-line errors and signals.

Results go to stdout and notes, progress and errors to stderr, so `dropcli ... > file` stays
clean. On a terminal, where both streams share one screen, result lines are printed through the
live progress display (above its bars), so neither overwrites the other; where stderr is not a
terminal (a log, `2>&1 | tee`), progress is written as plain lines instead (boards.py). Every
text that comes from a path, a file or an option is printed as it is, never read as Rich markup
or emoji codes, and in any encoding (streams.py). Usage errors (exit 2) and failures (exit 1)
end in one line on stderr that names the fix, never a traceback; Ctrl-C, SIGTERM and SIGHUP (a
scheduler's stop, a closed terminal) all stop a command the same way, with one line.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import typer
from typer.core import TyperGroup

try:  # typer >= 0.26 vendors click
    from typer._click.exceptions import ClickException
    from typer._click.exceptions import UsageError as ClickUsageError
    from typer.exceptions import Abort
except ImportError:  # older typer runs on click itself
    from click.exceptions import Abort, ClickException
    from click.exceptions import UsageError as ClickUsageError

from dropcli.chars import as_is
from dropcli.errors import DropcliError, option_message
from dropcli.interrupts import (  # noqa: F401  (Interrupted, install_signal_handlers: the command line's)
    Interrupted,
    as_interrupt,
    emit,
    forget,
    install_signal_handlers,
    interrupt_code,
    interrupt_name,
    say_interrupted,
    told_interrupt,
)
from dropcli.streams import fit_table, fit_width, protect


def one_line(text: str) -> str:
    """The message on one line: control characters and line separators (in a path, say) shown escaped;
    an undecodable byte of a file name (surrogateescape) stays, for streams.protect to write as is."""
    return "".join(ch if as_is(ch) else ascii(ch)[1:-1] for ch in text)


def error(message: str) -> None:
    """Print 'Error: <message>' on stderr as one line (control characters escaped)."""
    emit(f"Error: {one_line(message)}", err=True)


class _Stopped(BaseException):
    """An interrupt carried past typer, which would turn it into a silent exit 130 (even for SIGTERM)."""

    def __init__(self, interrupt: KeyboardInterrupt):
        super().__init__(interrupt)
        self.interrupt = interrupt


class OneLineErrors(TyperGroup):
    """Usage errors as one line on stderr (exit 2) instead of a boxed panel; an interrupt while the
    options are parsed or a command runs, one line and exit 128 + its signal; the streams protected
    (streams.protect) before anything prints."""

    def make_context(self, *args, **kwargs):
        """Click's context for the options; an interrupt while they parse is carried past typer."""
        try:
            return super().make_context(*args, **kwargs)
        except KeyboardInterrupt as e:
            raise _Stopped(e) from None

    def invoke(self, ctx):
        """Run the command; an interrupt is carried past typer, which would turn it into a silent exit."""
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as e:
            raise _Stopped(e) from None

    def main(self, args=None, prog_name=None, **extra):
        """The app's entry: one line and the documented exit status for every usage error, failure and interrupt."""
        extra.pop("standalone_mode", None)
        protect()
        forget()
        try:
            rv = super().main(args=args, prog_name=prog_name, standalone_mode=False, **extra)
        except ClickException as e:
            hint = f" (see '{e.ctx.command_path} --help')" if getattr(e, "ctx", None) else ""
            error(f"{option_message(e)}{hint}")
            sys.exit(e.exit_code)
        except Abort:
            say_interrupted("Aborted.")
            sys.exit(130)
        except (KeyboardInterrupt, _Stopped) as stop:
            e = stop.interrupt if isinstance(stop, _Stopped) else stop
            if not told_interrupt():
                say_interrupted(f"Interrupted ({interrupt_name(e)}).")
            sys.exit(interrupt_code(e))
        except Exception as caught:
            e = as_interrupt(caught)  # the interrupt, come out as another exception (see stop_signal)
            if e is None and isinstance(caught, DropcliError):  # raised outside a failures() block
                error(str(caught))
                sys.exit(caught.exit_code)
            if e is None:
                raise
            if not told_interrupt():
                say_interrupted(f"Interrupted ({interrupt_name(e)}).")
            sys.exit(interrupt_code(e))
        sys.exit(rv if isinstance(rv, int) else 0)


@contextlib.contextmanager
def failures() -> Iterator[None]:
    """DropcliError -> one line on stderr and its exit status; an interrupt -> exit 128 + signal."""
    try:
        yield
    except BaseException as caught:
        e = as_interrupt(caught)  # after a stop signal, any error (a DropcliError too) is that stop
        if e is None and isinstance(caught, DropcliError):
            error(str(caught))
            raise typer.Exit(caught.exit_code) from None
        if e is None and isinstance(caught, MemoryError):
            error("out of memory; use a smaller --hidden, --parallel-models or --batch-size")
            raise typer.Exit(1) from None
        if e is None:
            raise
        if not told_interrupt():
            say_interrupted(f"Interrupted ({interrupt_name(e)}).")
        raise typer.Exit(interrupt_code(e)) from None


def usage_error(message: str):
    """Stop the command with a usage error (exit 2, one line): a check across several options."""
    raise ClickUsageError(message)


def usage(fn, *args, **kwargs):
    """Run a validator across options (a TrainConfig, a grid); its ValueError becomes a usage error
    (exit 2). Single options are parsed by their Typer parser= (cli_options.parser)."""
    try:
        return fn(*args, **kwargs)
    except ValueError as e:
        raise ClickUsageError(str(e)) from None


def _is_pipe(stream) -> bool:
    try:
        return stat.S_ISFIFO(os.fstat(stream.fileno()).st_mode)
    except (OSError, ValueError, AttributeError):
        return False


def _say(console, text: str) -> None:
    """One line of text, whatever a path or value in it holds (one_line: a line break or escape
    sequence in a file name is shown escaped): on a terminal wrapped between words (never inside
    one that fits); elsewhere (a file, a pipe) never wrapped, so each line stays whole for grep.
    Every result and note goes through here."""
    console.print(one_line(text), soft_wrap=not console.is_terminal)


def plain_console(**kw):
    """A Rich console that prints every string as it is: no markup, no emoji codes, no highlighting."""
    from rich.console import Console

    return Console(markup=False, emoji=False, highlight=False, **kw)


class Terminal:
    """One way to print: `result` lines to stdout, `note` lines and progress to stderr, `table`s
    (Rich) to stdout. `board()` is the progress display: bars on a terminal (results print above
    them), plain lines where stderr is not a terminal, or where stdout is a pipe that may end on
    the same screen (`| tee`, whose lines the bars would overwrite).

    For tests: `out` and `err` consoles (one console for both is a terminal's shared screen),
    `live` forces the choice of board, `get_time` is the clock of every elapsed time and ETA, and
    `auto_refresh` False draws the bars only on board.refresh()."""

    def __init__(self, out=None, err=None, live: bool | None = None, get_time: Callable[[], float] = time.monotonic,
                 auto_refresh: bool = True):
        protect()
        self.err = err or plain_console(stderr=True)
        self.out = out or (plain_console() if sys.stdout.isatty() else plain_console(width=120))
        self.same_screen = out is not None and out is err or (out is None and sys.stdout.isatty() and sys.stderr.isatty())
        if live is None:
            live = (self.err.is_terminal and not self.err.is_dumb_terminal
                    and (sys.stdout.isatty() or not _is_pipe(sys.stdout)))
        self.live, self.get_time, self.auto_refresh, self.active = live, get_time, auto_refresh, None

    def _live_now(self) -> bool:
        return self.active is not None and self.active.live and self.active.started

    def result(self, text: str) -> None:
        """A result line on stdout (above the progress bars while they share the screen)."""
        _say(self.err if self._live_now() and self.same_screen else self.out, text)

    def note(self, text: str) -> None:
        """A note line on stderr (above the progress bars while they are shown)."""
        _say(self.err, text)

    def note_path(self, lead: str, path: Path | str, tail: str = "") -> None:
        """'lead path tail' on one line where it fits the terminal's width (always in a log); else
        the path (or a command to copy) on a line of its own, never broken by dropcli: a terminal
        narrower than the path itself folds it for display only, so it copies as one line. A control
        character or line separator in the path is shown escaped (one_line), never as a break."""
        path = one_line(str(path))
        line = f"{lead} {path}{tail}"
        if not self.err.is_terminal or len(line) <= self.err.width:
            return self.note(line)
        self.note(lead.rstrip())
        self.err.print(f"  {path}", soft_wrap=True)
        if tail.strip():
            self.note(tail.strip())

    def wrote(self, folder: Path | str, names: list[str]) -> None:
        """'Wrote a, b and c in FOLDER': the folder once (see note_path), never a path per file."""
        listed = ", ".join(names[:-1]) + (" and " if len(names) > 1 else "") + names[-1]
        if Path(folder) == Path("."):
            return self.note(f"Wrote {listed}")
        self.note_path(f"Wrote {listed} in", folder)

    def interrupted(self, text: str, command: str | None = None) -> None:
        """The line an interrupted command ends with (see say_interrupted); a command to go on with
        at its end, on a line of its own where the line would not fit (note_path)."""
        say_interrupted(text, self.note if command is None else lambda t: self.note_path(t, command))

    def table(self, table, keys: int = 1) -> None:
        """A Rich table on stdout, at least as wide as its title and caption (so that neither wraps
        where the screen has room); symbols the console lacks are laid out as their stand-ins, and
        one wider than the screen loses no value: split into parts led by its first `keys` columns
        (streams.fit_width)."""
        fit_table(table, getattr(self.out.file, "encoding", None) or "utf-8")
        widest = max((len(str(t)) for t in (table.title, table.caption) if t is not None), default=0)
        table.min_width = min(max(table.min_width or 0, widest + 2), max(self.out.width, 20))
        for part in fit_width(table, self.out, keys):
            self.out.print(part)

    @contextlib.contextmanager
    def board(self) -> Iterator:
        """The progress board (boards.LiveBoard on a terminal, else boards.LogBoard writing notes)."""
        from dropcli.boards import LiveBoard, LogBoard

        board = (LiveBoard(self.err, self.get_time, self.auto_refresh) if self.live
                 else LogBoard(self.note, self.get_time))
        self.active = board
        try:
            if board.live:
                with board:
                    yield board
            else:
                yield board
        finally:
            self.active = None
