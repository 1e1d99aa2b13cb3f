"""On a real terminal: every printed line stays on screen, no progress bar is left behind, and a
scheduler's SIGTERM stops a study as cleanly as Ctrl-C."""

import builtins
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyte
import pytest
from conftest import console_script

SMALL = ["--train-size", "10000", "--validation-size", "1000", "--device", "cpu"]  # epochs long enough to draw bars
BAR_LABELS = ("study ", "training ", "evaluating ", "batch ", "group ", "starting", "loading the data", "measuring ",
              "writing the summary")  # what the progress rows start with (displays.py)


def run_on_terminal(args, folder, cols=160, rows=50, env=None, timeout=300):
    """Run `dropcli args` (the console script users run, as pyproject's entry point makes it, written
    into `folder`) on a pseudo-terminal of cols x rows; return its exit status and the screen as a
    terminal emulator (pyte) renders the bytes it wrote."""
    master, slave = pty.openpty()
    import fcntl
    import struct
    import termios

    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    proc = subprocess.Popen([*console_script(folder), *args], stdin=slave, stdout=slave, stderr=slave,
                            env={**os.environ, "TERM": "xterm-256color", "COLUMNS": str(cols), "LINES": str(rows),
                                 "PYTHONPATH": str(Path(__file__).resolve().parents[1]), **(env or {})}, close_fds=True)
    os.close(slave)
    screen = pyte.Screen(cols, rows)
    stream = pyte.ByteStream(screen)
    deadline = time.time() + timeout
    while time.time() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            stream.feed(data)
        elif proc.poll() is not None:
            break
    code = proc.wait(timeout=30)
    os.close(master)
    return code, [line.rstrip() for line in screen.display]


@pytest.mark.parametrize("cols", [160, 110])
def test_train_keeps_every_epoch_line_and_no_stale_bars(tmp_path, cols):
    code, screen = run_on_terminal(["train", "--epochs", "3", *SMALL, "--out", str(tmp_path / "run")], tmp_path, cols=cols)
    text = "\n".join(screen)
    assert code == 0, text
    for epoch in (1, 2, 3):
        assert sum(line.startswith(f"Epoch: {epoch:04d} cost = ") for line in screen) == 1, text
    assert "Learning Finished!" in text and "Saved run to" in text
    assert not [line for line in screen if " eta " in line or line.startswith(BAR_LABELS)], text
    lines = [line for line in screen if line]
    assert lines[lines.index("Learning Finished!") - 1].startswith("Epoch: 0003")


def test_ablate_keeps_its_table_and_no_stale_bars(tmp_path):
    code, screen = run_on_terminal(["ablate", "--keep-probs", "0.5,1.0", "--seeds", "2", "--epochs", "2",
                                    "--train-sizes", "5000", "--hidden", "128,128", "--device", "cpu",
                                    "--parallel-models", "2", "--out", str(tmp_path / "s")], tmp_path, cols=110)
    text = "\n".join(screen)
    assert code == 0, text
    assert "Ablation summary" in text and "Wrote " in text
    assert not [line for line in screen if " eta " in line or line.startswith(BAR_LABELS)], text


def test_sigterm_stops_a_study_like_ctrl_c_and_it_resumes(tmp_path):
    out = tmp_path / "s"
    args = [sys.executable, "-m", "dropcli", "ablate", "--keep-probs", "0.5,0.7,1.0", "--seeds", "2", "--epochs", "3",
            "--train-sizes", "5000", "--hidden", "128,128", "--device", "cpu", "--parallel-models", "2",
            "--out", str(out)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while time.time() < deadline and not (out / "runs.csv").exists():
        time.sleep(0.2)
    assert (out / "runs.csv").exists(), "no group was committed"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    done = len(pd.read_csv(out / "runs.csv"))
    assert 2 <= done < 6
    assert f"Interrupted (SIGTERM): {done} of 6 cells are saved" in err and "Resume with: dropcli ablate" in err
    assert "Traceback" not in err
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    again = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert f"Resumed: {done} cells were already in" in again.stderr
    assert len(pd.read_csv(out / "runs.csv")) == 6


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_stopped_train_says_nothing_was_saved_and_leaves_no_folder(tmp_path, sig):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "dropcli", "train", "--epochs", "50", *SMALL, "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    first = ""
    while time.time() < deadline and not first.startswith("Epoch"):
        first = proc.stdout.readline()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig
    assert f"Interrupted ({signal.Signals(sig).name}): the run was not finished and nothing was saved." in err
    assert not out.exists()


# In-process checks of the same class (fast): user text is never markup, every interrupt is one line.

from typer.testing import CliRunner  # noqa: E402

from dropcli.cli import app  # noqa: E402
from dropcli.errors import DropcliError  # noqa: E402

runner = CliRunner()
TINY = ["--hidden", "16", "--epochs", "1", "--train-size", "200", "--validation-size", "100", "--batch-size", "50",
        "--device", "cpu"]


def test_paths_print_as_typed_never_as_markup_or_emoji(tmp_path):
    out = tmp_path / "[bold]run[/] :smile: [red]"
    result = runner.invoke(app, ["train", *TINY, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"Saved run to {out}" in result.stderr
    dry = runner.invoke(app, ["ablate", "--keep-probs", "0.5,1", "--seeds", "1", "--hidden", "16", "--train-sizes", "200",
                              "--validation-size", "100", "--batch-size", "50", "--device", "cpu", "--dry-run",
                              "--out", str(tmp_path / "[/]study[x]")])
    assert dry.exit_code == 0, dry.output
    assert "[/]study[x]" in dry.stdout and "😄" not in result.output


@pytest.mark.parametrize("name", ["a\nb", "a\rb", "a\u2028b"])
def test_a_path_with_a_line_break_prints_on_one_line(tmp_path, name):
    result = runner.invoke(app, ["train", *TINY, "--out", str(tmp_path / name)])
    assert result.exit_code == 0, result.output
    escaped = ascii(name)[1:-1]
    assert f"Saved run to {tmp_path}/{escaped}\n" in result.stderr  # the whole path on its line, escaped


def test_an_interrupt_while_options_are_checked_is_one_line_not_a_silent_exit(monkeypatch):
    from dropcli import config

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(config.TrainConfig, "validate", interrupted)
    result = runner.invoke(app, ["train", *TINY])
    assert result.exit_code == 130 and result.stderr == "Interrupted (SIGINT).\n"


def test_an_interrupt_a_library_turned_into_another_error_still_ends_as_the_interrupt(tmp_path, monkeypatch):
    from dropcli import data
    from dropcli.terminal import Interrupted

    def load_dataset(*args, **kwargs):  # as numpy does when a stop lands in its lazy import
        try:
            raise Interrupted(signal.SIGTERM)
        except KeyboardInterrupt:
            raise AttributeError("module 'numpy' has no attribute 'matrix'") from None

    monkeypatch.setattr(data, "load_dataset", load_dataset)
    result = runner.invoke(app, ["train", *TINY, "--out", str(tmp_path / "r")])
    assert result.exit_code == 128 + signal.SIGTERM, result.output
    assert result.stderr.splitlines()[-1] == "Interrupted (SIGTERM): the run was not finished and nothing was saved."
    assert not (tmp_path / "r").exists()


def test_a_bug_without_an_interrupt_is_not_disguised_as_one(monkeypatch):
    from dropcli import config

    def broken(self):
        raise RuntimeError("a bug")

    monkeypatch.setattr(config.TrainConfig, "validate", broken)
    result = runner.invoke(app, ["train", *TINY])
    assert isinstance(result.exception, RuntimeError) and "Interrupted" not in result.output


@pytest.mark.parametrize("cols", [30, 60, 80, 110])
def test_a_table_wider_than_the_screen_loses_no_value(cols):
    import io
    from collections import Counter

    from rich.console import Console
    from rich.table import Table

    from dropcli.terminal import Terminal

    buffer = io.StringIO()
    console = Console(file=buffer, width=cols, force_terminal=True, color_system=None, markup=False, emoji=False)
    table = Table(title="Ablation summary", caption="a caption, short")
    values = ["0.5", "1", "5,000", "2", "84.25", "14.04", "0.56", "-5.67 [-18.00, +6.66]", "0.11", "0/2", "inconclusive"]
    for i in range(len(values)):
        table.add_column(f"column {i}", justify="right", no_wrap=True)
    table.add_row(*values)
    Terminal(out=console, err=console, live=False).table(table, keys=2)
    text = buffer.getvalue()
    lines = text.splitlines()
    assert "…" not in text and all(len(line) <= cols for line in lines)
    shown, needed = Counter("".join(text.split())), Counter("".join("".join(values).split()))
    assert all(shown[ch] >= n for ch, n in needed.items())  # every character of every value, none cut
    if cols >= 60:  # room for each value on one line: none is broken, and each part starts with the key columns
        assert all(any(v in line for line in lines) for v in values)
        rows = [line for line in lines if line.split()[:2] == ["0.5", "1"]]
        assert len(rows) == len([x for x in lines if x.split()[:2] == ["column", "0"]]) > 1


@pytest.mark.parametrize("error", [DropcliError("MNIST is not on this machine and could not be downloaded "
                                                "(AttributeError)"), AttributeError("module has no attribute")])
def test_an_error_a_stop_signal_turned_into_ends_as_that_stop(capsys, error):
    """A signal landing inside a library's import or error handling can come out as another error,
    even one dropcli words (the data loader's 'could not be downloaded'): after a stop signal, it
    ends as the interrupt it is (exit 130, one 'Interrupted' line), not as a misleading failure."""
    import typer

    from dropcli import interrupts
    from dropcli.terminal import failures

    interrupts.forget()
    try:
        with pytest.raises(typer.Exit) as stop, failures():
            try:
                raise interrupts.Interrupted(signal.SIGINT)
            except interrupts.Interrupted:
                raise error from None
        assert stop.value.exit_code == 130
        err = capsys.readouterr().err
        assert "Interrupted (SIGINT)" in err and "could not be downloaded" not in err
    finally:
        interrupts.forget()
    with pytest.raises(typer.Exit) as failed, failures():  # without a signal, the error is the error
        raise DropcliError("no such file; give another")
    assert failed.value.exit_code == 1 and "no such file" in capsys.readouterr().err


@pytest.mark.parametrize("held", [True, False], ids=["held", "not held"])
def test_a_stop_during_torchs_import_waits_for_the_import_to_finish(tmp_path, monkeypatch, held):
    """A Ctrl-C while torch imports must not land inside it (there C++ calls Python, and an exception
    aborts the process with no line): interrupts.held defers it to the end of the import. A module
    that interrupts itself halfway stands for torch; without the hold the interrupt cuts it there."""
    from dropcli import interrupts

    (tmp_path / "heavy_probe.py").write_text(
        "import os, pathlib, signal, time\n"
        f"pathlib.Path({str(tmp_path / 'half')!r}).touch()\n"
        "os.kill(os.getpid(), signal.SIGINT)\n"
        "for _ in range(100):\n    time.sleep(0.001)  # the handler runs here if nothing holds it\n"
        f"pathlib.Path({str(tmp_path / 'whole')!r}).touch()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(interrupts, "HELD_IMPORTS", ("heavy_probe",) if held else ())
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    monkeypatch.setattr(builtins, "__import__", builtins.__import__)  # install_signal_handlers wraps it
    try:
        interrupts.install_signal_handlers()
        with pytest.raises(interrupts.Interrupted) as stop:
            import heavy_probe  # noqa: F401
        imported = "heavy_probe" in sys.modules  # whole: a later import finds it, as torch must be found
    finally:
        sys.modules.pop("heavy_probe", None)
        for s, h in before.items():
            signal.signal(s, h)
        interrupts.forget()
    assert stop.value.signum == signal.SIGINT and (tmp_path / "half").exists()
    assert (tmp_path / "whole").exists() == held and imported == held


def test_a_stop_held_through_a_failing_block_is_raised_not_lost(monkeypatch):
    """A stop received inside held() whose block then fails ends as the stop (the error chained),
    and leaves nothing pending for a later block."""
    from dropcli import interrupts

    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        interrupts.install_signal_handlers()
        with pytest.raises(interrupts.Interrupted) as stop, interrupts.held():
            signal.raise_signal(signal.SIGTERM)
            raise ImportError("a held import failed")
        with interrupts.held():
            pass  # nothing left pending: no second stop
    finally:
        for s, h in before.items():
            signal.signal(s, h)
        interrupts.forget()
    assert stop.value.signum == signal.SIGTERM and isinstance(stop.value.__context__, ImportError)


def test_a_folder_with_a_line_break_prints_as_one_line_commands_to_copy(tmp_path):
    """The preview's title, 'Nothing to run' and the merge command name the folder on one line; the
    merge command is one shell word that bash reads back as the folder (streams.shell_word)."""
    import subprocess

    out = tmp_path / "n\nl x"
    grid = ["ablate", "--keep-probs", "0.5,1", "--seeds", "1", "--hidden", "16", "--epochs", "1", "--train-sizes", "200",
            "--validation-size", "100", "--batch-size", "50", "--device", "cpu", "--out", str(out)]
    result = runner.invoke(app, [*grid, "--shard", "1/2"])
    assert result.exit_code == 0, result.output
    line = next(x for x in result.stderr.splitlines() if "dropcli merge" in x)
    word = line.split("dropcli merge ", 1)[1]
    assert subprocess.run(["bash", "-c", f"printf %s {word}"], capture_output=True).stdout == str(out).encode()
    dry = runner.invoke(app, [*grid, "--shard", "1/2", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert f"in {tmp_path}/n\\nl x" in dry.stdout and f"{tmp_path}/n\nl" not in dry.output
