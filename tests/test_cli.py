"""The command line itself: every command answers --help at once, --version names the code, shell
completion is on, and grid options are shared by ablate and slurm."""

import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from dropcli.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.mark.parametrize("command", [[], ["train"], ["evaluate"], ["predict"], ["ablate"], ["report"], ["merge"], ["slurm"], ["adopt"]])
def test_help(command):
    result = invoke(*command, "--help")
    assert result.exit_code == 0 and "Usage" in result.output


def test_python_dash_m_and_version():
    import subprocess
    import sys

    from dropcli.provenance import code_version

    out = subprocess.run([sys.executable, "-m", "dropcli", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"dropcli {code_version()}"


def test_help_is_fast_and_offers_shell_completion():
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "dropcli", "--help"], capture_output=True, text=True, check=True)
    assert time.perf_counter() - start < 10 and "--install-completion" in out.stdout
    heavy = subprocess.run([sys.executable, "-c", "import sys, dropcli.cli; print(sorted(m for m in ('torch', 'pandas', 'scipy') if m in sys.modules))"],
                           capture_output=True, text=True, check=True)
    assert heavy.stdout.strip() == "[]"  # --help imports none of the heavy libraries


def test_ablate_and_slurm_share_the_grid_options():
    from dropcli.cli_studies import GRID_OPTIONS

    for command in ("ablate", "slurm"):
        text = invoke(command, "--help").output
        for name in GRID_OPTIONS:
            assert "--" + name.replace("_", "-") in text, (command, name)
