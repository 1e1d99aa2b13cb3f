"""What `ablate` shows while it works: the study, its phase and the epoch's batches.

    $ dropcli ablate --grid                 # bars: study (cells, ETA), measuring or a group, batch
    $ dropcli ablate --grid > log 2>&1      # lines: each finished cell, its accuracy, cells left, ETA

StudyDisplay takes ablate.StudyProgress's callbacks and shows them on a board (boards.py). The
study's ETA is the lockstep steps left (groups.cell_steps) times the measured time of a step, from
the first steps of the first group on; a new group's ETA starts from that pace, so its warm-up
does not swing it. Each group's place is a displays.Position, right under a step budget too.
"""

from __future__ import annotations

from dropcli.boards import LogBoard, Pace, Row, clock
from dropcli.config import TrainConfig, fmt_max_norm, fmt_number
from dropcli.displays import Position, cells_as_run
from dropcli.grid import cell_id_of
from dropcli.groups import cell_steps
from dropcli.tables import row_cell_id

MEASURING = "measuring the fastest group size"


def describe_cell(row: dict, axes: tuple[str, ...] = ()) -> str:
    """A runs.csv row's cell in words: 'keep 0.5, input keep 1, max-norm none, 5,000 images, seed
    777'; with axes ('lr', 'hidden': those the study varies) also ', lr 0.003, hidden 64 64'
    before the seed, so that cells differing only there read apart."""
    mn = row.get("max_norm")
    mn = None if mn is None or mn != mn else mn
    shown = {"lr": lambda v: fmt_number(float(v)), "hidden": str}
    varied = "".join(f", {a} {shown[a](row[a])}" for a in axes if a in row)
    return (f"keep {row['keep_probs']}, input keep {fmt_number(float(row['input_keep_prob']))}, "
            f"max-norm {fmt_max_norm(mn)}, {int(row['train_size']):,} images{varied}, seed {row['seed']}")


class StudyDisplay:
    """ablate's progress, fed by ablate.StudyProgress's callbacks (see `callbacks`): a row for the
    study (cells done; elapsed since the start, ETA of the cells left), a row for the phase (loading,
    measuring the group size with its own progress, then each group's epochs) and a row for the
    batches of the epoch. In a log: one line when the plan is known, one per validation of a group
    and one per finished cell (what finished, its accuracy, cells left, ETA)."""

    def __init__(self, board: LogBoard, cells: list[TrainConfig], todo: list[TrainConfig], ray: bool = False):
        now = board.get_time()
        self.board, self.ray, self.groups = board, ray, None
        self.work = {cell_id_of(c): cell_steps(c) for c in todo}
        self.total_cells, self.done_cells, self.cell_work = len(cells), len(cells) - len(todo), 0.0
        self.group, self.group_index, self.at, self.mark, self.workers = None, None, None, now, 1
        self.flight: dict[int, tuple[Position, set[str]]] = {}  # running groups: place, cells not yet committed
        self.pace = Pace(sum(self.work.values()), now)
        self.study = board.add(Row("study", sum(self.work.values()), self.pace, self._count()))
        self.phase = board.add(Row("starting"))
        self.batch: Row | None = None
        self.axes = tuple(a for a in ("lr", "hidden") if len({getattr(c, a) for c in cells}) > 1)  # in each cell's line

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
                             on_epoch=self.on_epoch, on_step=self.on_step, on_cell=self.on_cell,
                             on_other=self.on_other)

    def on_measure(self, done: int, total: int) -> None:
        """groups.measure_group_sizes' on_progress: the measuring phase, labelled, with its own clock."""
        now = self.board.get_time()
        if done == 0 or self.phase.pace is None:
            self.board.update(self.phase, description=MEASURING, total=total, completed=0, pace=Pace(total, now))
            self.board.log(f"{MEASURING[:1].upper()}{MEASURING[1:]} (a few steps at each size) ...")
        self.phase.pace.advance(done, now)
        self.board.update(self.phase, completed=done)

    def on_plan(self, groups: list[list[TrainConfig]], workers: int = 1) -> None:
        """The lockstep groups about to run (on `workers` processes side by side): the study's clock
        counts work from here."""
        self.groups, self.workers = groups, max(1, workers)
        self.pace.since = self.board.get_time()  # the rate of work counts from here
        self.board.update(self.phase, description="training on the Ray cluster" if self.ray else "starting",
                          total=None, completed=0, pace=None)
        self.board.log(f"Training {cells_as_run(groups)}" + (f" on {workers} worker processes" if workers > 1 else ""))

    def on_group(self, gi: int, n: int, group: list[TrainConfig]) -> None:
        """Group gi (0-based) of n is the one shown (it starts, or, with worker processes, the group
        shown before has ended and gi has been running beside it): its row and a batch row, their ETAs
        from the study's pace and, for a group under way, from where it stands."""
        now, c = self.board.get_time(), group[0]
        if not self.flight and self.pace.done == 0:  # the first group to start (worker processes start
            self.pace.since = now  # in seconds, and load the data): the rate of work counts from here
        self.group, self.group_index, self.groups_count, self.mark = group, gi, n, now
        self.at = self._flying(gi, group)
        prior, first = self._step_prior(), min(c.steps_per_epoch, c.total_steps)
        self.board.update(self.phase, description=self._group_label("training"), total=cell_steps(c),
                          completed=self.at.work, pace=Pace(cell_steps(c), now, prior, done=self.at.work),
                          count=self.at.count())
        if self.batch is None:
            self.batch = self.board.add(Row("batch", first, Pace(first, now, prior, done=self.at.last)))
        else:
            self.board.update(self.batch, total=first, completed=self.at.last, pace=Pace(first, now, prior, done=self.at.last))

    def _flying(self, gi: int, group: list[TrainConfig]) -> Position:
        """The place of running group gi, kept from its first event until its cells are committed."""
        if gi not in self.flight:
            self.flight[gi] = (Position(group[0]), {cell_id_of(c) for c in group})
        return self.flight[gi][0]

    def on_other(self, gi: int, kind: str, *event) -> None:
        """A step ('step', s, n) or validation ('epoch', epoch, records) of running group gi that is
        not the one shown (worker processes): it counts towards the study's pace and ETA."""
        at = self._flying(gi, self.groups[gi] if self.groups else [])
        if kind == "step":
            at.step(event[0])
        else:
            at.validated((event[1][0] if event[1] else {}).get("step"))
        self._advance_study(self.board.get_time())  # the study's row only: the group shown is another, or none yet
        self.board.update(self.study, completed=self.pace.done)

    def _step_prior(self) -> float | None:
        """Seconds per lockstep step of the current group, from the study's pace so far (None before):
        the study's work goes at `workers` groups at once, each of them at 1/workers of its pace."""
        rate = self.pace.rate() if self.pace.done > 0 else None
        return None if rate is None else rate * len(self.group) * min(self.workers, len(self.groups or [0]))

    def _group_label(self, doing: str) -> str:
        c, k = self.group[0], len(self.group)
        return f"group {self.group_index + 1}/{self.groups_count}: {doing} {k} cell{'s' if k != 1 else ''}, {c.n_train:,} images"

    def _advance_study(self, now: float) -> None:
        """The study's work done: its committed cells' and every running group's so far (never less than before)."""
        flying = sum(len(left) * at.work for at, left in self.flight.values())
        self.pace.advance(max(self.cell_work + flying, self.pace.done), now)

    def _advance(self, now: float) -> None:
        self.mark = now
        if self.group is not None:
            self.phase.pace.advance(self.at.work, now)
        self._advance_study(now)
        self.board.update(self.phase, completed=self.at.work, count=self.at.count())
        self.board.update(self.study, completed=self.pace.done)

    def on_step(self, s: int, n: int) -> None:
        """Step s of the current group's epoch (n steps) is done."""
        now = self.board.get_time()
        if self.at.step(s):  # a new epoch, begun at the last callback: the batch row's clock starts over
            self.board.update(self.batch, total=n, completed=s, pace=Pace(n, self.mark, self.phase.pace.rate()))
        self.batch.pace.advance(s, now)
        self.board.update(self.batch, completed=s)
        self._advance(now)

    def on_epoch(self, epoch: int, records: list[dict]) -> None:
        """A validation of the current group in epoch `epoch` (train_group's on_epoch; records[0]["step"]:
        the steps done, else those counted so far); in a log, one line with the study's ETA."""
        now = self.board.get_time()
        self.at.validated((records[0] if records else {}).get("step"))
        self._advance(now)
        self.board.update(self.phase, description=self._group_label("evaluating" if self.at.finished else "training"))
        self.board.log(f"{self._group_label('trained')}, {self.at.where()}; the study's eta {clock(self.pace.remaining(now))}")

    def on_cell(self, row: dict) -> None:
        """A committed runs.csv row: the count of cells, and in a log one line (what, accuracy, cells left, ETA)."""
        now = self.board.get_time()
        key = row_cell_id(row)
        self.done_cells += 1
        self.cell_work += self.work.get(key, 0.0)
        for gi, (_, left) in list(self.flight.items()):
            left.discard(key)
            if not left:  # a lockstep group commits all its cells at once: the whole group is done
                del self.flight[gi]
                self.group = None if gi == self.group_index else self.group
        self._advance_study(now)
        self.board.update(self.study, completed=self.pace.done, count=self._count())
        left = self.total_cells - self.done_cells
        accuracy = (f"test accuracy {row['test_accuracy']:.4f}" if row.get("status") == "ok"
                    else f"{row.get('status')} (the cost became NaN or infinite)")
        self.board.log(f"cell {self.done_cells}/{self.total_cells} done ({describe_cell(row, self.axes)}): {accuracy}; "
                       f"{left} cell{'s' if left != 1 else ''} left, {clock(self.pace.elapsed(now))} elapsed"
                       + (f", eta {clock(self.pace.remaining(now))}" if left else ""))

    def what_ran(self) -> str | None:
        """'9 cells in 3 groups of 3', '6 cells one at a time', or None when nothing was planned."""
        return cells_as_run(self.groups) if self.groups else None
