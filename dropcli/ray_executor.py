"""Run a study's lockstep groups as Ray tasks: on a cluster, or on one machine with several GPUs.

    $ pip install 'dropcli[ray]'
    $ dropcli ablate --grid --seeds 10 --executor ray                        # a local Ray, every GPU
    $ dropcli ablate --grid --seeds 10 --executor ray --ray-address auto     # a running cluster

The driver (the machine that runs the command) alone writes the study folder, exactly as a local
run does, so the lock, resume and the files are unchanged; each task trains one lockstep group
where Ray places it and returns its rows. Ray may retry a task whose worker died, so a cell can
arrive twice: the driver keeps the first copy. Before submitting anything the cluster's resources
are checked, because Ray waits silently forever for GPUs that do not exist, and a cluster
address is tried first (a TCP connection, a few seconds at most), because ray.init retries an
address where nothing listens for minutes. SIGTERM and Ctrl-C stop a run as they stop a local one:
ray.init's own SIGTERM handler (a bare exit) is replaced by the one there before, and the driver
waits for results in short slices so that a signal is handled at once.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket

from dropcli.config import TrainConfig
from dropcli.errors import DropcliError, UsageError

CONNECT_SECONDS = 5.0  # the TCP check of --ray-address
WAIT_SECONDS = 1.0  # each ray.wait slice: how soon a signal is handled
TASK_RETRIES = 3  # Ray runs a task again when its worker or node dies, this many times


def _ray():
    try:
        import ray
    except ImportError:
        raise UsageError("--executor ray needs Ray: pip install 'dropcli[ray]'") from None
    return ray


def train_group_task(configs: list[TrainConfig], device_name: str, train_options: dict,
                     expected_sha256: str | None = None) -> dict:
    """Runs inside a Ray worker: train one lockstep group, return its rows (small, picklable); or,
    when the data found here has another SHA-256 than expected_sha256, {"data_sha256": found}."""
    import ray

    from dropcli.data import load_dataset
    from dropcli.device import resolve_device
    from dropcli.provenance import utc_now
    from dropcli.tables import history_rows, run_row
    from dropcli.train import train_group

    gpu_ids = [str(g) for g in ray.get_gpu_ids()]
    device = resolve_device("cuda" if gpu_ids and device_name in ("auto", "cuda") else device_name)
    data = load_dataset(configs[0].dataset, configs[0].data_dir, device)
    found = data.identity["sha256"] if data.identity else None
    if expected_sha256 and found != expected_sha256:  # the files here are not the study's: train nothing
        return {"data_sha256": found}
    results = train_group(configs, data, device, **train_options)
    stamp = utc_now()
    return {"runs": [run_row(r, stamp) for r in results], "history": [h for r in results for h in history_rows(r)],
            "gpu_ids": gpu_ids, "node": ray.get_runtime_context().get_node_id()}


def check_resources(ray, gpus_per_task: float, cpus_per_task: float) -> dict:
    """The cluster's resources, or a UsageError if no task could ever be placed."""
    have = ray.cluster_resources()
    if gpus_per_task and have.get("GPU", 0) < gpus_per_task:
        raise UsageError(f"the Ray cluster has {have.get('GPU', 0):g} GPUs and each task asks for {gpus_per_task:g}; "
                         "use --device cpu, or start Ray on machines with GPUs")
    if have.get("CPU", 0) < cpus_per_task:
        raise UsageError(f"the Ray cluster has {have.get('CPU', 0):g} CPUs and each task asks for {cpus_per_task:g}; "
                         "lower --cpus-per-task")
    return have


def check_reachable(address: str | None) -> None:
    """DropcliError naming `address` unless something accepts a TCP connection where ray.init would
    connect (Ray turns 127.0.0.1 into this machine's address; 'auto' and $RAY_ADDRESS are
    resolved as Ray resolves them). No address and no $RAY_ADDRESS: a new local Ray, nothing to check."""
    given = address or os.environ.get("RAY_ADDRESS")
    if not given or given == "local":
        return
    fix = "check --ray-address (the head node's host:port, printed by `ray start --head`), or leave it out to start Ray here"
    target = given.split("://", 1)[1] if "://" in given else given
    if "://" not in given:
        try:
            from ray._private.services import canonicalize_bootstrap_address

            target = canonicalize_bootstrap_address(given) or target
        except ImportError:  # another Ray layout: try the address as given
            pass
        except ConnectionError as e:
            raise DropcliError(f"cannot reach a Ray cluster at {given!r} ({e}); {fix}") from None
        except ValueError as e:
            raise UsageError(f"--ray-address {given!r}: {e}; give host:port, 'auto' or ray://host:port") from None
    host, _, port = target.rpartition(":")
    try:
        if not (re.fullmatch("[0-9]{1,5}", port) and 1 <= int(port) <= 65535):  # int() also reads '6_379', '+6379', '٦'
            raise ValueError(port)
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_SECONDS):
            pass
    except ValueError:
        raise UsageError(f"--ray-address {given!r} is not host:port, 'auto' or ray://host:port") from None
    except OSError as e:
        where = "" if target == given else f" at {target}"
        raise DropcliError(f"cannot reach a Ray cluster at {given!r} ({e.strerror or e}{where}); {fix}") from None


TOKEN_FIX = ("the cluster asks for its token (Ray's token authentication): set RAY_AUTH_MODE=token and "
             "RAY_AUTH_TOKEN, or copy the head node's ~/.ray/auth_token here")


def _asks_for_token(e: BaseException | None) -> bool:
    """Whether ray.init failed because the cluster wants an authentication token (said in a chained error)."""
    while e is not None:
        if "InvalidAuthToken" in str(e) or type(e).__name__ == "AuthenticationError":
            return True
        e = e.__cause__ or e.__context__
    return False


class RayCluster:
    """A connection to Ray (a new local instance, or --ray-address), with the resources a task asks
    for: one GPU where the cluster has GPUs and the device allows CUDA, else `cpus_per_task` CPUs."""

    def __init__(self, address: str | None, device_name: str, cpus_per_task: float = 1.0,
                 gpus_per_task: float | None = None):
        self.ray = _ray()
        self.started_here = not self.ray.is_initialized()
        if self.started_here:
            check_reachable(address)
            before = signal.getsignal(signal.SIGTERM)
            try:
                self.ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise DropcliError(f"cannot reach a Ray cluster at {repr(address) if address else 'a new local one'} ({e}); "
                                   + (TOKEN_FIX if _asks_for_token(e) else
                                      "check --ray-address, or leave it out to start Ray here")) from None
            finally:
                if before is not None:  # ray.init's handler exits without a word
                    with contextlib.suppress(ValueError):  # not the main thread: Ray set none either
                        signal.signal(signal.SIGTERM, before)
        try:
            have = self.ray.cluster_resources()
            if gpus_per_task is None:
                cuda_allowed = device_name in ("auto", "cuda") or device_name.startswith("cuda")
                gpus_per_task = 1.0 if cuda_allowed and have.get("GPU", 0) >= 1 else 0.0
            check_resources(self.ray, gpus_per_task, cpus_per_task)
        except BaseException:
            self.close()
            raise
        self.device_name = "cuda" if gpus_per_task else device_name
        self.cpus_per_task, self.gpus_per_task = cpus_per_task, gpus_per_task
        self.slots = int(have.get("GPU", 0) // gpus_per_task) if gpus_per_task else int(have.get("CPU", 1) // cpus_per_task)
        self.address = address

    def describe(self) -> str:
        """One line: where the cluster is and what it has, e.g. 'Ray at 10.0.0.1:6379: 2 nodes, 64 CPUs, 8 GPUs'."""
        have = self.ray.cluster_resources()
        nodes = sum(1 for n in self.ray.nodes() if n.get("Alive"))
        return (f"Ray {'started here' if self.address is None else 'at ' + self.address}: {nodes} node(s), "
                f"{have.get('CPU', 0):g} CPUs, {have.get('GPU', 0):g} GPUs")

    def close(self) -> None:
        """Shut down the Ray instance this object started (never a cluster it only joined)."""
        if self.started_here and self.ray.is_initialized():
            self.ray.shutdown()

    def run(self, groups: list[list[TrainConfig]], on_rows, train_options: dict | None = None, log=None,
            data_sha256: str | None = None, on_data=None) -> dict:
        """Submit every group as a task and hand each finished group's rows to on_rows(runs, history)
        as they arrive (the caller commits them). data_sha256: the study's data, checked by each task
        before it trains; a task that found other data calls on_data(found), which raises. Returns {"tasks", "retried_duplicates", "gpu_ids"}.
        A SIGTERM or SIGHUP meanwhile ends in what the handler installed before raises (the CLI's
        Interrupted), though Ray turns an exception raised inside ray.wait into a bare KeyboardInterrupt."""
        with _signals_through_ray():
            return self._run(groups, on_rows, train_options, log, data_sha256, on_data)

    def _run(self, groups, on_rows, train_options, log, data_sha256=None, on_data=None) -> dict:
        ray = self.ray
        task = ray.remote(num_cpus=self.cpus_per_task, num_gpus=self.gpus_per_task, max_retries=TASK_RETRIES)(train_group_task)
        pending = {task.remote(g, self.device_name, train_options or {}, data_sha256): g for g in groups}
        seen, duplicates, gpu_ids = set(), 0, []
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=WAIT_SECONDS)  # signals run between slices
            for ref in done:
                group = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayError as e:  # a worker or node died more often than Ray retries
                    first = (str(e).strip().splitlines() or [""])[0][:200]
                    raise DropcliError(f"a Ray task failed after {TASK_RETRIES} retries ({type(e).__name__}: {first}); "
                                       "every finished cell is saved: rerun the same command to run the rest") from None
                if "data_sha256" in result:  # nothing of the group was trained
                    if on_data:
                        on_data(result["data_sha256"])
                    raise DropcliError(f"a Ray task found data with sha256 {str(result['data_sha256'])[:12]}, not the "
                                       "study's; give every node the study's data files")
                fresh = []
                for r in result["runs"]:  # a retried task brings its cells again: keep the first copy
                    if _cell(r) not in seen:
                        seen.add(_cell(r))
                        fresh.append({**r, "workers": self.slots})  # the tasks the cluster runs side by side
                duplicates += len(result["runs"]) - len(fresh)
                gpu_ids.append(result["gpu_ids"])
                if log:
                    log(f"group of {len(group)} cells done on node {result['node'][:8]}"
                        + (f", GPU {','.join(result['gpu_ids'])}" if result["gpu_ids"] else ""))
                if fresh:
                    keep = {_cell(r) for r in fresh}
                    history = {(_cell(h), h["step"]): h for h in result["history"] if _cell(h) in keep}
                    on_rows(fresh, list(history.values()))
        return {"tasks": len(groups), "retried_duplicates": duplicates, "gpu_ids": gpu_ids}


@contextlib.contextmanager
def _signals_through_ray():
    """Remember which of SIGTERM/SIGHUP arrives while inside; Ray's signal check turns the
    exception the handler raises into a bare KeyboardInterrupt (SIGINT to the caller), so on the
    way out the handler installed before is called again with the signal that came."""
    came, before = [], {}

    def note(signum, frame):
        came.append(signum)
        handler = before.get(signum)
        if callable(handler):
            handler(signum, frame)
        raise KeyboardInterrupt

    for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if sig is not None:
            with contextlib.suppress(ValueError):  # not the main thread: signals are not ours to handle
                before[sig] = signal.signal(sig, note)
    try:
        yield
    except KeyboardInterrupt:
        handler = before.get(came[-1]) if came else None
        if callable(handler):
            handler(came[-1], None)
        raise
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def _cell(row: dict) -> str:
    from dropcli.tables import row_cell_id

    return row_cell_id(row)
