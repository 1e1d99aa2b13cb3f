"""results/longer_training.py on the committed studies: every 60-epoch run it compares continues its
15-epoch run to the last digit, and each of its lines a README quotes ('> keep 0.7: 98.06% -> ...')
is a line it prints now."""

import os
import re
import subprocess
import sys

import pytest
from committed import ROOT, committed_studies

STUDY = ROOT / "results" / "ablation-epochs-60"


def test_the_readmes_quote_what_the_longer_training_comparison_prints():
    if STUDY not in committed_studies():
        pytest.skip("the 60-epoch study is not committed in this checkout")
    run = subprocess.run([sys.executable, str(ROOT / "results" / "longer_training.py")], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    printed = set(run.stdout.splitlines())
    quoted = [line.strip()[2:] for readme in (ROOT / "README.md", STUDY / "README.md")
              for line in readme.read_text(encoding="utf-8").splitlines() if re.match(r"^\s*> keep [0-9.]+: ", line)]
    assert len(quoted) >= 2 and [q for q in quoted if q not in printed] == []
