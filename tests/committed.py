"""The studies committed under results/: the tests that check them read only what git tracks, so a
study folder a copy of the tree carries without committing it (one in progress, one a user is making)
is never taken for a committed study. Outside a git checkout every results/*/runs.csv counts."""

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def committed_studies() -> list[Path]:
    """Folders under ROOT/results whose runs.csv git tracks (sorted), or all that hold one without git."""
    found = sorted(p.parent for p in (ROOT / "results").glob("*/runs.csv"))
    try:
        listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "results"], capture_output=True,
                                timeout=30, check=True).stdout.decode().split("\0")
    except (OSError, subprocess.SubprocessError):
        return found
    tracked = {ROOT / name for name in listed if name}
    return [folder for folder in found if folder / "runs.csv" in tracked]
