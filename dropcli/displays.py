"""What a long command shows while it works: train's epochs, a study's cells, a phase of timing.

    $ dropcli train --epochs 2              # bars: epoch (the run's ETA) over batch (this epoch's)
    $ dropcli ablate ... > log 2>&1         # lines: each finished cell, its accuracy, cells left, ETA

Each display takes the library's callbacks (train.train_group's on_step and on_epoch, ablate's
StudyProgress, groups' on_progress) and shows them on a board (boards.py): bars on a terminal,
one flushed line per finished cell or epoch in a log. Work is counted in lockstep steps
(groups.cell_steps, which also counts the evaluations), so every ETA is the steps left times the
measured time of a step, from the first steps of the first group on.
"""

from __future__ import annotations

from collections import Counter

from dropcli.boards import LogBoard, Pace, Row, clock
from dropcli.config import TrainConfig, fmt_max_norm, fmt_number
from dropcli.grid import cell_id_of
from dropcli.groups import cell_steps
from dropcli.tables import row_cell_id

MEASURING = "measuring the fastest group size"


def group_sizes(groups: list[list]) -> str:
    """What ran, in words: '3 groups of 3 cells', '2 groups of 4 cells and 1 of 3', '5 cells one at a time'."""
    sizes = Counter(len(g) for g in groups)
    if set(sizes) == {1}:
        return f"{sizes[1]} cell{'s' if sizes[1] != 1 else ''} one at a time"
    parts = [f"{n} group{'s' if n != 1 else ''} of {k}{' cells' if i == 0 else ''}"
             for i, (k, n) in enumerate(sorted(sizes.items(), reverse=True))]
    return " and ".join(parts)


def describe_cell(row: dict) -> str:
    """A runs.csv row's cell in words: 'keep 0.5, input keep 1, max-norm none, 5,000 images, seed 777'."""
    mn = row.get("max_norm")
    mn = None if mn is None or mn != mn else mn
    return (f"keep {row['keep_probs']}, input keep {fmt_number(float(row['input_keep_prob']))}, "
            f"max-norm {fmt_max_norm(mn)}, {int(row['train_size']):,} images, seed {row['seed']}")


class TrainDisplay:
    """train's progress: a row for the run (epochs done; elapsed and ETA of the whole run,
    evaluations included) over a row for the epoch's batches (elapsed and ETA of the epoch).
    status(text) labels what happens before the first step (loading the data, preparing)."""

    def __init__(self, board: LogBoard, config: TrainConfig):
        self.board, self.c, self.epoch = board, config, 1
        self.per_epoch = config.steps_per_epoch + config.validation_size / config.batch_size / 3
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
                          pace=Pace(cell_steps(c), now), count=f"epoch 1/{c.epochs}")
        self.batch = self.board.add(Row("batch", c.steps_per_epoch, Pace(c.steps_per_epoch, now)))
        self.board.log(f"Training {c.epochs} epoch{'s' if c.epochs != 1 else ''} of {c.steps_per_epoch:,} batches")

    def on_step(self, s: int, n: int) -> None:
        """train.train_group's on_step: step s of the epoch's n is done."""
        now, done = self.board.get_time(), (self.epoch - 1) * self.per_epoch + s
        self.run.pace.advance(done, now)
        self.batch.pace.advance(s, now)
        self.board.update(self.batch, completed=s)
        self.board.update(self.run, completed=done)

    def on_epoch(self, epoch: int) -> None:
        """Epoch `epoch` (1-based) is done, its validation included; in a log, one line with the ETA."""
        now, c = self.board.get_time(), self.c
        self.run.pace.advance(epoch * self.per_epoch, now)
        self.board.update(self.run, completed=self.run.pace.done, count=f"epoch {min(epoch + 1, c.epochs)}/{c.epochs}",
                          description="training" if epoch < c.epochs else "evaluating")
        self.board.log(f"epoch {epoch}/{c.epochs} done: {clock(self.run.pace.elapsed(now))} elapsed, "
                       f"eta {clock(self.run.pace.remaining(now))}")
        self.epoch = epoch + 1
        if epoch < c.epochs:
            self.board.update(self.batch, total=c.steps_per_epoch, completed=0,
                              pace=Pace(c.steps_per_epoch, now, self.run.pace.rate()))


class StudyDisplay:
    """ablate's progress, fed by ablate.StudyProgress's callbacks (see `callbacks`): a row for the
    study (cells done; elapsed since the start, ETA of the cells left), a row for the phase (loading,
    measuring the group size with its own progress, then each group's epochs) and a row for the
    batches of the epoch. In a log: one line when the plan is known, one per group epoch and one
    per finished cell (what finished, its accuracy, cells left, ETA)."""

    def __init__(self, board: LogBoard, cells: list[TrainConfig], todo: list[TrainConfig], ray: bool = False):
        now = board.get_time()
        self.board, self.ray, self.groups = board, ray, None
        self.work = {cell_id_of(c): cell_steps(c) for c in todo}
        self.total_cells, self.done_cells, self.cell_work = len(cells), len(cells) - len(todo), 0.0
        self.finished_work, self.group, self.group_index, self.epoch = 0.0, None, 0, 1
        self.pace = Pace(sum(self.work.values()), now)
        self.study = board.add(Row("study", sum(self.work.values()), self.pace, self._count()))
        self.phase = board.add(Row("starting"))
        self.batch: Row | None = None

    def status(self, text: str) -> None:
        """Label the phase row (on a terminal) with what happens now: loading, writing the summary."""
        self.board.update(self.phase, description=text, total=None, completed=0, pace=None, count=None)
        if self.batch is not None:
            self.board.remove(self.batch)
            self.batch = None

    def _count(self) -> str:
        return f"{self.done_cells}/{self.total_cells} cells"

    def callbacks(self):
        """The ablate.StudyProgress that feeds this display."""
        from dropcli.ablate import StudyProgress

        return StudyProgress(on_measure=self.on_measure, on_plan=self.on_plan, on_group=self.on_group,
                             on_epoch=self.on_epoch, on_step=self.on_step, on_cell=self.on_cell)

    def on_measure(self, done: int, total: int) -> None:
        """groups.measure_group_sizes' on_progress: the measuring phase, labelled, with its own clock."""
        now = self.board.get_time()
        if done == 0 or self.phase.pace is None:
            self.board.update(self.phase, description=MEASURING, total=total, completed=0, pace=Pace(total, now))
            self.board.log(f"{MEASURING[:1].upper()}{MEASURING[1:]} (a few steps at each size) ...")
        self.phase.pace.advance(done, now)
        self.board.update(self.phase, completed=done)

    def on_plan(self, groups: list[list[TrainConfig]]) -> None:
        """The lockstep groups about to run: the study's clock counts work from here."""
        self.groups = groups
        self.pace.since = self.board.get_time()  # the rate of work counts from here
        cells = sum(len(g) for g in groups)
        self.board.update(self.phase, description="training on the Ray cluster" if self.ray else "starting",
                          total=None, completed=0, pace=None)
        self.board.log(f"Training {cells} cell{'s' if cells != 1 else ''} in {group_sizes(groups)}")

    def on_group(self, gi: int, n: int, group: list[TrainConfig]) -> None:
        """Group gi (0-based) of n starts: its row and a batch row, their ETAs from the study's pace."""
        now, c = self.board.get_time(), group[0]
        if self.group is not None:
            self.finished_work += sum(self.work.get(cell_id_of(x), 0.0) for x in self.group)
        self.group, self.group_index, self.groups_count, self.epoch = group, gi, n, 1
        self.per_epoch = c.steps_per_epoch + c.validation_size / c.batch_size / 3
        step = self._step_prior()
        self.board.update(self.phase, description=self._group_label("training"), total=cell_steps(c), completed=0,
                          pace=Pace(cell_steps(c), now, step), count=f"epoch 1/{c.epochs}")
        if self.batch is None:
            self.batch = self.board.add(Row("batch", c.steps_per_epoch, Pace(c.steps_per_epoch, now, step)))
        else:
            self.board.update(self.batch, total=c.steps_per_epoch, completed=0, pace=Pace(c.steps_per_epoch, now, step))

    def _step_prior(self) -> float | None:
        """Seconds per lockstep step of the current group, from the study's pace so far (None before)."""
        rate = self.pace.rate() if self.pace.done > 0 else None
        return None if rate is None else rate * len(self.group)

    def _group_label(self, doing: str) -> str:
        c, k = self.group[0], len(self.group)
        return f"group {self.group_index + 1}/{self.groups_count}: {doing} {k} cell{'s' if k != 1 else ''}, {c.n_train:,} images"

    def _advance(self, group_done: float, now: float) -> None:
        self.phase.pace.advance(group_done, now)
        self.pace.advance(max(self.finished_work + len(self.group or ()) * group_done, self.cell_work), now)
        self.board.update(self.phase, completed=group_done)
        self.board.update(self.study, completed=self.pace.done)

    def on_step(self, s: int, n: int) -> None:
        """Step s of the current group's epoch (n steps) is done."""
        now = self.board.get_time()
        self.batch.pace.advance(s, now)
        self.board.update(self.batch, completed=s)
        self._advance((self.epoch - 1) * self.per_epoch + s, now)

    def on_epoch(self, epoch: int, records: list[dict]) -> None:
        """The current group finished epoch `epoch`; in a log, one line with the study's ETA."""
        now, c = self.board.get_time(), self.group[0]
        self._advance(epoch * self.per_epoch, now)
        self.board.update(self.phase, count=f"epoch {min(epoch + 1, c.epochs)}/{c.epochs}",
                          description=self._group_label("training" if epoch < c.epochs else "evaluating"))
        self.board.log(f"{self._group_label('trained')}, epoch {epoch}/{c.epochs}; "
                       f"the study's eta {clock(self.pace.remaining(now))}")
        self.epoch = epoch + 1
        if epoch < c.epochs:
            self.board.update(self.batch, total=c.steps_per_epoch, completed=0,
                              pace=Pace(c.steps_per_epoch, now, self.phase.pace.rate()))

    def on_cell(self, row: dict) -> None:
        """A committed runs.csv row: the count of cells, and in a log one line (what, accuracy, cells left, ETA)."""
        now = self.board.get_time()
        key = row_cell_id(row)
        self.done_cells += 1
        self.cell_work += self.work.get(key, 0.0)
        if self.group is not None and key in {cell_id_of(c) for c in self.group}:
            # a lockstep group commits all its cells at once: the whole group is done
            self.finished_work += sum(self.work.get(cell_id_of(x), 0.0) for x in self.group)
            self.group = None
        self.pace.advance(max(self.cell_work, self.finished_work, self.pace.done), now)
        self.board.update(self.study, completed=self.pace.done, count=self._count())
        left = self.total_cells - self.done_cells
        accuracy = (f"test accuracy {row['test_accuracy']:.4f}" if row.get("status") == "ok"
                    else f"{row.get('status')} (the cost became NaN or infinite)")
        self.board.log(f"cell {self.done_cells}/{self.total_cells} done ({describe_cell(row)}): {accuracy}; "
                       f"{left} cell{'s' if left != 1 else ''} left, {clock(self.pace.elapsed(now))} elapsed"
                       + (f", eta {clock(self.pace.remaining(now))}" if left else ""))

    def what_ran(self) -> str | None:
        """'9 cells in 3 groups of 3 cells', '6 cells one at a time', or None when nothing was planned."""
        if not self.groups:
            return None
        if all(len(g) == 1 for g in self.groups):
            return group_sizes(self.groups)
        cells = sum(len(g) for g in self.groups)
        return f"{cells} cell{'s' if cells != 1 else ''} in {group_sizes(self.groups)}"


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
