"""--executor ray on a local Ray cluster: the same rows as a plain run, distinct GPUs per task, resources checked."""

import re

import pandas as pd
import pytest
from typer.testing import CliRunner

from dropcli.cli import app

ray = pytest.importorskip("ray")
GRID = ["--keep-probs", "0.5,1.0", "--seeds", "2", "--epochs", "1", "--train-sizes", "1000", "--hidden", "32,32",
        "--parallel-models", "2"]
runner = CliRunner()


@pytest.fixture
def local_ray():
    def start(**resources):
        ray.init(include_dashboard=False, log_to_driver=False, num_cpus=2, **resources)

    yield start
    ray.shutdown()


def test_ray_gives_the_rows_of_a_plain_run(tmp_path, local_ray):
    local_ray()
    result = runner.invoke(app, ["ablate", *GRID, "--device", "cpu", "--executor", "ray", "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    plain = runner.invoke(app, ["ablate", *GRID, "--device", "cpu", "--out", str(tmp_path / "p")])
    assert plain.exit_code == 0
    a, b = (pd.read_csv(tmp_path / d / "runs.csv").sort_values(["keep_prob_mean", "seed"]).reset_index(drop=True)
            for d in ("r", "p"))
    for col in ("test_accuracy", "final_cost", "validation_accuracy", "train_accuracy", "best_epoch"):
        assert a[col].equals(b[col]), col
    again = runner.invoke(app, ["ablate", *GRID, "--device", "cpu", "--executor", "ray", "--out", str(tmp_path / "r")])
    assert again.exit_code == 0 and "Resumed: 4 cells were already in" in again.stderr


def test_a_cluster_with_gpus_gets_one_gpu_per_task_and_a_slot_per_gpu(tmp_path, local_ray):
    """dropcli's sizing, not Ray's scheduling: two GPUs (as Ray counts them) make two slots of one GPU
    each, a CPU device keeps tasks on CPUs, and --device cpu is never sent to a GPU."""
    from dropcli.ray_executor import RayCluster

    local_ray(num_gpus=2)
    cluster = RayCluster(None, "auto", cpus_per_task=1.0)
    assert (cluster.gpus_per_task, cluster.slots, cluster.device_name) == (1.0, 2, "cuda")
    cpu = RayCluster(None, "cpu", cpus_per_task=1.0)
    assert cpu.gpus_per_task == 0.0 and cpu.device_name == "cpu" and cpu.slots >= 1


def test_a_cluster_without_gpus_is_refused_before_anything_waits(tmp_path, local_ray):
    local_ray()
    from dropcli.errors import UsageError
    from dropcli.ray_executor import RayCluster

    with pytest.raises(UsageError, match="the Ray cluster has 0 GPUs and each task asks for 1"):
        RayCluster(None, "cuda", gpus_per_task=1.0)
    with pytest.raises(UsageError, match="has 2 CPUs and each task asks for 4"):
        RayCluster(None, "cpu", cpus_per_task=4.0)


def test_retried_tasks_do_not_duplicate_cells(tmp_path, local_ray, monkeypatch):
    local_ray()
    import dropcli.ray_executor as rx

    real = rx.train_group_task

    def twice(configs, device, options, *expected):  # as if Ray ran the task again after a worker died
        out = real(configs, device, options, *expected)
        return {**out, "runs": out["runs"] * 2, "history": out["history"] * 2}

    monkeypatch.setattr(rx, "train_group_task", twice)
    result = runner.invoke(app, ["ablate", *GRID, "--device", "cpu", "--executor", "ray", "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    runs = pd.read_csv(tmp_path / "r" / "runs.csv")
    assert len(runs) == 4 and not runs.duplicated(["keep_prob_mean", "seed"]).any()
    assert len(pd.read_csv(tmp_path / "r" / "history.csv")) == 4


def test_a_task_that_finds_other_data_trains_nothing(tmp_path, local_ray, monkeypatch):
    """A node whose data files are not the study's (another SHA-256 than study.json's) trains nothing:
    the command ends in one line naming both hashes, and no row is committed."""
    local_ray()
    import dropcli.ray_executor as rx

    real = rx.train_group_task

    def elsewhere(configs, device, options, expected=None):  # runs in the worker: its data differs
        import dataclasses

        import dropcli.data as d

        load = d.load_dataset
        d.load_dataset = lambda *a: dataclasses.replace(load(*a), identity={**load(*a).identity, "sha256": "e" * 64})
        try:
            return real(configs, device, options, expected)
        finally:
            d.load_dataset = load

    monkeypatch.setattr(rx, "train_group_task", elsewhere)
    result = runner.invoke(app, ["ablate", *GRID, "--device", "cpu", "--executor", "ray", "--out", str(tmp_path / "r")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "the data loaded for training has sha256 eeeeeeeeeeee, but the study records" in result.stderr.splitlines()[-1]
    assert not (tmp_path / "r" / "runs.csv").exists()


def test_an_unreachable_address_is_one_line_within_seconds(tmp_path):
    import time

    from conftest import check_error

    start = time.monotonic()
    result = runner.invoke(app, ["ablate", *GRID, "--device", "cpu", "--executor", "ray", "--ray-address", "127.0.0.1:1",
                                 "--out", str(tmp_path / "r")])
    check_error(result, 1, "cannot reach a Ray cluster at '127.0.0.1:1' (Connection refused")
    assert time.monotonic() - start < 10 and not ray.is_initialized()
    assert not (tmp_path / "r").exists()  # refused before the study folder is claimed or locked
    check_error(runner.invoke(app, ["ablate", *GRID, "--device", "cpu", "--executor", "ray", "--ray-address", "no:port",
                                    "--out", str(tmp_path / "r")]), 2, "--ray-address 'no:port'")


def test_a_sigterm_that_ray_turns_into_a_bare_keyboard_interrupt_stays_a_sigterm():
    import os
    import signal

    from dropcli.ray_executor import _signals_through_ray
    from dropcli.terminal import Interrupted, install_signal_handlers

    before = signal.getsignal(signal.SIGTERM)
    install_signal_handlers()
    try:
        with pytest.raises(Interrupted) as stopped, _signals_through_ray():
            try:  # what ray.wait does: its signal check catches the handler's exception, raises a bare one
                os.kill(os.getpid(), signal.SIGTERM)
            except KeyboardInterrupt:
                raise KeyboardInterrupt from None
        assert stopped.value.signum == signal.SIGTERM and stopped.value.exit_code == 143
        assert signal.getsignal(signal.SIGTERM).__name__ == "_raise_interrupted"  # restored on the way out
    finally:
        signal.signal(signal.SIGTERM, before)


@pytest.mark.parametrize("value, message", [("inf", "--cpus-per-task must be at most 65,536 (got inf)"),
                                            ("nan", "--cpus-per-task takes a number (got nan)"),
                                            ("0", "--cpus-per-task must be at least 0.01")])
def test_cpus_per_task_is_a_finite_count_of_cpus(tmp_path, value, message):
    from conftest import check_error

    check_error(runner.invoke(app, ["ablate", *GRID, "--executor", "ray", "--cpus-per-task", value,
                                    "--out", str(tmp_path / "r")]), 2, message)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("address", ["127.0.0.1:6_379", "127.0.0.1:\u0666\u0663\u0667\u0669", "127.0.0.1:+6379",
                                     "127.0.0.1: 6379\n", "127.0.0.1:123456", "127.0.0.1:0", "127.0.0.1:65536"])
def test_a_port_is_ascii_digits(address):
    """int() read '6_379', '+6379' and Arabic-Indic digits as port 6379; a port is 1 to 65535 in ASCII
    digits, and the address is shown as given (repr: one line)."""
    from dropcli.errors import UsageError
    from dropcli.ray_executor import check_reachable

    with pytest.raises(UsageError, match=re.escape(f"--ray-address {address!r} is not host:port")):
        check_reachable(address)
