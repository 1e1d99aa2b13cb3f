"""Where and with which code a number was made; MKL in its reproducible mode on every CPU."""

import json
import os
import platform
import re
import subprocess
import sys

import pytest

from dropcli.provenance import code_version, cpu_model, utc_now
from dropcli.tables import read_runs

PROBE = """
import warnings, sys
warnings.simplefilter("always")
{setup}
from dropcli.provenance import mkl_reproducible, _mkl_cbwr
with warnings.catch_warnings(record=True) as w:
    ok = mkl_reproducible()
calls = _mkl_cbwr()
print(ok, calls[0](-1) if calls else None, len([x for x in w if "MKL_CBWR=AUTO,STRICT" in str(x.message)]))
"""


def probe(setup: str, env_extra: dict | None = None) -> list[str]:
    import os

    env = {k: v for k, v in os.environ.items() if k != "MKL_CBWR"}
    env.update(env_extra or {})
    out = subprocess.run([sys.executable, "-c", PROBE.format(setup=setup)], capture_output=True, text=True, env=env,
                         check=True)
    return out.stdout.split()


def test_mkl_runs_reproducibly_without_the_user_setting_anything():
    ok, mode, warned = probe("import dropcli, torch\nimport os; assert os.environ['MKL_CBWR'] == 'AUTO,STRICT'")
    if mode == "None":
        pytest.skip("this torch has no MKL")
    assert (ok, mode, warned) == ("True", str(0x10002), "0")


def test_torch_imported_first_is_still_made_reproducible_before_mkl_starts():
    ok, mode, warned = probe("import torch\nimport dropcli.train")
    if mode == "None":
        pytest.skip("this torch has no MKL")
    assert (ok, mode, warned) == ("True", str(0x10002), "0")


def test_mkl_started_before_dropcli_is_reported_with_the_fix():
    ok, mode, warned = probe("import torch\ntorch.randn(64, 64) @ torch.randn(64, 64)")
    if mode == "None":
        pytest.skip("this torch has no MKL")
    assert (ok, warned) == ("False", "1")
    ok, mode, warned = probe("import torch\ntorch.randn(64, 64) @ torch.randn(64, 64)", {"MKL_CBWR": "AUTO,STRICT"})
    assert (ok, warned) == ("True", "0")  # the fix the warning names


def test_provenance_strings():
    assert re.fullmatch(r".+, \d+ cores, \w+.*", cpu_model())
    assert re.fullmatch(r"0\.1\.0(\+g[0-9a-f]{12}(\.dirty)?)?", code_version())
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", utc_now())


FLUSH = """
import warnings
warnings.simplefilter("always")
{setup}
from dropcli.provenance import flush_denormals
with warnings.catch_warnings(record=True) as w:
    first = flush_denormals()
torch.set_num_threads(4)  # threads started later take the mode of the thread that starts them
print(first, flush_denormals(), len([x for x in w if "flush-to-zero" in str(x.message)]))
"""


@pytest.mark.parametrize("setup, expected", [
    ("import torch", ["True", "True", "0"]),  # as the commands do: set before torch starts its threads
    ("import torch\ntorch.ones(1 << 20).mul_(2).sum()", ["False", "False", "1"]),  # its threads started first
])
def test_flush_to_zero_holds_in_every_thread_or_a_warning_says_which_not(setup, expected):
    if platform.machine() not in ("x86_64", "AMD64") or (os.cpu_count() or 1) < 2:
        pytest.skip("an x86 CPU with at least 2 cores (torch starts no other thread on one)")
    out = subprocess.run([sys.executable, "-c", FLUSH.format(setup=setup)], capture_output=True, text=True, check=True,
                         env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert out.stdout.split() == expected, out.stderr


def test_a_dead_weights_adam_moment_is_flushed_to_zero_not_left_denormal():
    """The reason for flushing: with a zero gradient Adam's first moment decays to 4 x 2**-149 and
    stays there (0.9 x 4 rounds back to 4), so a dead unit's weights keep denormal moments that slow
    every later step; inside provenance.flushing (where dropcli trains) they reach 0. Outside it this
    thread keeps IEEE arithmetic (Python's own floats, Hypothesis's generated ones)."""
    import torch

    from dropcli.engine import FlatAdam
    from dropcli.provenance import flushing

    def moment_after_dead_steps() -> float:
        flat = torch.zeros(8)  # fewer elements than torch's grain: the update runs in this thread alone
        flat.grad = torch.full((8,), 1e-3)
        adam = FlatAdam(flat, lr=1e-3)
        adam.update()
        flat.grad.zero_()  # the unit died: its gradient is 0 from now on
        for _ in range(1_000):
            adam.update()
        return adam.m.max().item()

    def python_denormal(smallest_normal: float = 2.0**-1022) -> float:
        return smallest_normal * 0.5  # a float64 denormal, computed here by Python at run time

    assert moment_after_dead_steps() == 4 * 2.0**-149 and python_denormal() > 0
    with flushing() as every:
        if every is None:
            pytest.skip("this CPU has no flush-to-zero mode")
        assert every and moment_after_dead_steps() == 0.0
        with flushing():
            pass  # an inner block leaves the outer one flushing
        assert moment_after_dead_steps() == 0.0 and python_denormal() == 0.0
    assert moment_after_dead_steps() == 4 * 2.0**-149 and python_denormal() > 0
    torch.set_flush_denormal(True)  # a caller that flushed before: it still does after a block
    try:
        with flushing():
            pass
        assert python_denormal() == 0.0
    finally:
        torch.set_flush_denormal(False)


def test_every_computing_command_flushes_before_torch_starts_its_threads(tmp_path):
    """train, evaluate, predict and ablate (in this process and on workers) on 2 threads, with a
    late flush made an error: each sets the mode before its first parallel work, and the rows say so."""
    if platform.machine() not in ("x86_64", "AMD64") or (os.cpu_count() or 1) < 2:
        pytest.skip("an x86 CPU with at least 2 cores (torch starts no other thread on one)")
    small = ["--epochs", "1", "--train-size", "500", "--validation-size", "500", "--hidden", "16,16", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "2", "COLUMNS": "100"}

    def dropcli(*args):
        out = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-m", "dropcli", *args],
                             capture_output=True, text=True, env=env)
        assert out.returncode == 0, out.stderr[-2000:]
        assert "flush-to-zero" not in out.stderr

    library = ("from dropcli.config import TrainConfig; from dropcli.data import load_dataset; "
               "from dropcli.train import train; data = load_dataset('mnist'); "
               "r = train(TrainConfig(hidden=(16, 16), epochs=1, train_size=500, validation_size=500), data); "
               "print(r.engine)")  # train.py's example: load_dataset is the library's first parallel work
    out = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-c", library], capture_output=True, text=True,
                         env=env)
    assert out.returncode == 0 and out.stdout.strip() == "eager, numpy masks dropout, denormals flushed", out.stderr[-2000:]
    dropcli("train", *small, "--out", str(tmp_path / "run"))
    assert json.loads((tmp_path / "run" / "run.json").read_text())["metrics"]["engine"].endswith(", denormals flushed")
    dropcli("evaluate", str(tmp_path / "run"), "--device", "cpu")
    dropcli("predict", str(tmp_path / "run"), "--index", "3", "--mc-samples", "3", "--device", "cpu")
    grid = ["--keep-probs", "0.5,1", "--seeds", "1", "--epochs", "1", "--train-sizes", "500", "--validation-size", "500",
            "--hidden", "16,16", "--device", "cpu"]
    for workers in ("1", "2"):
        dropcli("ablate", *grid, "--workers", workers, "--out", str(tmp_path / f"study{workers}"))
        engines = set(read_runs(tmp_path / f"study{workers}" / "runs.csv")["engine"])
        assert engines == {"eager, numpy masks dropout, denormals flushed", "eager, none dropout, denormals flushed"}
