"""Run a study's lockstep groups as Ray tasks: on a cluster, or on one machine with several GPUs.

    $ pip install 'dropcli[ray]'
    $ dropcli ablate --grid --seeds 10 --executor ray                        # a local Ray, every GPU
    $ dropcli ablate --grid --seeds 10 --executor ray --ray-address auto     # a running cluster

The driver (the machine that runs the command) alone writes the study folder, exactly as a local
run does, so the lock, resume and the files are unchanged; each task trains one lockstep group
where Ray places it and returns its rows. Ray may retry a task whose worker died, so a cell can
arrive twice: the driver keeps the first copy. Before submitting anything the cluster's resources
are checked, because Ray waits silently forever for GPUs that do not exist.
"""

from __future__ import annotations

from dropcli.config import TrainConfig
from dropcli.errors import DropcliError, UsageError


def _ray():
    try:
        import ray
    except ImportError:
        raise UsageError("--executor ray needs Ray: pip install 'dropcli[ray]'") from None
    return ray


def train_group_task(configs: list[TrainConfig], device_name: str, train_options: dict) -> dict:
    """Runs inside a Ray worker: train one lockstep group, return its rows (small, picklable)."""
    import ray

    from dropcli.data import load_dataset
    from dropcli.device import resolve_device
    from dropcli.provenance import utc_now
    from dropcli.tables import history_rows, run_row
    from dropcli.train import train_group

    gpu_ids = [str(g) for g in ray.get_gpu_ids()]
    device = resolve_device("cuda" if gpu_ids and device_name in ("auto", "cuda") else device_name)
    data = load_dataset(configs[0].dataset, configs[0].data_dir, device)
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


class RayCluster:
    """A connection to Ray (a new local instance, or --ray-address), with the resources a task asks
    for: one GPU where the cluster has GPUs and the device allows CUDA, else `cpus_per_task` CPUs."""

    def __init__(self, address: str | None, device_name: str, cpus_per_task: float = 1.0,
                 gpus_per_task: float | None = None):
        self.ray = _ray()
        self.started_here = not self.ray.is_initialized()
        if self.started_here:
            try:
                self.ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise DropcliError(f"cannot reach a Ray cluster at {address or 'a new local one'} ({e}); "
                                   "check --ray-address, or leave it out to start Ray here") from None
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

    def close(self) -> None:
        if self.started_here and self.ray.is_initialized():
            self.ray.shutdown()

    def run(self, groups: list[list[TrainConfig]], on_rows, train_options: dict | None = None, log=None) -> dict:
        """Submit every group as a task and hand each finished group's rows to on_rows(runs, history)
        as they arrive (the caller commits them). Returns {"tasks", "retried_duplicates", "gpu_ids"}."""
        ray = self.ray
        task = ray.remote(num_cpus=self.cpus_per_task, num_gpus=self.gpus_per_task, max_retries=3)(train_group_task)
        pending = {task.remote(g, self.device_name, train_options or {}): g for g in groups}
        seen, duplicates, gpu_ids = set(), 0, []
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                group = pending.pop(ref)
                result = ray.get(ref)
                fresh = []
                for r in result["runs"]:  # a retried task brings its cells again: keep the first copy
                    if _cell(r) not in seen:
                        seen.add(_cell(r))
                        fresh.append(r)
                duplicates += len(result["runs"]) - len(fresh)
                gpu_ids.append(result["gpu_ids"])
                if log:
                    log(f"group of {len(group)} cells done on node {result['node'][:8]}"
                        + (f", GPU {','.join(result['gpu_ids'])}" if result["gpu_ids"] else ""))
                if fresh:
                    keep = {_cell(r) for r in fresh}
                    history = {(_cell(h), h["epoch"]): h for h in result["history"] if _cell(h) in keep}
                    on_rows(fresh, list(history.values()))
        return {"tasks": len(groups), "retried_duplicates": duplicates, "gpu_ids": gpu_ids}


def _cell(row: dict) -> str:
    from dropcli.grid import cell_id

    return cell_id(row["keep_probs"], row["input_keep_prob"], row["max_norm"], row["train_size"], row["seed"])
