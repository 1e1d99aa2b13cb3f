"""Train a study's lockstep groups on worker processes side by side; this process alone writes the folder.

    $ dropcli ablate --grid                  # one single-threaded worker per core
    $ dropcli ablate --grid --workers 1      # every group in this process, on all of torch's threads

A step's small matmuls (100 rows x 512) use several threads poorly, and its single-threaded parts
(the numpy mask draw, Python dispatch) run in parallel across processes, so on a CPU a grid trains
fastest as one single-threaded process per core; on a machine with several GPUs, one worker per
GPU. The workers are a standard-library ProcessPoolExecutor whose processes are forked, warm, from
a forkserver that imported dropcli and torch once (worker_start.py: how they start, stop and watch
the command). This process loads the data set once and shares its tensors (shared memory,
torch.multiprocessing; where the shared-memory folder is too small, as a container's 64 MB
/dev/shm, each worker loads its own); each worker trains one group per task and returns its rows,
which this process commits as each group ends (as with Ray), so the lock, resume and the files are
those of a one-process run. A cell's numbers do not depend on the process or thread count that
trained it (MKL's reproducible mode, which importing dropcli sets before torch loads). A script
that runs a study on workers needs the `if __name__ == "__main__":` guard, as every forkserver- or
spawn-started pool does.

Stopping: workers ignore Ctrl-C, which a terminal sends to the whole process group; this process
then sets a shared stop flag that workers check at every step, waits for them and re-raises, having
committed every group that ended before. SIGTERM stops a worker at once (the pool's own way to end
workers).
"""

from __future__ import annotations

import os
import queue
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Callable

from dropcli.config import TrainConfig
from dropcli.errors import DropcliError
from dropcli.layout import Layout
from dropcli.worker_start import WORKER, start_forkserver, start_worker

POLL_SECONDS = 0.2  # how often this process forwards the workers' progress while it waits
STEP_EVENTS_EVERY = 0.2  # seconds between a worker's step reports (an epoch's last step is always reported)
STOP_GRACE_SECONDS = 10.0  # how long stopping waits for workers to reach a step before terminating them


class _Stopped(Exception):
    """Raised inside a worker's step callback when this process asked the workers to stop."""


def _share(data) -> bool:
    """Move a data.Dataset's tensors to shared memory; False where the shared-memory folder cannot
    hold them."""
    try:
        for split in (data.train_full, data.test):
            split.x.share_memory_()
            split.y.share_memory_()
    except RuntimeError:  # torch: "unable to write to file </torch_...>: No space left on device"
        return False
    return True


def train_group_task(gi: int, configs: list[TrainConfig], train_options: dict) -> dict | None:
    """Runs in a worker: train group `gi`, reporting progress on the events queue. Returns its
    {"runs": runs.csv rows, "history": history.csv rows}, or None when stopped."""
    from dropcli.provenance import utc_now
    from dropcli.tables import history_rows, run_row
    from dropcli.train import train_group

    w = WORKER
    w["events"].put(("start", gi))
    last = [0.0]

    def on_step(step: int, steps: int) -> None:
        if w["stop"].value:
            raise _Stopped
        now = time.monotonic()
        if step == steps or now - last[0] >= STEP_EVENTS_EVERY:
            last[0] = now
            w["events"].put(("step", gi, step, steps))

    try:
        results = train_group(configs, w["data"], w["device"], on_step=on_step,
                              on_epoch=lambda epoch, records: w["events"].put(("epoch", gi, epoch, records)),
                              **train_options)
    except _Stopped:
        return None
    stamp = utc_now()
    return {"runs": [run_row(r, stamp, w["workers"], w["threads"]) for r in results],
            "history": [h for r in results for h in history_rows(r)]}


class WorkerPool:
    """`layout.workers` worker processes that train groups of cells on `device_name` ("cpu",
    "cuda", ...) with train.train_group's keyword `train_options`, on the data set `data` (a
    data.Dataset on the CPU, whose tensors move to shared memory), or where it is None or cannot be
    shared, on the data set each worker loads: `load` = (name, data_dir) as data.load_dataset takes
    them. Use as a context manager: leaving it stops the workers (at their next step) and waits."""

    def __init__(self, layout: Layout, device_name: str, data=None, train_options: dict | None = None,
                 load: tuple[str, str | None] = ("mnist", None)):
        identity = data.identity if data is not None else None  # what a worker that loads its own must find
        data = data if data is not None and _share(data) else None
        ctx = start_forkserver()  # where ablate has not already
        self.layout, self.train_options = layout, train_options or {}
        self.stop = ctx.RawValue("b", 0)  # lock-free: a worker killed while reading it cannot hold a lock
        self.events = ctx.Queue()
        self.running: dict[Future, int] = {}
        self.command, self.command_end = ctx.Pipe(duplex=False)  # open while this process lives
        self.executor = ProcessPoolExecutor(
            layout.workers, mp_context=ctx, initializer=start_worker,
            initargs=(layout.threads, device_name, data, load, identity, self.stop, self.events, ctx.Value("i", 0),
                      self.command, layout.workers, dict(os.environ)))

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def run(self, groups: list[list[TrainConfig]], on_rows: Callable[[list[dict], list[dict]], None], progress) -> None:
        """Train every group; hand each finished group's rows to on_rows(runs, history) as it ends,
        in this process. `progress` (ablate.StudyProgress) hears on_group when a group becomes the
        one whose epochs and steps on_epoch and on_step report: the earliest one running, until it ends.
        Raises a worker's own exception, or DropcliError when a worker died."""
        todo = list(enumerate(groups))[::-1]
        self.focus, self.started, self.failure = None, set(), None
        try:
            while todo or self.running:
                while todo and len(self.running) <= self.layout.workers:  # one queued: no worker waits for us
                    gi, group = todo.pop()
                    self.running[self.executor.submit(train_group_task, gi, group, self.train_options)] = gi
                done, _ = wait(self.running, timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
                self._forward(groups, progress)
                for future in done:
                    self.running.pop(future)
                    result = future.result()
                    if result is not None:
                        on_rows(result["runs"], result["history"])
        except BrokenProcessPool:
            self._forward(groups, progress)  # a worker that could not start said why
            if self.failure:
                raise DropcliError(f"a worker process could not start: {self.failure}") from None
            raise DropcliError("a worker process ended abruptly (killed, or out of memory?); the groups finished "
                               "before it are saved. Rerun the same command to resume (with fewer --workers if "
                               "memory is short)") from None

    def _forward(self, groups: list, progress) -> None:
        """Pass the workers' queued progress on, for the focus group only: the earliest group running,
        followed until it has ended and its own queued events are passed on (a group ended when its
        future is done, before this process has committed it)."""
        running = {gi for future, gi in self.running.items() if not future.done()}
        while True:
            try:
                kind, gi, *rest = self.events.get_nowait()
            except (queue.Empty, OSError, EOFError):
                break
            if kind == "failed":
                self.failure = rest[0]
            if kind == "start":
                self.started.add(gi)
            if gi != self.focus and self.focus not in running:  # the group shown has ended (or none yet)
                focus = min(self.started & running, default=None)
                if focus is not None:
                    self.focus = focus
                    if progress.on_group:
                        progress.on_group(focus, len(groups), groups[focus])
            if gi == self.focus and kind == "step" and progress.on_step:
                progress.on_step(*rest)
            elif gi == self.focus and kind == "epoch" and progress.on_epoch:
                progress.on_epoch(*rest)
            elif kind in ("step", "epoch") and progress.on_other:  # another running group's: the study's pace
                progress.on_other(gi, kind, *rest)

    def close(self) -> None:
        """Stop the workers at their next step, wait for them (terminating those that do not stop
        within STOP_GRACE_SECONDS), and shut the pool down."""
        self.stop.value = 1
        for future in self.running:
            future.cancel()
        _, late = wait(self.running, timeout=STOP_GRACE_SECONDS)
        if late and hasattr(self.executor, "terminate_workers"):  # a worker in a long evaluation (Python 3.14+)
            self.executor.terminate_workers()
        elif late:  # before 3.14 no public call stops a pool's workers
            for process in list(getattr(self.executor, "_processes", {}).values()):
                process.terminate()
        self.running.clear()
        self.executor.shutdown(wait=True, cancel_futures=True)
        self.events.close()
        self.command.close()
        self.command_end.close()
