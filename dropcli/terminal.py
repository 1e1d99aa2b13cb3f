"""How dropcli meets the terminal: one-line errors, progress bars on stderr, the command line.

Usage errors (exit 2) and failures (exit 1) end in one line on stderr that names the fix, never a
traceback; results go to stdout and progress to stderr, so `dropcli ... > file` stays clean.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Iterator

import typer
from typer.core import TyperGroup

try:  # typer >= 0.26 vendors click
    from typer._click.exceptions import ClickException, UsageError
    from typer._click.globals import get_current_context
    from typer.exceptions import Abort
except ImportError:  # older typer runs on click itself
    from click.exceptions import Abort, ClickException, UsageError
    from click.globals import get_current_context

from dropcli.errors import DropcliError


class OneLineErrors(TyperGroup):
    """Usage errors as one line on stderr (exit 2) instead of a boxed panel."""

    def main(self, args=None, prog_name=None, **extra):
        extra.pop("standalone_mode", None)
        try:
            rv = super().main(args=args, prog_name=prog_name, standalone_mode=False, **extra)
        except ClickException as e:
            hint = f" (see '{e.ctx.command_path} --help')" if getattr(e, "ctx", None) else ""
            typer.echo(f"Error: {e.format_message()}{hint}", err=True)
            sys.exit(e.exit_code)
        except Abort:
            typer.echo("Aborted.", err=True)
            sys.exit(130)
        sys.exit(rv if isinstance(rv, int) else 0)


@contextlib.contextmanager
def failures() -> Iterator[None]:
    """DropcliError -> one line on stderr and exit 1 (2 for a study mismatch)."""
    from dropcli.ablate import StudyMismatch

    try:
        yield
    except DropcliError as e:
        typer.echo(f"Error: {e}", err=True)
        raise typer.Exit(2 if isinstance(e, StudyMismatch) else 1) from None
    except KeyboardInterrupt:
        typer.echo("Interrupted; nothing was saved.", err=True)
        raise typer.Exit(130) from None


def usage(fn, *args, **kwargs):
    """Run a parser/validator; its ValueError becomes a usage error (exit 2)."""
    try:
        return fn(*args, **kwargs)
    except ValueError as e:
        raise UsageError(str(e)) from None


def stderr_console():
    from rich.console import Console

    return Console(stderr=True)


def progress_bar():
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("eta"), TimeRemainingColumn(), console=stderr_console(), transient=True)


def stdout_console():
    """Rich console on stdout; 120 columns when piped, so that tables stay readable in files."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=120)


def command_line(skip: tuple[str, ...] = ()) -> str:
    """The running command as the user would type it, from the parsed options (not sys.argv)."""
    import shlex

    ctx = get_current_context()
    parts = ["dropcli", ctx.info_name]
    for p in ctx.command.params:
        value, default = ctx.params.get(p.name), p.default
        norm = [str(getattr(v, "value", v)) for v in (value, default)]
        if p.name in skip or value is None or norm[0] == norm[1] or not getattr(p, "opts", None):
            continue
        if getattr(p, "is_flag", False):
            parts += [p.opts[0]] if value else []
        elif p.opts[0].startswith("-"):
            parts += [p.opts[0], norm[0]]
        else:
            parts.append(norm[0])
    return " ".join(shlex.quote(x) for x in parts)
