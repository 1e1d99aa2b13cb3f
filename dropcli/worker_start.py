"""How a worker process starts: forked, warm, from a forkserver that imported torch once; then its
initializer (start_worker) sets it up and watches the command.

    $ dropcli ablate --grid      # ablate calls warm_up first: the forkserver imports while it does

A fresh interpreter that imports torch spends 3-5 s of CPU (2.9-4.8 s measured on a 2-core AMD
EPYC), once per spawned worker. The workers are instead forked from multiprocessing's forkserver:
one interpreter that imports PRELOAD (torch and pandas) and then forks a worker per request in
milliseconds. Forking it is safe: torch starts its thread pools at the first parallel work, which
the forkserver never does, and CUDA at the first CUDA call (none); the one thread it has,
OpenBLAS's (numpy), OpenBLAS stops and restarts around a fork itself. Where the platform has no
forkserver (Windows), or it cannot start, the workers are spawned.

Signals: the forkserver ignores Ctrl-C from its first instruction (a Ctrl-C as it imports would
otherwise print its traceback) and so do its workers; the command handles Ctrl-C and stops them. A
worker's parent is the forkserver, not the command, so a worker watches the command through a pipe
only the command holds open: when the command dies (SIGKILL, the OOM killer) the pipe ends and the
worker exits at once; the forkserver ends once the command and its workers have closed its own
pipe (a forkserver still importing finishes first, a few seconds).
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing
import os
import signal
import threading

from dropcli.config import AUTO_WORKERS
from dropcli.errors import DropcliError
from dropcli.layout import cpu_cores

WORKER: dict = {}  # a worker's own state, set by start_worker
# what a worker needs that takes seconds to import, imported once by the forkserver. Not dropcli:
# before Python 3.12 the forkserver imports these with its own sys.path (its working folder
# first), not the command's (CPython gh-117378), so a dropcli there could be another checkout's; a
# worker imports dropcli itself (0.1 s), once it has the command's sys.path. MKL_CBWR is already in
# the forkserver's environment: the command set it on importing dropcli, before starting it.
PRELOAD = ["torch", "pandas"]


def start_forkserver() -> multiprocessing.context.BaseContext:
    """Start the process the workers are forked from, where it is not running: a fresh interpreter
    that imports PRELOAD (3-5 s of CPU, on another core while the caller goes on) and then forks a
    worker per request. It ignores Ctrl-C from its start, as do the workers forked from it: Ctrl-C
    is the command's to handle. It ends when the last process holding its pipe (the caller, the
    workers) has. Returns the multiprocessing context the workers start with: forkserver, or spawn
    where the platform has none (Windows) or it could not start (OSError: no room for its socket)."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    from multiprocessing import forkserver

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    try:
        with _ctrl_c_ignored_by_children():
            forkserver.ensure_running()
    except OSError:
        return multiprocessing.get_context("spawn")
    return ctx


@contextlib.contextmanager
def _ctrl_c_ignored_by_children():
    """Within: the processes this thread starts ignore SIGINT from their first instruction (an
    ignored signal stays ignored across fork and exec, and Python keeps it so); this process's own
    handler is back on leaving. A Ctrl-C within, the milliseconds a fork and exec take, is lost (a
    blocked signal would wait, but any other thread of this process can take it). Only the main
    thread may set handlers, and only one set from Python can be put back: elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is None:
        yield
        return
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, handler)


def warm_up(workers: int) -> None:
    """Start the forkserver now (start_forkserver) where a study with `workers` (ablate --workers; 0,
    config.AUTO_WORKERS: automatic) may train on worker processes: more than one, or automatic on
    more than one core (layout.plan_layout's rule). Where it then runs in one process after all, or
    fails first, the forkserver has spent a few seconds of another core; it ends with the command,
    or, still importing then, seconds after it (holding the command's stdout and stderr till then)."""
    if workers > 1 or (workers == AUTO_WORKERS and cpu_cores() > 1):
        start_forkserver()


def start_worker(threads: int, device_name: str, data, load: tuple, identity: dict | None, stop, events, slot,
                 command, workers: int, environ: dict) -> None:
    """A worker's initializer (workers.WorkerPool's): ignore Ctrl-C (meant for the command, which
    stops the workers), exit when `command` (the read end of a pipe only the command writes to)
    reaches its end, take the command's `environ` (a forkserver's is that of its start), set
    torch's threads, take a GPU (the next one of `slot`, a shared counter) where there are several,
    put the shared data set on the worker's device (or, where none was shared, load the data set
    `load` = (name, data_dir) and check that it is `identity`, the command's), and keep them in
    WORKER. A worker that cannot start says why on `events` ("failed") and exits (no traceback)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_when_orphaned, args=(command,), daemon=True).start()
    os.environ.clear()
    os.environ.update(environ)
    try:
        _set_up(threads, device_name, data, load, identity, stop, events, slot, workers)
    except Exception as e:  # noqa: BLE001  (said by the parent, as one line)
        events.put(("failed", -1, str(e) if isinstance(e, DropcliError) else f"{type(e).__name__}: {e}"))
        events.close()
        events.join_thread()  # the line reaches the parent before this process ends (or the watch above ends it)
        os._exit(1)


def _set_up(threads: int, device_name: str, data, load: tuple, identity: dict | None, stop, events, slot,
            workers: int) -> None:
    import torch

    from dropcli.provenance import flush_denormals

    # the pool has flushed a worker's results before its interpreter exits; torch's teardown takes
    # seconds (4 s on a busy 2-core machine), so an exiting worker skips it
    atexit.register(os._exit, 0)

    torch.set_num_threads(threads)  # starts no thread: the pool starts at the first parallel work
    flush_denormals()  # before torch starts its threads, which take this thread's mode
    device = torch.device(device_name)
    if device.type == "cuda" and device.index is None and torch.cuda.device_count() > 1:
        with slot.get_lock():
            index, slot.value = slot.value, slot.value + 1
        device = torch.device("cuda", index % torch.cuda.device_count())
        torch.cuda.set_device(device)
    if data is None:
        from dropcli.data import load_dataset

        data = load_dataset(*load, device)
        if identity is not None and data.identity != identity:
            raise DropcliError(f"the data set changed as the study started (sha256 {data.identity['sha256'][:12]} in a "
                               f"worker, {identity['sha256'][:12]} in the command); rerun when nothing writes to it")
    elif device.type != "cpu":
        from dropcli.data import Dataset, Split

        data = Dataset(data.name, *(Split(s.x.to(device), s.y.to(device)) for s in (data.train_full, data.test)),
                       data.source, data.identity)
    events.cancel_join_thread()  # never block a worker's exit on progress nobody reads
    WORKER.update(device=device, data=data, stop=stop, events=events, threads=threads, workers=workers)


def _exit_when_orphaned(command) -> None:
    """Exit this worker when `command` (a multiprocessing Connection, read end) is at its end: the
    command has died (or closed the pool), whichever process is this worker's parent."""
    with contextlib.suppress(EOFError, OSError):
        command.recv_bytes()  # nothing is ever sent: this returns at the end
    os._exit(1)
