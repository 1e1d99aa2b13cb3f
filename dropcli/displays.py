"""What a long command shows while it works: train's epochs, a phase of counted work, and what
both share with a study's display (study_display.py).

    $ dropcli train --epochs 2              # bars: the run (its ETA) over the epoch's batches
    $ dropcli train --steps 8250 > log 2>&1 # lines: each validation with its elapsed time and ETA

Each display takes the library's callbacks (train.train_group's on_step and on_epoch, groups'
on_progress) and shows them on a board (boards.py): bars on a terminal, one flushed line per
validation in a log. Work is counted in lockstep steps (groups.cell_steps, which also counts the
validations and the final evaluation), so every ETA is the steps left times the measured time of
a step. A Position follows a training through its callbacks, so that a step budget (--steps,
--eval-every: validations within epochs, or epochs without one) counts as right as epochs do.
"""

from __future__ import annotations

from collections import Counter

from dropcli.boards import LogBoard, Pace, Row, clock
from dropcli.config import TrainConfig
from dropcli.groups import cell_steps, validation_steps


def group_sizes(groups: list[list]) -> str:
    """How cells run, in words: 'in 3 groups of 3', 'in 2 groups of 4 and 1 group of 3', or 'one
    at a time' (every group of one)."""
    sizes = Counter(len(g) for g in groups)
    if set(sizes) == {1}:
        return "one at a time"
    return "in " + " and ".join(f"{n} group{'s' if n != 1 else ''} of {k}" for k, n in sorted(sizes.items(), reverse=True))


def cells_as_run(groups: list[list]) -> str:
    """What runs, in words, each fact once: '9 cells in 3 groups of 3', '6 cells one at a time', '1 cell'."""
    cells = sum(len(g) for g in groups)
    return "1 cell" if cells == 1 else f"{cells} cells {group_sizes(groups)}"


class Position:
    """Where one training (a run, or a lockstep group) stands, from train_group's callbacks:
    on_step(s, n) numbers the steps within their epoch, so an epoch begins where s stops growing
    (a step budget validates within epochs, or not in every epoch), and each validation (on_epoch)
    carries the steps done, its record's "step". `work` is in groups.cell_steps' units."""

    def __init__(self, c: TrainConfig):
        self.c, self.before, self.last, self.validations = c, 0, 0, 0  # steps of past epochs; of this one

    def step(self, s: int) -> bool:
        """Step s of its epoch is done; True where it begins an epoch (after the first)."""
        new = s <= self.last
        if new:
            self.before += self.last
        self.last = s
        return new

    def validated(self, steps_done: int | None = None) -> None:
        """A validation after `steps_done` steps (default: the steps counted so far)."""
        self.validations += 1
        if steps_done is not None:
            self.before = steps_done - self.last

    @property
    def steps(self) -> int:
        """Steps done so far."""
        return self.before + self.last

    @property
    def epoch(self) -> int:
        """The epoch under way (1-based): the last step's, or 1 before the first."""
        return min(max(1, -(-self.steps // self.c.steps_per_epoch)), self.c.epochs)

    @property
    def work(self) -> float:
        """Work done, in groups.cell_steps' units: the steps, and each validation at groups.validation_steps."""
        return self.steps + self.validations * validation_steps(self.c)

    @property
    def finished(self) -> bool:
        """Whether every step is done (what remains is the final evaluation)."""
        return self.steps >= self.c.total_steps

    def count(self) -> str:
        """'epoch 2/15', a bar's count."""
        return f"epoch {self.epoch}/{self.c.epochs}"

    @property
    def ends(self) -> bool:
        """Whether the steps done close an epoch (or the run, whose last epoch may be cut short)."""
        return self.steps % self.c.steps_per_epoch == 0 or self.finished

    def where(self) -> str:
        """Where the training stands, in words: 'epoch 2/15' at an epoch's end (or the last step);
        under a step budget (--steps), or within an epoch, 'step 1,650/8,250 (epoch 165/825)', so that
        the lines of one log keep one form."""
        if self.ends and self.c.steps is None:
            return self.count()
        return f"step {self.steps:,}/{self.c.total_steps:,} ({self.count()})"


class TrainDisplay:
    """train's progress: a row for the run (the epoch under way; elapsed and ETA of the whole run,
    validations and the final evaluation included) over a row for the epoch's batches (elapsed and
    ETA of the epoch). status(text) labels what happens before the first step (loading the data).
    In a log: a line at the start, and one per validation with the elapsed time and the ETA."""

    def __init__(self, board: LogBoard, config: TrainConfig):
        self.board, self.c, self.at = board, config, Position(config)
        self.run = board.add(Row("starting"))
        self.batch: Row | None = None

    def status(self, text: str, log: bool = True) -> None:
        """Label what happens now (on a terminal; with log, also as a line in a log)."""
        self.board.update(self.run, description=text)
        if log:
            self.board.log(f"{text[:1].upper()}{text[1:]} ...")

    def start(self) -> None:
        """The training proper begins (call just before train.train)."""
        now, c = self.board.get_time(), self.c
        self.board.update(self.run, description="training", total=cell_steps(c), completed=0,
                          pace=Pace(cell_steps(c), now), count=self.at.count())
        first = min(c.steps_per_epoch, c.total_steps)
        self.batch, self.mark = self.board.add(Row("batch", first, Pace(first, now))), now
        epochs = f"{c.epochs} epoch{'s' if c.epochs != 1 else ''} of {c.steps_per_epoch:,} batches"
        self.board.log(f"Training {epochs}" if c.steps is None else f"Training {c.total_steps:,} steps ({epochs})")

    def on_step(self, s: int, n: int) -> None:
        """train.train_group's on_step: step s of the epoch's n is done."""
        now = self.board.get_time()
        if self.at.step(s):  # a new epoch, begun at the last callback: the batch row's clock starts over
            self.board.update(self.batch, total=n, completed=s, pace=Pace(n, self.mark, self.run.pace.rate()))
        self.mark = now
        self.run.pace.advance(self.at.work, now)
        self.batch.pace.advance(s, now)
        self.board.update(self.batch, completed=s)
        self.board.update(self.run, completed=self.at.work, count=self.at.count())

    def on_epoch(self, epoch: int, step: int | None = None) -> None:
        """A validation (train_group's on_epoch) in epoch `epoch`, after `step` steps (default: the
        steps counted so far); in a log, one line with the elapsed time and the ETA."""
        now = self.board.get_time()
        self.at.validated(step)
        self.mark = now
        self.run.pace.advance(self.at.work, now)
        self.board.update(self.run, completed=self.at.work, count=self.at.count(),
                          description="evaluating" if self.at.finished else "training")
        self.board.log(f"{self.at.where()}{' done' if self.at.ends and self.at.c.steps is None else ''}: {clock(self.run.pace.elapsed(now))} elapsed, "
                       f"eta {clock(self.run.pace.remaining(now))}")


class CountDisplay:
    """A labelled phase of counted work (timing group shapes, Monte-Carlo passes): a bar with its
    elapsed time and ETA; in a log, a line when it starts and one when it ends. Call it as an
    on_progress(done, total) callback."""

    def __init__(self, board: LogBoard, label: str):
        self.board, self.label, self.row = board, label, None

    def __call__(self, done: int, total: int) -> None:
        """`done` of `total` units are done (the first call, usually (0, total), adds the row)."""
        now = self.board.get_time()
        if self.row is None:
            self.row = self.board.add(Row(self.label, total, Pace(total, now)))
            self.board.log(f"{self.label[:1].upper()}{self.label[1:]} ...")
        self.row.pace.advance(done, now)
        self.board.update(self.row, completed=done)
        if done >= total:
            self.board.log(f"{self.label[:1].upper()}{self.label[1:]}: done in {clock(self.row.pace.elapsed(now))}")
