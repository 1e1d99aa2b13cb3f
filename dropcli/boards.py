"""Clocks that never stop, drawn as bars on a terminal or written as plain lines in a log.

    $ dropcli ablate --grid                  # a terminal: bars with elapsed time and a real ETA
    $ dropcli ablate --grid > log 2>&1       # a log: one flushed line per finished cell

A `Pace` measures a piece of work in units (lockstep steps, say): its elapsed time counts from
when it was made, and its time left is the units left times the seconds one unit has taken so far,
counted down between updates. A board shows rows of paces: `LiveBoard` as Rich bars (redrawn a
few times a second, each row's clock from the Pace, never Rich's own speed estimate, which stops
between updates), `LogBoard` as the lines the displays choose to log. Both take a clock (seconds,
default time.monotonic) so that tests drive the time.
"""

from __future__ import annotations

import time
from typing import Callable

from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn
from rich.text import Text

MIN_ETA = 1.0  # seconds: while work remains, the time left never reads 0:00:00


def clock(seconds: float | None) -> str:
    """h:mm:ss, as Rich draws times; '-:--:--' while unknown."""
    if seconds is None:
        return "-:--:--"
    m, s = divmod(int(seconds + 0.5), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}"


class Pace:
    """A piece of work of `total` units (> 0), begun at `now` (seconds of the board's clock).

    advance(done, now) records the units done by then; remaining(now) is the seconds left: None
    before any unit is done, 0 when all are, else (units left) x (seconds per unit so far) less the
    time since the last update, never below MIN_ETA while work remains. Seconds per unit count
    from `since` (default: `now`; set it later when the work proper starts after a preamble).
    prior: seconds per unit known before (a group's steps from the study's pace so far), weighed
    as `weight` units of this work's own, so that its first steps (warm-up) do not swing the ETA.
    done: units already done when this pace begins (a group another worker started): they count
    towards the total, not towards the seconds per unit."""

    def __init__(self, total: float, now: float, prior: float | None = None, weight: float = 10.0, done: float = 0.0):
        self.total, self.started, self.since, self.at = max(float(total), 1e-9), now, now, now
        self.done = self.base = min(float(done), self.total)
        self.prior, self.weight = prior, weight

    def advance(self, done: float, now: float) -> None:
        """Record that `done` units (at most total) are done at time `now`."""
        self.done, self.at = min(float(done), self.total), now

    def elapsed(self, now: float) -> float:
        """Seconds since the work began (never negative)."""
        return max(0.0, now - self.started)

    def rate(self) -> float | None:
        """Seconds per unit so far (with the prior), or None before the first unit without one."""
        seconds, done = max(0.0, self.at - self.since), self.done - self.base
        if self.prior is not None:
            return (seconds + self.prior * self.weight) / (done + self.weight)
        return seconds / done if done > 0 else None

    def remaining(self, now: float) -> float | None:
        """Seconds left at time `now` (see the class docstring); None while unknown."""
        if self.done >= self.total:
            return 0.0
        rate = self.rate()
        if rate is None:
            return None
        return max(rate * (self.total - self.done) - (now - self.at), MIN_ETA)


class Row:
    """One line of a board: a description, progress `completed`/`total`, an optional count text
    (default 'completed/total') and an optional Pace for the elapsed and remaining time."""

    def __init__(self, description: str, total: float | None = None, pace: Pace | None = None, count: str | None = None):
        self.description, self.total, self.completed, self.pace, self.count = description, total, 0.0, pace, count
        self.task = None  # the Rich task id on a LiveBoard


class LogBoard:
    """A board for a log (stderr not a terminal): rows draw nothing; `log` writes one flushed line."""

    live = False

    def __init__(self, write: Callable[[str], None], get_time: Callable[[], float] = time.monotonic):
        self.write, self.get_time = write, get_time

    def add(self, row: Row) -> Row:
        """Show `row` (here: keep it); returns it."""
        return row

    def update(self, row: Row, **changes) -> None:
        """Set the row's fields (description, total, completed, pace, count); a new total starts a new stretch."""
        for k, v in changes.items():
            setattr(row, k, v)

    def remove(self, row: Row) -> None:
        """Stop showing `row`."""

    def log(self, text: str) -> None:
        """One line for a log, written (and flushed) at once."""
        self.write(text)

    def refresh(self) -> None:
        """Draw the rows now (a LiveBoard; tests call it with auto_refresh off)."""


class LiveBoard(LogBoard):
    """A board on a terminal: each row a Rich progress bar with its Pace's elapsed time and ETA;
    cleared when the board closes (transient). `log` lines are not drawn (the bars say it)."""

    live = True

    def __init__(self, console, get_time: Callable[[], float] = time.monotonic, auto_refresh: bool = True):
        super().__init__(lambda text: None, get_time)
        self.progress = _Progress(TextColumn("{task.description}", markup=False), BarColumn(), _CountColumn(),
                                 _ClockColumn(get_time), console=console, transient=True, get_time=get_time,
                                 auto_refresh=auto_refresh, refresh_per_second=4, redirect_stdout=False,
                                 redirect_stderr=False)

    def __enter__(self) -> LiveBoard:
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    @property
    def console(self):
        """The Rich console the bars are drawn on (stderr)."""
        return self.progress.console

    @property
    def started(self) -> bool:
        """Whether the bars are on screen (lines printed now go above them)."""
        return self.progress.live.is_started

    def add(self, row: Row) -> Row:
        """Show a row as a Rich task (its description, count, elapsed time and ETA); returns the row."""
        row.task = self.progress.add_task(row.description, total=row.total, row=row)
        self.progress.update(row.task, completed=row.completed)
        return row

    def update(self, row: Row, **changes) -> None:
        """Change a row's description, total or count; a new total starts its clock over (a new stretch of work)."""
        super().update(row, **changes)
        if row.task is not None:
            if "total" in changes:  # a new stretch of work: Rich's own finished state starts over
                self.progress.reset(row.task, total=row.total, completed=row.completed, description=row.description)
            else:
                self.progress.update(row.task, total=row.total, completed=row.completed, description=row.description)

    def remove(self, row: Row) -> None:
        """Take a row off the screen."""
        if row.task is not None:
            self.progress.remove_task(row.task)
            row.task = None

    def log(self, text: str) -> None:
        """Nothing: on a terminal the bars show progress, and plain lines are for logs (LogBoard.log)."""
        pass

    def refresh(self) -> None:
        """Redraw the bars now."""
        self.progress.refresh()


class _Progress(Progress):
    """Rich's Progress with an empty last line: the cursor rests at its start, so the '^C' a terminal
    echoes on Ctrl-C cannot wrap a full-width bar onto a new line, which would leave the top bar on
    screen after the display is cleared."""

    def get_renderables(self):
        yield self.make_tasks_table(self.tasks)
        yield Text("")


def _row(task) -> Row:
    return task.fields["row"]


class _CountColumn(ProgressColumn):
    """'3/12' (or the row's own count text), right-aligned."""

    def render(self, task):
        row = _row(task)
        text = row.count if row.count is not None else (
            f"{int(row.completed):,}/{int(row.total):,}" if row.total else "")
        return Text(text, justify="right", no_wrap=True)


class _ClockColumn(ProgressColumn):
    """'0:01:23 eta 0:04:10' from the row's Pace on the board's clock."""

    def __init__(self, get_time: Callable[[], float]):
        super().__init__()
        self.get_time = get_time

    def render(self, task):
        pace = _row(task).pace
        if pace is None:
            return Text("")
        now = self.get_time()
        return Text(f"{clock(pace.elapsed(now))} eta {clock(pace.remaining(now))}", no_wrap=True)
