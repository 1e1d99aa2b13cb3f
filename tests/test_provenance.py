"""Where and with which code a number was made; MKL in its reproducible mode on every CPU."""

import platform
import re
import subprocess
import sys

import pytest

from dropcli.provenance import code_version, cpu_model, utc_now

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
    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("the threads' inherited mode is checked on x86 CPUs")
    out = subprocess.run([sys.executable, "-c", FLUSH.format(setup=setup)], capture_output=True, text=True, check=True,
                         env={**__import__("os").environ, "OMP_NUM_THREADS": "2"})
    assert out.stdout.split() == expected, out.stderr


def test_a_dead_weights_adam_moment_is_flushed_to_zero_not_left_denormal():
    """The reason for flush_denormals: with a zero gradient Adam's first moment decays to 4 x 2**-149
    and stays there (0.9 x 4 rounds back to 4), so a dead unit's weights keep denormal moments that
    slow every later step; flushed (as every dropcli command runs), they reach 0."""
    import torch

    from dropcli.engine import FlatAdam

    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU has no flush-to-zero mode")

    def moment_after_dead_steps(flush: bool) -> float:
        torch.set_flush_denormal(flush)
        try:
            flat = torch.zeros(8)  # fewer elements than torch's grain: the update runs in this thread alone
            flat.grad = torch.full((8,), 1e-3)
            adam = FlatAdam(flat, lr=1e-3)
            adam.update()
            flat.grad.zero_()  # the unit died: its gradient is 0 from now on
            for _ in range(1_000):
                adam.update()
            return adam.m.max().item()
        finally:
            torch.set_flush_denormal(True)

    assert moment_after_dead_steps(flush=False) == 4 * 2.0**-149
    assert moment_after_dead_steps(flush=True) == 0.0
