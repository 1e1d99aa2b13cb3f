"""How dropcli meets the terminal: results, notes, progress, one-line errors and signals.

Results go to stdout and notes, progress and errors to stderr, so `dropcli ... > file` stays
clean. On a terminal, where both streams share one screen, result lines are printed through the
live progress display (above its bars), so neither overwrites the other. Usage errors (exit 2)
and failures (exit 1) end in one line on stderr that names the fix, never a traceback; Ctrl-C,
SIGTERM and SIGHUP (a scheduler's stop, a closed terminal) all stop a command the same way.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from typing import Iterator

import typer
from typer.core import TyperGroup

try:  # typer >= 0.26 vendors click
    from typer._click.exceptions import ClickException
    from typer._click.exceptions import UsageError as ClickUsageError
    from typer._click.globals import get_current_context
    from typer.exceptions import Abort
except ImportError:  # older typer runs on click itself
    from click.exceptions import Abort, ClickException
    from click.exceptions import UsageError as ClickUsageError
    from click.globals import get_current_context

from dropcli.errors import DropcliError


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, or SIGTERM/SIGHUP turned into the same clean stop."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def _raise_interrupted(signum, frame):
    raise Interrupted(signum)


def install_signal_handlers() -> None:
    for sig in (signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(ValueError, OSError, AttributeError):  # not the main thread, or no SIGHUP
            signal.signal(sig, _raise_interrupted)


def one_line(text: str) -> str:
    """The message on one line: control characters and line separators (in a path the user gave,
    say) are shown escaped, never as a break."""
    import unicodedata

    return "".join(ch if ch == " " or unicodedata.category(ch)[0] not in "CZ" else ascii(ch)[1:-1] for ch in text)


def error(message: str) -> None:
    typer.echo(f"Error: {one_line(message)}", err=True)


class OneLineErrors(TyperGroup):
    """Usage errors as one line on stderr (exit 2) instead of a boxed panel."""

    def main(self, args=None, prog_name=None, **extra):
        extra.pop("standalone_mode", None)
        try:
            rv = super().main(args=args, prog_name=prog_name, standalone_mode=False, **extra)
        except ClickException as e:
            hint = f" (see '{e.ctx.command_path} --help')" if getattr(e, "ctx", None) else ""
            error(f"{e.format_message()}{hint}")
            sys.exit(e.exit_code)
        except Abort:
            typer.echo("Aborted.", err=True)
            sys.exit(130)
        except DropcliError as e:  # raised outside a failures() block
            error(str(e))
            sys.exit(e.exit_code)
        except KeyboardInterrupt as e:
            typer.echo("Interrupted.", err=True)
            sys.exit(e.exit_code if isinstance(e, Interrupted) else 130)
        sys.exit(rv if isinstance(rv, int) else 0)


@contextlib.contextmanager
def failures() -> Iterator[None]:
    """DropcliError -> one line on stderr and its exit status; an interrupt -> exit 128 + signal."""
    try:
        yield
    except DropcliError as e:
        error(str(e))
        raise typer.Exit(e.exit_code) from None
    except KeyboardInterrupt as e:
        code = e.exit_code if isinstance(e, Interrupted) else 130
        typer.echo(f"Interrupted ({e.args[0] if e.args else 'SIGINT'}).", err=True)
        raise typer.Exit(code) from None
    except MemoryError:
        error("out of memory; use a smaller --hidden, --parallel-models or --batch-size")
        raise typer.Exit(1) from None


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


class Terminal:
    """One way to print: `result` lines to stdout, `note` lines and progress to stderr, `table`s
    (Rich) to stdout. While a progress display is live on a terminal, results print above it."""

    def __init__(self):
        from rich.console import Console

        self.err = Console(stderr=True, highlight=False)
        self.out = Console(highlight=False) if sys.stdout.isatty() else Console(width=120, highlight=False)
        self.live = None

    def result(self, text: str) -> None:
        if self.live is not None and self.live.live.is_started and sys.stdout.isatty() and sys.stderr.isatty():
            self.live.console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            typer.echo(text)

    def note(self, text: str) -> None:
        if self.live is not None and self.live.live.is_started:
            self.live.console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            typer.echo(text, err=True)

    def table(self, table) -> None:
        self.out.print(table)

    @contextlib.contextmanager
    def progress(self) -> Iterator:
        """A Rich progress display on stderr (cleared when done) during which result() lines print above it."""
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            TextColumn("eta"), TimeRemainingColumn(), console=self.err, transient=True,
                            redirect_stdout=False, redirect_stderr=False)
        self.live = progress
        try:
            with progress:
                yield progress
        finally:
            self.live = None


def typed_options(only=None, skip: tuple[str, ...] = ()) -> list[str]:
    """The running command's options as the user would type them, from the parsed values (not
    sys.argv): those that differ from their defaults, limited to the names in `only`."""
    ctx = get_current_context()
    parts = []
    for p in ctx.command.params:
        value, default = ctx.params.get(p.name), p.default
        norm = [str(getattr(v, "text", None) or getattr(v, "value", v)) for v in (value, default)]
        if (p.name in skip or (only is not None and p.name not in only) or value is None or norm[0] == norm[1]
                or not getattr(p, "opts", None)):
            continue
        if getattr(p, "is_flag", False):
            parts += [p.opts[0]] if value else []
        elif p.opts[0].startswith("-"):
            parts += [p.opts[0], norm[0]]
        else:
            parts.append(norm[0])
    return parts


def command_line(skip: tuple[str, ...] = ()) -> str:
    """The running command as the user would type it."""
    import shlex

    return " ".join(shlex.quote(x) for x in ["dropcli", get_current_context().info_name, *typed_options(skip=skip)])
