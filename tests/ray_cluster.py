"""A two-node Ray cluster on this machine for the tests: `ray start --head` and a second
`ray start --address ...` (the worker node, with its own custom resource), each on private ports
and in a private temp folder, so that it neither meets nor stops another Ray on the machine.

    with two_node_ray(Path("/tmp/r")) as cluster:
        cluster.address            # host:port of the head's GCS, for --ray-address
        cluster.kill_worker_node() # its raylet by process id (`ray stop` would stop both nodes)

Teardown stops every process whose command line names the private folder, and their children
(Ray's workers rename themselves `ray::...`), whatever happened; where CI=true (nothing else runs
there) `ray stop --force` follows.
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import psutil
from slurm_cluster import Unavailable, free_port

RAY = str(Path(sys.executable).with_name("ray"))
FAST_NODE_DEATH = {"RAY_health_check_period_ms": "500", "RAY_health_check_timeout_ms": "1000",
                   "RAY_health_check_failure_threshold": "3"}  # a killed node is seen dead in seconds, not ~30 s
WORKER_RESOURCE = "dropcli_worker"  # only the worker node has it: how the test knows its raylet


def _worker_ports(count: int = 40) -> int:
    """The first of `count` free ports below Linux's ephemeral range (32768 up), where the other
    ports of a node (free_port) cannot fall inside it."""
    for _ in range(100):
        low = random.randrange(20000, 32000 - count)
        try:
            for port in range(low, low + count + 1):
                with socket.socket() as s:
                    s.bind(("", port))
            return low
        except OSError:
            continue
    raise Unavailable(f"no {count} free ports in a row between 20000 and 32000 for Ray's workers")


def _ports() -> list[str]:
    low = _worker_ports()
    return [f"--node-manager-port={free_port()}", f"--object-manager-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}", f"--metrics-export-port={free_port()}",
            f"--min-worker-port={low}", f"--max-worker-port={low + 40}"]


@dataclass
class Cluster:
    root: Path
    address: str
    env: dict  # what a driver needs: Ray's token authentication (on by default since Ray 2.5x) with a private token

    def processes(self) -> list[psutil.Process]:
        """Every process of this cluster: those naming the folder, and their descendants."""
        found = {}
        for p in psutil.process_iter(["cmdline"]):
            with contextlib.suppress(psutil.Error):
                if any(str(self.root) in part for part in p.info["cmdline"] or []):
                    found[p.pid] = p
                    for child in p.children(recursive=True):
                        found[child.pid] = child
        return list(found.values())

    def worker_raylet(self) -> psutil.Process:
        for p in self.processes():
            with contextlib.suppress(psutil.Error):
                if p.name() == "raylet" and WORKER_RESOURCE in " ".join(p.cmdline()):
                    return p
        raise Unavailable("the worker node's raylet is not running")

    def worker_node_busy(self) -> bool:
        """Whether a task runs on the worker node now (Ray titles a worker process ray::<task> while
        it runs one, ray::IDLE between tasks)."""
        with contextlib.suppress(psutil.Error, Unavailable):
            for child in self.worker_raylet().children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    title = " ".join(child.cmdline())
                    if title.startswith("ray::") and not title.startswith(("ray::IDLE", "ray::DashboardAgent",
                                                                           "ray::RuntimeEnvAgent")):
                        return True
        return False

    def kill_worker_node(self) -> int:
        raylet = self.worker_raylet()
        raylet.kill()
        return raylet.pid

    def stop(self) -> None:
        procs = self.processes()
        for p in procs:
            with contextlib.suppress(psutil.Error):
                p.terminate()
        _, alive = psutil.wait_procs(procs, timeout=5)
        for p in alive:
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(alive, timeout=5)


@contextlib.contextmanager
def two_node_ray(root: Path, cpus_per_node: int = 1, env: dict | None = None, tries: int = 2) -> Iterator[Cluster]:
    """The head node and a worker node, `cpus_per_node` CPUs each, their processes (and so Ray's
    workers) with `env` added to the environment; yields the Cluster, and stops every process of
    it on the way out. A start that fails (a port taken meanwhile by another program, say) is
    tried again, `tries` times in all; then Unavailable says why."""
    for attempt in range(1, tries + 1):
        try:
            cluster = _start(root / str(attempt), cpus_per_node, env)
            break
        except Unavailable:
            if attempt == tries:
                raise
    try:
        yield cluster
    finally:
        cluster.stop()
        if os.environ.get("CI") == "true":  # nothing else runs there; elsewhere other Ray instances may
            subprocess.run([RAY, "stop", "--force"], capture_output=True, timeout=120)


def _start(root: Path, cpus_per_node: int, env: dict | None) -> Cluster:
    """Start both nodes in `root`; on a failure, stop what started and raise Unavailable."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    (root / "auth_token").write_text(secrets.token_hex(32))
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(root / "auth_token")}
    env = {**os.environ, **(env or {}), "RAY_USAGE_STATS_ENABLED": "0", **auth, **FAST_NODE_DEATH}
    common = [f"--num-cpus={cpus_per_node}", "--num-gpus=0", "--object-store-memory=100000000",
              "--disable-usage-stats", "--log-style=record"]
    cluster = Cluster(root, "", auth)
    try:
        head = subprocess.run([RAY, "start", "--head", f"--port={port}", f"--temp-dir={root}", "--include-dashboard=false",
                               *common, *_ports()], env=env, capture_output=True, text=True, timeout=120)
        if head.returncode:
            raise Unavailable(f"ray start --head failed: {(head.stderr + head.stdout).strip()[-400:]}")
        import ray

        cluster.address = ray._private.services.canonicalize_bootstrap_address(f"127.0.0.1:{port}")
        worker = subprocess.run([RAY, "start", f"--address={cluster.address}", f"--resources={{\"{WORKER_RESOURCE}\": 1}}",
                                 *common, *_ports()], env=env, capture_output=True, text=True, timeout=120)
        if worker.returncode:
            raise Unavailable(f"ray start --address (the worker node) failed: {(worker.stderr + worker.stdout).strip()[-400:]}")
        cluster.worker_raylet()
        return cluster
    except subprocess.TimeoutExpired as e:
        cluster.stop()
        raise Unavailable(f"{' '.join(e.cmd[:3])} did not finish in {e.timeout:g} s") from None
    except BaseException:
        cluster.stop()
        raise
