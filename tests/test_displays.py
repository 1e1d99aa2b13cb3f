"""What a terminal shows during a run, moment by moment: the bytes a live display writes, rendered by
a terminal emulator (pyte), with Rich's clock and every ETA driven by a fake clock; and the plain
lines a log gets instead."""

import io
import re

import pyte
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from dropcli.boards import MIN_ETA, Pace, clock
from dropcli.config import TrainConfig
from dropcli.displays import TrainDisplay, cells_as_run, group_sizes
from dropcli.study_display import MEASURING, StudyDisplay, describe_cell
from dropcli.terminal import Terminal

CLOCK = r"(\d+:\d\d:\d\d) eta (\d+:\d\d:\d\d|-:--:--)"


class FakeClock:
    """Seconds that move only when the test says."""

    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def tick(self, seconds: float) -> None:
        self.t += seconds


class Screen:
    """A terminal of cols x rows: one Rich console for stdout and stderr (as on a real screen),
    its bytes rendered by pyte on demand."""

    def __init__(self, cols=110, rows=40):
        self.buffer = io.StringIO()
        self.cols, self.rows = cols, rows
        console = Console(file=self.buffer, force_terminal=True, width=cols, height=rows, color_system=None,
                          markup=False, emoji=False, highlight=False)
        self.clock = FakeClock()
        self.term = Terminal(out=console, err=console, live=True, get_time=self.clock, auto_refresh=False)

    def lines(self) -> list[str]:
        screen = pyte.Screen(self.cols, self.rows)
        pyte.Stream(screen).feed(self.buffer.getvalue().replace("\n", "\r\n"))  # as a tty (ONLCR) does
        return [line.rstrip() for line in screen.display if line.strip()]


def row(lines: list[str], start: str) -> tuple[float, float | None]:
    """(elapsed, eta) in seconds of the bar whose line starts with `start`."""
    [line] = [x for x in lines if x.startswith(start)]
    elapsed, eta = re.search(CLOCK, line).groups()
    seconds = lambda t: sum(int(p) * 60**i for i, p in enumerate(reversed(t.split(":"))))  # noqa: E731
    return seconds(elapsed), None if eta.startswith("-") else seconds(eta)


CONFIG = TrainConfig(hidden=(8,), epochs=3, batch_size=50, train_size=500, validation_size=100)  # 10 steps an epoch


def test_train_clocks_run_across_epochs_and_nothing_is_left_over():
    s = Screen()
    seen = []
    with s.term.board() as board:
        display = TrainDisplay(board, CONFIG)
        display.status("loading the data (mnist)")
        board.refresh()
        assert any(line.startswith("loading the data (mnist)") for line in s.lines())
        s.clock.tick(2)
        display.start()
        for epoch in (1, 2, 3):
            for step in range(1, 11):
                s.clock.tick(0.5)
                display.on_step(step, 10)
                if step in (3, 7):
                    board.refresh()
                    lines = s.lines()
                    assert f"epoch {epoch}/3" in next(x for x in lines if x.startswith("training"))
                    seen.append((row(lines, "training"), row(lines, "batch")))
                    assert re.search(rf"batch .* {step}/10 ", next(x for x in lines if x.startswith("batch")))
            s.clock.tick(0.3)  # validation
            s.term.result(f"Epoch: {epoch:04d} cost = 0.5")
            display.on_epoch(epoch)
        board.refresh()
    run_elapsed = [e for (e, _), _ in seen]
    batch = [b for _, b in seen]
    assert run_elapsed == sorted(run_elapsed) and run_elapsed[-1] > run_elapsed[0]  # the run's clock never stops
    assert all(eta and eta > 0 for (_, eta), _ in seen)  # work remains at every moment seen
    assert [e for e, _ in batch] == [1, 3] * 3 or [e for e, _ in batch] == [2, 4] * 3  # each epoch's own clock
    assert all(eta and eta > 0 for _, eta in batch)  # the batch ETA of epochs 2 and 3 too
    lines = s.lines()
    assert [x for x in lines if x.startswith("Epoch:")] == [f"Epoch: {e:04d} cost = 0.5" for e in (1, 2, 3)]
    assert not [x for x in lines if re.search(CLOCK, x) or x.startswith(("training", "batch", "loading"))], lines


def groups_of(sizes, epochs=2, n_train=500):
    cells, groups, seed = [], [], 0
    for k in sizes:
        g = [CONFIG.replace(keep_prob=(0.5,), seed=(seed := seed + 1), epochs=epochs, train_size=n_train)
             for _ in range(k)]
        groups.append(g)
        cells += g
    return cells, groups


def finished_row(c: TrainConfig, accuracy=0.9) -> dict:
    return {"keep_probs": c.keep_label, "input_keep_prob": c.input_keep_prob, "max_norm": c.max_norm,
            "train_size": c.n_train, "seed": c.seed, "lr": c.lr, "hidden": " ".join(map(str, c.hidden)),
            "test_accuracy": accuracy, "status": "ok"}


def test_a_study_shows_its_eta_from_the_first_group_and_labels_the_measuring():
    s = Screen(cols=110)
    cells, groups = groups_of([2, 2, 1])
    moments = []
    with s.term.board() as board:
        study = StudyDisplay(board, cells, cells)
        study.status("loading the data")
        board.refresh()
        assert any(x.startswith("loading the data") for x in s.lines()) and any(x.startswith("study") for x in s.lines())
        for done in (0, 3, 6, 9):
            study.on_measure(done, 9)
            s.clock.tick(1)
            board.refresh()
            if done in (3, 6):
                lines = s.lines()
                [measuring] = [x for x in lines if x.startswith(MEASURING)]
                assert f"{done}/9" in measuring
                moments.append(("measure", row(lines, MEASURING)))
        study.on_plan(groups)
        for gi, g in enumerate(groups):
            study.on_group(gi, len(groups), g)
            for epoch in (1, 2):
                for step in range(1, 11):
                    s.clock.tick(0.2 * len(g))
                    study.on_step(step, 10)
                    if step == 5:
                        board.refresh()
                        lines = s.lines()
                        cells_word = "cells" if len(g) > 1 else "cell"
                        assert any(x.startswith(f"group {gi + 1}/3: training {len(g)} {cells_word}, 500 images")
                                   and f"epoch {epoch}/2" in x for x in lines)
                        assert any(x.startswith("study") and f"{sum(map(len, groups[:gi]))}/5 cells" in x for x in lines)
                        moments.append(("study", row(lines, "study")))
                s.clock.tick(0.1)
                study.on_epoch(epoch, [{}] * len(g))
            s.clock.tick(1)
            for c in g:
                study.on_cell(finished_row(c))
            s.term.note(f"(a note after group {gi + 1})")
        board.refresh()
    measure = [m for kind, m in moments if kind == "measure"]
    assert measure[1][0] > measure[0][0] and all(eta and eta > 0 for _, eta in measure)
    study_moments = [m for kind, m in moments if kind == "study"]
    assert len(study_moments) == 6
    elapsed = [e for e, _ in study_moments]
    assert elapsed == sorted(elapsed) and len(set(elapsed)) == 6  # the study's clock advances at each moment
    assert all(eta is not None and eta >= MIN_ETA for _, eta in study_moments)  # from the first group on
    etas = [eta for _, eta in study_moments]
    assert etas[0] > etas[-1]
    lines = s.lines()
    assert [x for x in lines if x.startswith("(a note")] == [f"(a note after group {i})" for i in (1, 2, 3)]
    assert not [x for x in lines if re.search(CLOCK, x)], lines
    assert study.what_ran() == "5 cells in 2 groups of 2 and 1 group of 1"


def test_a_log_gets_one_line_per_finished_cell_with_its_accuracy_cells_left_and_eta():
    out = io.StringIO()
    console = Console(file=out, width=80, markup=False, emoji=False, highlight=False)
    clock = FakeClock()
    term = Terminal(out=console, err=console, live=False, get_time=clock)
    cells, groups = groups_of([2, 1], epochs=1)
    with term.board() as board:
        study = StudyDisplay(board, cells, cells[1:] + [], ray=False)  # the first cell was done before
        study.on_measure(0, 3)
        study.on_measure(3, 3)
        todo_groups = [cells[1:2], cells[2:]]
        study.on_plan(todo_groups)
        for gi, g in enumerate(todo_groups):
            study.on_group(gi, 2, g)
            for step in range(1, 11):
                clock.tick(0.1)
                study.on_step(step, 10)
            study.on_epoch(1, [{}])
            clock.tick(0.5)
            study.on_cell(finished_row(g[0], 0.5 + gi / 10))
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("Measuring the fastest group size")
    assert lines[1] == "Training 2 cells one at a time"
    cell_lines = [x for x in lines if x.startswith("cell ")]
    assert len(cell_lines) == 2
    assert re.fullmatch(r"cell 2/3 done \(keep 0\.5, input keep 1, max-norm none, 500 images, seed 2\): "
                        r"test accuracy 0\.5000; 1 cell left, 0:00:0\d elapsed, eta 0:00:0[1-9]", cell_lines[0]), cell_lines
    assert re.fullmatch(r"cell 3/3 done .*: test accuracy 0\.6000; 0 cells left, 0:00:0\d elapsed", cell_lines[1])
    assert [x for x in lines if x.startswith("group ")] == [
        x for x in lines if re.fullmatch(r"group [12]/2: trained 1 cell, 500 images, epoch 1/1; the study's eta .*", x)]


@given(sizes=st.lists(st.integers(1, 9), min_size=1, max_size=12))
def test_what_ran_names_every_group_size(sizes):
    text = group_sizes([[None] * k for k in sizes])
    cells = cells_as_run([[None] * k for k in sizes])
    assert cells.count("cell") == 1 and cells.startswith(f"{sum(sizes)} cell")  # said once
    if sum(sizes) == 1:
        assert cells == "1 cell"
    if set(sizes) == {1}:
        assert text == "one at a time"
        return
    assert cells == f"{sum(sizes)} cells {text}" and text.startswith("in ")
    counted = [(int(n), int(k)) for n, k in re.findall(r"(\d+) groups? of (\d+)", text)]
    assert sorted(counted, key=lambda x: -x[1]) == counted
    assert {k: n for n, k in counted} == {k: sizes.count(k) for k in set(sizes)}


@settings(max_examples=200)
@given(total=st.integers(1, 10_000), rate=st.floats(0.001, 100), done=st.integers(0, 10_000),
       since=st.floats(0, 1e4), wait=st.floats(0, 1e5))
def test_a_pace_never_says_zero_while_work_remains(total, rate, done, since, wait):
    done = min(done, total)
    pace = Pace(total, 0.0)
    pace.since = since
    pace.advance(done, since + done * rate)
    now = since + done * rate + wait
    left = pace.remaining(now)
    if done == total:
        assert left == 0
    elif done == 0:
        assert left is None
    else:
        assert left >= MIN_ETA
        assert left == pytest.approx(max((total - done) * rate - wait, MIN_ETA), rel=1e-6, abs=1e-6)
    assert pace.elapsed(now) == pytest.approx(now)


@given(seconds=st.floats(0, 1e7))
def test_clock_reads_as_rich_draws_time(seconds):
    h, m, s = map(int, clock(seconds).split(":"))
    assert 0 <= m < 60 and 0 <= s < 60 and abs(h * 3600 + m * 60 + s - seconds) <= 0.5


def test_a_real_study_on_a_110_column_screen(tmp_path, monkeypatch):
    """run_ablate on a tiny grid, the screen rendered while it measures and while each group trains."""
    from dropcli.grid import GridSpec
    from dropcli.plan import make_plan
    from dropcli.study_commands import Execution, run_ablate

    base = TrainConfig(hidden=(32, 32), epochs=1, batch_size=50, validation_size=500)
    plan = make_plan(GridSpec(keep_probs=((0.5,), (1.0,)), train_sizes=(500,), seeds=(1, 2, 3)), base, tmp_path / "s[1]")
    s = Screen(cols=110, rows=60)
    snapshots = []
    real_step, real_measure = StudyDisplay.on_step, StudyDisplay.on_measure

    def on_step(self, step, n):
        s.clock.tick(0.25)
        real_step(self, step, n)
        if step % 3 == 0:
            self.board.refresh()
            snapshots.append(("group", s.lines()))

    def on_measure(self, done, total):
        s.clock.tick(0.5)
        real_measure(self, done, total)
        if 0 < done < total:
            self.board.refresh()
            snapshots.append(("measure", s.lines()))

    monkeypatch.setattr(StudyDisplay, "on_step", on_step)
    monkeypatch.setattr(StudyDisplay, "on_measure", on_measure)
    import dropcli.groups
    import dropcli.speeds

    monkeypatch.setattr(dropcli.groups, "worth_measuring", lambda *a: True)  # as a grid big enough to repay it
    monkeypatch.setattr(dropcli.speeds, "cache_path", lambda: tmp_path / "group-sizes.json")  # nothing cached
    run_ablate(plan, Execution(device_name="cpu"), False, s.term, resume="dropcli ablate")
    measuring = [lines for kind, lines in snapshots if kind == "measure"]
    training = [lines for kind, lines in snapshots if kind == "group"]
    assert measuring and training
    assert all(any(x.startswith(MEASURING) for x in lines) for lines in measuring)
    clocks = [row(lines, "study") for lines in training]
    assert all(eta is not None and eta > 0 for _, eta in clocks), clocks  # from the first group on
    assert [e for e, _ in clocks] == sorted(e for e, _ in clocks) and clocks[-1][0] > clocks[0][0]
    for lines in training:
        [batch] = [x for x in lines if x.startswith("batch")]
        assert re.search(r" [369]/10 ", batch), batch  # this grid's 500 images, not the full data's 550 batches
    final = s.lines()
    assert not [x for x in final if re.search(CLOCK, x)], final
    text = "\n".join(final)
    assert re.search(r"Trained 6 cells (in .*group|one at a time).* \(the group size chosen for this machine", text), text
    wrote = "Wrote study.json, runs.csv, history.csv, summary.csv, ablation.png, differences.png, curves.png and report.html in"
    assert f"{wrote} {tmp_path / 's[1]'}" in text or (wrote in text.replace("\n", " ") and f"  {tmp_path / 's[1]'}" in final)


def test_a_prior_gives_a_new_group_its_eta_before_its_first_step_and_damps_its_warm_up():
    pace = Pace(100, 0.0, prior=0.5)
    assert pace.remaining(0.0) == pytest.approx(50.0)
    pace.advance(1, 5.0)  # a slow first step (warm-up): 5 s instead of 0.5 s
    assert pace.remaining(5.0) == pytest.approx(99 * (5.0 + 0.5 * 10) / 11)
    assert Pace(100, 0.0).remaining(0.0) is None


def train_group_calls(c: TrainConfig, on_step, on_validation, tick):
    """Make train_group's callbacks as train.py's loop does for config c (a step budget: the last
    epoch may be cut short; a validation every eval_interval steps and after the last), calling
    tick() before each step; on_step(s, n, steps done) and on_validation(epoch, steps done)."""
    total, every, per_epoch = c.total_steps, c.eval_interval, c.steps_per_epoch
    for done in range(1, total + 1):
        tick()
        start = (done - 1) // per_epoch * per_epoch
        on_step(done - start, min(per_epoch, total - start), done)
        if done % every == 0 or done == total:
            on_validation(-(-done // per_epoch), done)


def truth(c: TrainConfig, done: int, validated: bool = False) -> float:
    """The work of `done` steps in groups.cell_steps' units: the steps and the validations so far
    (with `validated`, that after step `done` too, where there is one)."""
    from dropcli.groups import validation_steps

    every = c.eval_interval
    validations = done // every + (done == c.total_steps and done % every > 0) if validated else (done - 1) // every
    return done + validations * validation_steps(c)


@settings(max_examples=40, deadline=None)
@given(steps=st.integers(1, 60), every=st.integers(1, 25))
def test_train_under_a_step_budget_counts_epochs_batches_and_validations_right(steps, every):
    c = CONFIG.replace(steps=steps, eval_every=every)  # 10 steps an epoch; the last may be cut short
    clock_, lines, seen = FakeClock(), [], []
    term = Terminal(live=False, get_time=clock_, err=Console(file=io.StringIO()), out=Console(file=io.StringIO()))
    with term.board() as board:
        board.write = lines.append
        display = TrainDisplay(board, c)
        display.start()

        def on_step(s, n, done):
            display.on_step(s, n)
            seen.append((done, display.run.completed, display.run.count, display.batch.total, display.batch.completed,
                         display.run.pace.remaining(clock_()), display.batch.pace.elapsed(clock_())))

        def on_validation(epoch, done):
            display.on_epoch(epoch, done)
            assert display.run.completed == pytest.approx(truth(c, done, validated=True))

        train_group_calls(c, on_step, on_validation, lambda: clock_.tick(0.5))
    for done, completed, count, batch_total, batch_done, eta, batch_elapsed in seen:
        start = (done - 1) // 10 * 10
        assert completed == pytest.approx(truth(c, done))  # the run's bar: steps and validations done, no more
        assert count == f"epoch {-(-done // 10)}/{c.epochs}"
        assert (batch_total, batch_done) == (min(10, steps - start), done - start)  # each epoch's own batches
        assert eta is not None and eta > 0  # the final evaluation is still to come
        assert 0 < batch_elapsed <= 5.0 + 1e-9  # each epoch's own clock: at most its 10 steps of 0.5 s
    assert lines[0] == f"Training {steps:,} steps ({c.epochs} epoch{'s' if c.epochs > 1 else ''} of 10 batches)"
    validations = lines[1:]
    assert len(validations) == c.validations
    assert validations[-1].startswith(f"step {steps}/{steps} (epoch {c.epochs}/{c.epochs}): ")
    for line, done in zip(validations, [*range(every, steps, every), steps]):
        where = f"step {done}/{steps} (epoch {-(-done // 10)}/{c.epochs})"  # one form in a log under a budget
        assert re.fullmatch(rf"{re.escape(where)}: \d:\d\d:\d\d elapsed, eta \d:\d\d:\d\d", line), (line, where)


def test_a_study_under_a_step_budget_counts_a_group_of_many_short_epochs_right():
    """A group of two 1,000-image cells (10 steps an epoch) at 2,000 steps, validated every 155:
    200 epochs, most without a validation, and validations within epochs."""
    c0 = CONFIG.replace(train_size=1000, batch_size=100, steps=2000, eval_every=155)
    group = [c0.replace(seed=1), c0.replace(seed=2)]
    out, clock_ = io.StringIO(), FakeClock()
    term = Terminal(out=Console(file=io.StringIO()), err=Console(file=out, width=200), live=False, get_time=clock_)
    moments = []
    with term.board() as board:
        study = StudyDisplay(board, group, group)
        study.on_plan([group])
        study.on_group(0, 1, group)

        def on_step(s, n, done):
            study.on_step(s, n)
            if done % 37 == 0:
                moments.append((done, study.phase.completed, study.study.completed, study.phase.count,
                                study.batch.total, study.batch.completed, study.pace.remaining(clock_())))

        train_group_calls(c0, on_step, lambda e, done: study.on_epoch(e, [{"step": done}] * 2), lambda: clock_.tick(0.1))
        clock_.tick(1)
        for c in group:
            study.on_cell(finished_row(c))
    assert len(moments) == 2000 // 37
    for done, phase, whole, count, batch_total, batch_done, eta in moments:
        assert phase == pytest.approx(truth(c0, done)) and whole == pytest.approx(2 * truth(c0, done))
        assert count == f"epoch {-(-done // 10)}/200" and (batch_total, batch_done) == (10, (done - 1) % 10 + 1)
        assert eta is not None and eta > 0
    assert [eta for *_, eta in moments] == sorted((eta for *_, eta in moments), reverse=True)  # steady: counts down
    assert study.pace.done == study.pace.total  # every cell's work, once
    lines = out.getvalue().splitlines()
    group_lines = [x for x in lines if x.startswith("group ")]
    assert len(group_lines) == c0.validations == 13
    assert group_lines[0].startswith("group 1/1: trained 2 cells, 1,000 images, step 155/2,000 (epoch 16/200); ")
    assert group_lines[1].startswith("group 1/1: trained 2 cells, 1,000 images, step 310/2,000 (epoch 31/200); ")
    assert group_lines[-1].startswith("group 1/1: trained 2 cells, 1,000 images, step 2,000/2,000 (epoch 200/200); ")
    assert lines[0] == "Training 2 cells in 1 group of 2"


def test_a_cell_of_a_study_over_lrs_or_widths_is_described_by_them_too():
    row = finished_row(CONFIG.replace(keep_prob=(0.5,), seed=3, train_size=500, lr=0.003, hidden=(64, 64)))
    assert describe_cell(row) == "keep 0.5, input keep 1, max-norm none, 500 images, seed 3"
    assert describe_cell(row, ("lr", "hidden")) == "keep 0.5, input keep 1, max-norm none, 500 images, lr 0.003, hidden 64 64, seed 3"
    cells = [CONFIG.replace(lr=lr) for lr in (0.001, 0.003)]
    assert StudyDisplay(Terminal(live=False).board().__enter__(), cells, cells).axes == ("lr",)


def test_a_study_on_worker_processes_counts_every_running_group_in_its_eta():
    """Two worker processes train two one-cell groups side by side, then two more: the study's pace
    counts the group shown and the one beside it (on_other), so its ETA is the time left, not twice it."""
    from dropcli.groups import cell_steps, validation_steps

    cells, groups = groups_of([1, 1, 1, 1], epochs=2, n_train=1000)
    c, unit = cells[0], 0.1  # seconds per unit of work on each worker
    n = c.steps_per_epoch
    final = cell_steps(c) - c.total_steps - c.validations * validation_steps(c)
    out, clock_ = io.StringIO(), FakeClock()
    term = Terminal(out=Console(file=io.StringIO()), err=Console(file=out, width=200), live=False, get_time=clock_)
    etas = []
    with term.board() as board:
        study = StudyDisplay(board, cells, cells)
        study.on_plan(groups, workers=2)
        start = clock_()
        for shown, beside in ((0, 1), (2, 3)):
            study.on_group(shown, 4, groups[shown])
            for epoch in (1, 2):
                for step in range(1, n + 1):
                    clock_.tick(unit)
                    study.on_step(step, n)
                    study.on_other(beside, "step", step, n)
                clock_.tick(unit * validation_steps(c))
                study.on_epoch(epoch, [{"step": n * epoch}])
                study.on_other(beside, "epoch", epoch, [{"step": n * epoch}])
                etas.append((clock_() - start, study.pace.remaining(clock_())))
            clock_.tick(unit * final)
            for gi in (shown, beside):
                study.on_cell(finished_row(groups[gi][0]))
    total = 2 * cell_steps(c) * unit
    for elapsed, eta in etas:
        assert eta == pytest.approx(total - elapsed, rel=0.05), (elapsed, eta, total)
    assert study.pace.done == study.pace.total and not study.flight


def test_a_running_group_heard_of_before_any_group_is_shown_counts_and_draws_nothing_else():
    """Worker processes stopped at once (a SIGTERM to the process group) can end every group before
    one is shown; their last steps still reach on_other, which advances the study's row alone."""
    cells, groups = groups_of([1, 1], epochs=1, n_train=1000)
    term = Terminal(out=Console(file=io.StringIO()), err=Console(file=io.StringIO(), width=120), live=False,
                    get_time=FakeClock())
    with term.board() as board:
        study = StudyDisplay(board, cells, cells)
        study.on_plan(groups, workers=2)
        study.on_other(1, "step", 3, cells[0].steps_per_epoch)
        study.on_other(1, "epoch", 1, [{"step": 3}])
        assert study.group is None and study.at is None and study.pace.done > 3
