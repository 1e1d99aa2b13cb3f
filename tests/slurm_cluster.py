"""A one-node Slurm cluster on localhost for the tests: Debian's slurmctld, slurmd and munge, run as
root with a private munge socket and key, private ports and a private state folder, so it touches
nothing of a Slurm or munge the machine may already run. `proctrack/linuxproc` and `task/none`
need no cgroups. Clients (sbatch, squeue, scancel) find it through $SLURM_CONF.

    with local_slurm(Path("/tmp/s")) as env:     # env: os.environ plus SLURM_CONF
        subprocess.run(["sinfo"], env=env)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator

PACKAGES = ["slurmctld", "slurmd", "slurm-client", "munge"]  # Debian names; slurm-wlm is their meta-package
DAEMONS = ["munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo"]


class Unavailable(Exception):
    """The cluster cannot run here; str(e) says why."""


def missing() -> list[str]:
    return [d for d in DAEMONS if shutil.which(d) is None and not Path("/usr/sbin", d).exists()]


def install() -> None:
    """apt-get install the packages (as root); an `apt-get update` first only when needed."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise Unavailable("Slurm is not installed and this is not a root Debian machine that could install it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES]
    if subprocess.run(cmd, env=env, capture_output=True).returncode:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=600)
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        if proc.returncode:
            raise Unavailable(f"apt-get install {' '.join(PACKAGES)} failed: {proc.stderr.strip()[-300:]}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _conf(root: Path, cpus: int) -> str:
    host = socket.gethostname().split(".")[0]
    return f"""ClusterName=dropcli-test
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge.socket
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/builtin
MinJobAge=600
NodeName=dropcli-node NodeHostname={host} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN
PartitionName=debug Nodes=dropcli-node Default=YES MaxTime=INFINITE State=UP
"""


def _pid(path: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int(path.read_text().strip())
    return None


def _stop(pid: int | None) -> None:
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            os.kill(pid, 0)
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)


def _log_tail(path: Path) -> str:
    with contextlib.suppress(OSError):
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-5:])
    return "(no log)"


@contextlib.contextmanager
def local_slurm(root: Path, cpus: int = 2) -> Iterator[dict]:
    """Start munged, slurmctld and slurmd in `root` (a short private folder: a unix socket path must
    stay under 108 bytes) and yield the environment for clients; every daemon is stopped on the way
    out, whatever happened. Raises Unavailable when the node does not come up."""
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o700)  # munged refuses folders others may write
    for d in ("state", "spool"):
        (root / d).mkdir(exist_ok=True)
    conf = root / "slurm.conf"
    conf.write_text(_conf(root, cpus))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    pids = []
    try:
        key = root / "munge.key"
        key.write_bytes(os.urandom(1024))  # what mungekey --create writes; munge before 0.5.14 has no mungekey
        key.chmod(0o400)
        subprocess.run(["munged", f"--socket={root}/munge.socket", f"--key-file={root}/munge.key",
                        f"--pid-file={root}/munged.pid", f"--log-file={root}/munged.log",
                        f"--seed-file={root}/munged.seed", "--force"], check=True, capture_output=True)
        pids.append(root / "munged.pid")
        subprocess.run(["slurmctld", "-f", str(conf)], env=env, check=True, capture_output=True)
        pids.append(root / "slurmctld.pid")
        subprocess.run(["slurmd", "-f", str(conf), "-N", "dropcli-node"], env=env, check=True, capture_output=True)
        pids.append(root / "slurmd.pid")
        _wait_idle(env, root)
        yield env
    except subprocess.CalledProcessError as e:
        raise Unavailable(f"{e.cmd[0]} did not start: {(e.stderr or b'').decode(errors='replace').strip()[-300:]}; "
                          f"slurmctld log: {_log_tail(root / 'slurmctld.log')}") from None
    finally:
        subprocess.run(["scancel", "--full", "--user", "root"], env=env, capture_output=True)
        for pid_file in reversed(pids):
            _stop(_pid(pid_file))


def _wait_idle(env: dict, root: Path, seconds: float = 60) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        proc = subprocess.run(["sinfo", "-h", "-o", "%t"], env=env, capture_output=True, text=True)
        if proc.stdout.strip() == "idle":
            return
        time.sleep(0.5)
    raise Unavailable(f"the Slurm node did not become idle in {seconds:g} s (sinfo: {proc.stdout.strip() or proc.stderr.strip()}); "
                      f"slurmd log: {_log_tail(root / 'slurmd.log')}")
