"""Worker processes: the same rows as one process, a killed worker loses nothing committed, Ctrl-C
stops them all; and how many workers, threads and cells per group a grid gets."""

import os
import re
import signal
import subprocess
import sys
import time

import pandas as pd
import psutil
import pytest
import torch
from conftest import assert_same_measured_rows, check_error
from typer.testing import CliRunner

from dropcli.ablate import StudyProgress, arrange, run_study
from dropcli.cli import app
from dropcli.config import TrainConfig
from dropcli.errors import DropcliError
from dropcli.grid import GridSpec
from dropcli.layout import POOL_GFLOP, WORKER_BYTES, Layout, cpu_cores, fit_layout, plan_layout, spread, training_gflop
from dropcli.plan import make_plan
from dropcli.tables import read_history, read_runs

CPU = torch.device("cpu")
BASE = TrainConfig(hidden=(32, 32), epochs=1, validation_size=500, batch_size=50)
KEYS = ["keep_prob_mean", "seed"]


def workers_alive() -> list[psutil.Process]:
    """This test's worker processes still running: those forked by the forkserver (not the forkserver
    itself, which stays for the next pool, nor the resource tracker), or spawned."""
    alive = []
    for p in psutil.Process().children(recursive=True):
        try:
            forked = "forkserver" in " ".join(p.parent().cmdline())
            if (forked or "spawn_main" in " ".join(p.cmdline())) and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(p)
        except (psutil.NoSuchProcess, AttributeError):  # ended meanwhile (its parent gone: None)
            pass
    return alive


def sorted_rows(path):
    return read_runs(path).sort_values(KEYS).reset_index(drop=True)


def test_two_workers_give_the_rows_of_one_process_and_record_the_layout(tmp_path):
    grid = ["--keep-probs", "0.5,1.0", "--seeds", "2", "--epochs", "2", "--train-sizes", "500", "--hidden", "32,32",
            "--validation-size", "500", "--batch-size", "50", "--device", "cpu", "--parallel-models", "2"]
    result = CliRunner().invoke(app, ["ablate", *grid, "--workers", "2", "--out", str(tmp_path / "w")])
    assert result.exit_code == 0, result.output
    assert "on 2 process(es) of " not in result.output  # --parallel-models fixed: no note on the choice
    assert "Training 4 cells in 2 groups of 2 on 2 worker processes" in result.output
    spec = GridSpec(keep_probs=((0.5,), (1.0,)), train_sizes=(500,), seeds=(777, 778))
    counts = run_study(make_plan(spec, BASE.replace(epochs=2), tmp_path / "one"), CPU, parallel_models=2, workers=1)
    assert counts["workers"] == 1 and counts["threads"] == torch.get_num_threads()
    assert_same_measured_rows(tmp_path / "w", tmp_path / "one")  # to the last digit written
    pooled = sorted_rows(tmp_path / "w" / "runs.csv")
    assert list(pooled["workers"]) == [2] * 4 and list(pooled["threads"]) == [max(1, cpu_cores() // 2)] * 4
    assert list(pooled["group_size"]) == [2] * 4
    history = [read_history(tmp_path / d / "history.csv").sort_values([*KEYS, "epoch"]).reset_index(drop=True)
               for d in ("w", "one")]
    assert history[0][["cost", "train_batch_accuracy", "validation_accuracy"]].equals(
        history[1][["cost", "train_batch_accuracy", "validation_accuracy"]])
    assert not workers_alive()


def test_a_worker_killed_mid_group_loses_no_committed_cell_and_the_rerun_resumes(tmp_path):
    spec = GridSpec(keep_probs=((0.5,), (0.7,), (1.0,)), train_sizes=(1000,), seeds=(1, 2))
    base = BASE.replace(epochs=2)
    committed, killed = [], []

    def kill_a_worker(row):
        # the first group is committed; the pool keeps a group queued beyond its two workers, so
        # both are mid-group, and at least two groups are not yet handed out
        committed.append(row)
        if not killed:
            killed.append(workers_alive()[0].pid)
            os.kill(killed[0], signal.SIGKILL)

    progress = StudyProgress(on_cell=kill_a_worker)
    with pytest.raises(DropcliError, match=r"^a worker process ended abruptly .*Rerun the same command to resume"):
        run_study(make_plan(spec, base, tmp_path), CPU, parallel_models=1, workers=2, progress=progress)
    assert killed and not workers_alive()  # the other worker is stopped too
    runs = read_runs(tmp_path / "runs.csv")
    assert 1 <= len(runs) < 6 and len(runs) == len(committed)  # every committed cell, and only those
    assert len(read_history(tmp_path / "history.csv")) == 2 * len(runs)
    counts = run_study(make_plan(spec, base, tmp_path), CPU, parallel_models=1, workers=2)
    assert (counts["skipped"], counts["ran"]) == (len(committed), 6 - len(committed))
    assert len(read_runs(tmp_path / "runs.csv")) == 6 and not workers_alive()


def test_ctrl_c_stops_every_worker_and_keeps_the_finished_groups(tmp_path):
    spec = GridSpec(keep_probs=((0.5,), (0.7,), (1.0,)), train_sizes=(1000,), seeds=(1, 2))

    def interrupt(row):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_study(make_plan(spec, BASE, tmp_path), CPU, parallel_models=1, workers=2,
                  progress=StudyProgress(on_cell=interrupt))
    assert not workers_alive()
    assert len(read_runs(tmp_path / "runs.csv")) == 1  # the group that ended, committed before the interrupt
    counts = run_study(make_plan(spec, BASE, tmp_path), CPU, parallel_models=1, workers=1)  # the lock is free
    assert (counts["skipped"], counts["ran"]) == (1, 5)


def test_workers_run_mkl_reproducibly_on_their_own_threads_and_load_data_that_could_not_be_shared():
    from dropcli.provenance import mkl_reproducible
    from dropcli.workers import WorkerPool, train_group_task

    cell = BASE.replace(train_size=500)
    with WorkerPool(Layout(2, 1), "cpu", None, load=("mnist", None)) as pool:  # no data shared: each loads its own
        assert pool.executor.submit(os.getenv, "MKL_CBWR").result() == "AUTO,STRICT"
        assert pool.executor.submit(mkl_reproducible).result() in (True, None)  # None: a torch without MKL
        assert pool.executor.submit(torch.get_num_threads).result() == 1
        rows = pool.executor.submit(train_group_task, 0, [cell], {}).result()
    assert [r["train_size"] for r in rows["runs"]] == [500] and (rows["runs"][0]["workers"], rows["runs"][0]["threads"]) == (2, 1)
    assert rows["runs"][0]["engine"].endswith(", denormals flushed")
    if cpu_cores() > 1:  # a worker of 2 threads loads its data on both: it flushed before they started
        with WorkerPool(Layout(1, 2), "cpu", None, load=("mnist", None)) as pool:
            rows = pool.executor.submit(train_group_task, 0, [cell], {}).result()
        assert rows["runs"][0]["engine"].endswith(", denormals flushed") and rows["runs"][0]["threads"] == 2
    assert not workers_alive()


@pytest.mark.parametrize("case", ["no data", "other data"])
def test_a_worker_that_cannot_start_says_why_in_one_line(capfd, monkeypatch, case):
    """A worker whose data set cannot be loaded, or is not the command's (it changed on disk as the
    study started), is one line saying so: not 'ended abruptly', and no traceback from the pool."""
    from dropcli import workers
    from dropcli.data import Dataset, Split

    cell = BASE.replace(train_size=500)
    if case == "no data":
        data, load, fragment = None, ("mnist", "/nonexistent"), "could not start: --data-dir /nonexistent is not a folder"
    else:  # the command's data is not what a worker loading its own finds
        x, y = torch.zeros(600, 784), torch.zeros(600, dtype=torch.long)
        data = Dataset("mnist", Split(x, y), Split(x[:100], y[:100]), "test", {"name": "mnist", "sha256": "0" * 64})
        monkeypatch.setattr(workers, "_share", lambda data: False)  # as when /dev/shm is too small
        load, fragment = ("mnist", None), "could not start: the data set changed as the study started (sha256 "
    with pytest.raises(DropcliError) as e, workers.WorkerPool(Layout(2, 1), "cpu", data, load=load) as pool:
        pool.run([[cell]], lambda runs, history: None, StudyProgress())
    assert fragment in str(e.value) and "\n" not in str(e.value), e.value
    assert "Traceback" not in capfd.readouterr().err and not workers_alive()


@pytest.mark.parametrize("options, code, fragment", [
    (["--workers", "2", "--executor", "ray"], 2, "--workers and --executor ray both split the study; use one"),
    (["--workers", "-1"], 2, "--workers must be at least 0 (got -1)"),
])
def test_bad_worker_options_are_one_line(tmp_path, options, code, fragment):
    grid = ["ablate", "--keep-probs", "0.5,1.0", "--seeds", "1", "--epochs", "1", "--train-sizes", "500", "--device", "cpu"]
    check_error(CliRunner().invoke(app, [*grid, *options, "--out", str(tmp_path / "s")]), code, fragment)
    assert not (tmp_path / "s").exists()


def test_the_display_follows_the_earliest_running_group_until_it_ends():
    import queue
    from concurrent.futures import Future

    from dropcli.workers import WorkerPool

    pool = object.__new__(WorkerPool)  # its progress forwarding alone: no processes
    pool.events, pool.focus, pool.started, pool.failure = queue.Queue(), None, set(), None
    futures = [Future() for _ in range(3)]
    pool.running = {futures[0]: 0, futures[1]: 1}
    heard = []
    progress = StudyProgress(on_group=lambda gi, n, group: heard.append(("group", gi, n, group)),
                             on_step=lambda s, n: heard.append(("step", s, n)),
                             on_epoch=lambda e, records: heard.append(("epoch", e)),
                             on_other=lambda gi, kind, *event: heard.append(("other", gi, kind, event[0])))
    groups = [["a"], ["b"], ["c"]]
    for event in [("start", 1), ("step", 1, 5, 10), ("start", 0), ("step", 0, 3, 10), ("step", 1, 6, 10)]:
        pool.events.put(event)
    pool._forward(groups, progress)
    # group 1 is shown until it ends; group 0's steps count towards the study's pace
    assert heard == [("group", 1, 3, ["b"]), ("step", 5, 10), ("other", 0, "step", 3), ("step", 6, 10)]
    heard.clear()
    futures[1].set_result(None)  # group 1 ended (not yet committed); group 2 starts after group 0
    pool.running[futures[2]] = 2
    for event in [("step", 1, 10, 10), ("start", 2), ("step", 2, 1, 10), ("epoch", 0, 1, []), ("step", 1, 10, 10)]:
        pool.events.put(event)
    pool._forward(groups, progress)
    assert heard == [("step", 10, 10), ("group", 0, 3, ["a"]), ("other", 2, "step", 1), ("epoch", 1),
                     ("other", 1, "step", 10)]  # group 1's own last step first


def test_the_layout_spends_workers_only_where_they_repay_their_start():
    small = [BASE.replace(seed=s) for s in range(4)]
    assert training_gflop(small) < POOL_GFLOP and plan_layout(CPU, small) == Layout(1, None)
    big = [TrainConfig(seed=s) for s in range(24)]
    n = min(cpu_cores(), 24)
    assert plan_layout(CPU, big) == (Layout(n, cpu_cores() // n) if n > 1 else Layout())
    assert plan_layout(CPU, small, workers=3) == Layout(3, max(1, cpu_cores() // 3))  # --workers fixes it
    assert plan_layout(CPU, small[:2], workers=3).workers == 2  # never more workers than cells
    assert fit_layout(Layout(4, 1), 2, 0, False, 1 << 40) == Layout(2, 1)  # never more workers than groups
    assert fit_layout(Layout(4, 1), 8, 0, False, 2 * WORKER_BYTES) == Layout(2, 1)  # what memory holds
    assert fit_layout(Layout(4, 1), 8, 0, True, 0) == Layout(4, 1)
    assert [spread(8, 24, 2), spread(8, 9, 2), spread(4, 24, 2), spread(8, 24, 1), spread(1, 5, 4)] == [6, 5, 4, 8, 1]


def test_arrange_spreads_measured_groups_over_the_workers(monkeypatch):
    import dropcli.groups as groups

    monkeypatch.setattr(groups, "choose_parallel_models", lambda device, cells, threads, on_progress: 8)
    cells = [TrainConfig(seed=s) for s in range(24)]
    layout, k, groups_ = arrange(cells, CPU, workers=2)
    assert layout == Layout(2, max(1, cpu_cores() // 2)) and k == 6 and [len(g) for g in groups_] == [6] * 4
    layout, k, groups_ = arrange(cells, CPU, parallel_models=8, workers=2)
    assert k == 8 and len(groups_) == 3 and layout.workers == 2  # a fixed size is kept
    assert pd.Series([len(g) for g in arrange(cells, CPU, workers=1)[2]]).eq(8).all()


def test_a_group_the_folder_cannot_take_is_rescued_and_every_worker_stops(tmp_path, monkeypatch):
    import dropcli.ablate as ablate

    study, rescue, write = tmp_path / "study", tmp_path / "rescued", ablate.StudyTables.commit

    def full_disk(tables, runs, history):  # the study folder cannot be written; any other folder can
        if tables.out == study:
            raise DropcliError(f"cannot write {study / 'runs.csv'}: No space left on device")
        return write(tables, runs, history)

    monkeypatch.setattr(ablate.StudyTables, "commit", full_disk)
    monkeypatch.setattr(ablate, "rescue_folder", lambda: rescue.mkdir() or rescue)
    spec = GridSpec(keep_probs=((0.5,), (1.0,)), train_sizes=(500,), seeds=(1,))
    with pytest.raises(DropcliError, match=r"No space left on device; this group's 1 finished cell is saved in "
                                           + re.escape(f"{rescue} (runs.csv, history.csv); the earlier ones are in {study}")):
        run_study(make_plan(spec, BASE, study), CPU, parallel_models=1, workers=2)
    assert not workers_alive()
    rescued = read_runs(rescue / "runs.csv")
    assert len(rescued) == 1 and list(rescued["workers"]) == [2] and len(read_history(rescue / "history.csv")) == 1
    monkeypatch.undo()
    counts = run_study(make_plan(spec, BASE, study), CPU, parallel_models=1, workers=1)  # the lock is free
    assert (counts["skipped"], counts["ran"]) == (0, 2)
    again = read_runs(study / "runs.csv").set_index(KEYS).loc[rescued.set_index(KEYS).index]
    assert list(again["test_accuracy"]) == list(rescued["test_accuracy"])  # the rescued row is the cell's own


def start_study(tmp_path):
    """`dropcli ablate` on 2 workers in a new session, marked by an environment variable its
    processes inherit, once it has committed a cell: (the process, its study folder, the marker)."""
    import uuid

    marker = uuid.uuid4().hex
    out = tmp_path / "study"
    cmd = [sys.executable, "-m", "dropcli", "ablate", "--keep-probs", "0.3,0.5,0.7,1.0", "--seeds", "2", "--epochs", "3",
           "--train-sizes", "2000", "--hidden", "64,64", "--device", "cpu", "--parallel-models", "1", "--workers", "2",
           "--out", str(out)]
    proc = subprocess.Popen(cmd, env={**os.environ, "DROPCLI_TEST_MARKER": marker}, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not ((out / "runs.csv").exists() and len(read_runs(out / "runs.csv"))) and proc.poll() is None:
        assert time.monotonic() < deadline, "no cell was committed in 5 minutes"
        time.sleep(0.2)
    return proc, out, marker


def left_behind(marker: str, seconds: float) -> list[psutil.Process]:
    """The processes marked `marker` still running after up to `seconds`."""
    def ours(p):
        try:
            return p.environ().get("DROPCLI_TEST_MARKER") == marker and p.status() != psutil.STATUS_ZOMBIE
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return False

    deadline = time.monotonic() + seconds
    while (alive := [p for p in psutil.process_iter() if ours(p)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    return alive


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_to_the_process_group_stops_the_command_and_its_workers(tmp_path, sig):
    """A terminal's Ctrl-C (SIGINT) and Slurm's scancel (SIGTERM) reach the whole process group: the
    workers and their forkserver ignore SIGINT (the command stops them) or die of SIGTERM; the
    command keeps what was committed and says how to resume, exiting 128 + the signal."""
    proc, out, marker = start_study(tmp_path)
    os.killpg(proc.pid, sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, err
    saved = len(read_runs(out / "runs.csv"))
    assert f"Interrupted ({sig.name}): {saved} of 8 cells are saved in {out / 'runs.csv'}" in err and "Traceback" not in err
    assert not left_behind(marker, 1.5)


def test_killing_the_command_ends_its_workers_and_their_forkserver(tmp_path):
    """SIGKILL to the command alone (the OOM killer, kill -9): its workers, whose parent is the
    forkserver, see the pipe from the command end and exit; the forkserver ends after them."""
    proc, out, marker = start_study(tmp_path)
    assert len(left_behind(marker, 0)) >= 4  # the command, the forkserver and two workers
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert not left_behind(marker, 10)
    assert 1 <= len(read_runs(out / "runs.csv")) < 8


def test_workers_fork_warm_from_a_forkserver_that_holds_torch_and_ignores_ctrl_c(capfd, monkeypatch):
    """The forkserver imports torch once and ignores Ctrl-C from its start (even mid-import); the
    workers forked from it run in the environment of the command at the pool's start, not the
    forkserver's."""
    from multiprocessing import forkserver

    from dropcli.worker_start import start_forkserver
    from dropcli.workers import WorkerPool

    forkserver._forkserver._stop()  # this test starts its own
    start_forkserver()
    server = psutil.Process(forkserver._forkserver._forkserver_pid)
    ignored = int(next(line for line in open(f"/proc/{server.pid}/status") if line.startswith("SigIgn:")).split()[1], 16)
    assert ignored & (1 << (signal.SIGINT - 1))  # from its start, not only once its imports are done
    time.sleep(0.5)
    server.send_signal(signal.SIGINT)  # as a terminal's Ctrl-C would, as it imports
    monkeypatch.setenv("DROPCLI_TEST_SEEN", "after the forkserver started")
    with WorkerPool(Layout(2, 1), "cpu", None, load=("mnist", None)) as pool:
        assert pool.executor.submit(os.getenv, "DROPCLI_TEST_SEEN").result() == "after the forkserver started"
        assert pool.executor.submit(os.getppid).result() == server.pid
    assert server.is_running() and any("libtorch_cpu" in m.path for m in server.memory_maps())
    assert "KeyboardInterrupt" not in capfd.readouterr().err and not workers_alive()


def test_the_processes_started_with_the_forkserver_ignore_ctrl_c_and_the_command_keeps_its_handler():
    from dropcli.worker_start import _ctrl_c_ignored_by_children

    handler = signal.signal(signal.SIGINT, lambda *_: None)  # as the command's own
    try:
        with _ctrl_c_ignored_by_children():
            child = subprocess.run([sys.executable, "-c", "import signal; print(signal.getsignal(signal.SIGINT) == signal.SIG_IGN)"],
                                   capture_output=True, text=True, timeout=60)
        assert child.stdout.strip() == "True" and signal.getsignal(signal.SIGINT) is not signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, handler)


def test_workers_run_the_commands_dropcli_whatever_folder_the_forkserver_starts_in(tmp_path, monkeypatch):
    """Before Python 3.12 the forkserver imports its preloads with its own sys.path, its working
    folder first (CPython gh-117378): a dropcli there, another checkout's, must not be what the
    workers run."""
    from multiprocessing import forkserver

    import dropcli
    from dropcli.workers import WorkerPool

    (tmp_path / "dropcli").mkdir()
    (tmp_path / "dropcli" / "__init__.py").write_text("ANOTHER_CHECKOUT = True\n")
    monkeypatch.chdir(tmp_path)
    forkserver._forkserver._stop()  # the next one starts here
    with WorkerPool(Layout(2, 1), "cpu", None, load=("mnist", None)) as pool:
        assert pool.executor.submit(eval, "__import__('dropcli').__file__").result() == dropcli.__file__
    forkserver._forkserver._stop()  # not left for the next test in that folder
    assert not workers_alive()


def test_workers_are_spawned_where_the_forkserver_cannot_start(monkeypatch):
    from multiprocessing import forkserver

    from dropcli.workers import WorkerPool, train_group_task

    def no_room():
        raise OSError(28, "No space left on device")  # as where its socket's temporary folder is full

    monkeypatch.setattr(forkserver, "ensure_running", no_room)
    with WorkerPool(Layout(2, 1), "cpu", None, load=("mnist", None)) as pool:
        assert pool.executor.submit(os.getppid).result() == os.getpid()  # spawned by this process
        rows = pool.executor.submit(train_group_task, 0, [BASE.replace(train_size=500)], {}).result()
    assert [r["train_size"] for r in rows["runs"]] == [500] and not workers_alive()


@pytest.mark.parametrize("options, first", [(["--workers", "2"], True), (["--workers", "1"], False),
                                            (["--workers", "2", "--dry-run"], False)])
def test_ablate_starts_the_forkserver_before_its_own_work_where_workers_may_run(tmp_path, monkeypatch, options, first):
    from dropcli import worker_start

    started, out = [], tmp_path / "s"
    monkeypatch.setattr(worker_start, "start_forkserver", lambda: started.append(out.exists()))
    grid = ["ablate", "--keep-probs", "0.5,1.0", "--seeds", "1", "--epochs", "1", "--train-sizes", "500", "--hidden", "32,32",
            "--validation-size", "500", "--device", "cpu", "--out", str(out)]
    result = CliRunner().invoke(app, [*grid, *options])
    assert result.exit_code == 0, result.output
    assert started[:1] == ([False] if first else [])  # before the study folder (and the data) is made
