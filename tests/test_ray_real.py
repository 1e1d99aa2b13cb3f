"""--executor ray on a real multi-node Ray (tests/ray_cluster.py: a head node and a worker node on
this machine, started with `ray start`): --ray-address reaches both nodes; SIGTERM stops a run with
the usual "Interrupted" line; killing the worker node's raylet mid-study leaves every finished cell
saved, and a rerun finishes with the rows of a local run. Where CI=true these tests fail, never
skip, when the cluster cannot start; elsewhere they skip when Ray is not installed."""

import fcntl
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import assert_same_measured_rows, engine_required
from typer.testing import CliRunner

from dropcli.cli import app

REPO = Path(__file__).resolve().parents[1]
GRID = ["--keep-probs", "0.5,0.7,1.0", "--seeds", "2", "--epochs", "2", "--train-sizes", "1000", "--batch-size", "50",
        "--validation-size", "500", "--hidden", "32,32", "--device", "cpu", "--parallel-models", "1"]
runner = CliRunner()


@pytest.fixture(scope="module")
def cluster():
    try:
        import psutil  # noqa: F401
        import ray  # noqa: F401
    except ImportError as e:
        engine_required(f"a real Ray cluster needs {e.name} (pip install 'dropcli[ray,test]')")
    from ray_cluster import two_node_ray
    from slurm_cluster import Unavailable

    root = Path(tempfile.mkdtemp(prefix="dropcli-ray-"))  # short: Ray's unix sockets live below it
    try:
        with two_node_ray(root, env={"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}) as c:
            yield c
    except Unavailable as e:
        engine_required(str(e))


def dropcli(cluster, out: Path, *extra: str) -> subprocess.Popen:
    """`dropcli ablate GRID --executor ray --ray-address ADDRESS --out OUT` as its own process."""
    env = {**os.environ, **cluster.env, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "dropcli", "ablate", *GRID, *extra, "--executor", "ray",
                             "--ray-address", cluster.address, "--out", str(out)],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def rows(out: Path) -> int:
    try:
        return len(pd.read_csv(out / "runs.csv"))
    except (OSError, pd.errors.EmptyDataError):
        return 0


def wait_for(condition, seconds: float, what: str) -> None:
    end = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < end, f"waited {seconds:g} s for {what}"
        time.sleep(0.2)


def lock_is_free(out: Path) -> bool:
    with open(out / ".lock", "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(f, fcntl.LOCK_UN)
        return True


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "study"
    result = runner.invoke(app, ["ablate", *GRID, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_sigterm_during_a_ray_run_is_the_usual_interrupt(cluster, tmp_path):
    out = tmp_path / "study"
    proc = dropcli(cluster, out, "--seeds", "4", "--epochs", "3")
    wait_for(lambda: rows(out) >= 1 or proc.poll() is not None, 180, "the first cell")
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGTERM)
    start = time.monotonic()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert time.monotonic() - start < 20, "SIGTERM took too long"
    assert err.strip().splitlines()[-1].startswith("Interrupted (SIGTERM)"), err
    assert "Traceback" not in err and lock_is_free(out)


def test_a_study_on_two_nodes_survives_losing_the_worker_node(cluster, tmp_path, local_run):
    out = tmp_path / "study"
    proc = dropcli(cluster, out)
    wait_for(lambda: (rows(out) >= 1 and cluster.worker_node_busy()) or proc.poll() is not None, 180,
             "a cell saved and a task running on the worker node")
    assert proc.poll() is None, proc.communicate()[1]
    saved = rows(out)
    killed = cluster.kill_worker_node()
    _, err = proc.communicate(timeout=300)
    assert "Traceback" not in err, err
    assert ": 2 node(s), 2 CPUs, 0 GPUs" in err, err  # --ray-address reached both nodes
    assert proc.returncode in (0, 1), err  # Ray retried the lost tasks on the head node, or gave up: one line
    if proc.returncode:
        assert err.strip().splitlines()[-1].startswith("Error: a Ray task failed"), err
    assert rows(out) >= saved, f"cells lost after killing raylet {killed}"
    first = rows(out)
    again = dropcli(cluster, out)
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert f"Resumed: {first} cells were already in" in err, err
    assert rows(out) == 6 and lock_is_free(out)
    assert_same_measured_rows(out, local_run)


def test_a_cluster_that_asks_for_a_token_is_named(cluster, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    proc = subprocess.run([sys.executable, "-m", "dropcli", "ablate", *GRID, "--executor", "ray", "--ray-address",
                           cluster.address, "--out", str(tmp_path / "s")], cwd=REPO, capture_output=True, text=True,
                          env={**env, "PYTHONPATH": str(REPO), "RAY_AUTH_MODE": "disabled"}, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(f"Error: cannot reach a Ray cluster at {cluster.address!r}")
    assert "the cluster asks for its token (Ray's token authentication): set RAY_AUTH_MODE=token" in proc.stderr
    assert lock_is_free(tmp_path / "s")
