"""Where and with which code a number was made; MKL in its reproducible mode on every CPU."""

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
