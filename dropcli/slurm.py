"""A study as a Slurm job array: one task per shard, and a merge job that runs when they end.

    $ dropcli slurm --grid --seeds 10 --out /shared/study --shards 40 --partition gpu --gpus-per-task 1
    $ dropcli slurm ... --submit          # also runs the sbatch commands it prints

Writes DIR/slurm/array-1.sbatch (more arrays when the shards exceed the cluster's MaxArraySize,
often 1001), DIR/slurm/merge.sbatch and DIR/slurm/submit.sh. The array tasks run
`dropcli ablate ... --shard K/N`, each into its own shard folder; the merge job depends on every
array with `afterany`, so it runs even when a shard fails and then names the shards to rerun
(`dropcli merge` exits 1 while cells are missing). Nothing waits on the login node: sbatch returns
at once, and a rerun of a shard resumes where it stopped. DIR must be on storage every node sees.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from dropcli.errors import DropcliError, UsageError
from dropcli.files import atomic_write_text


@dataclass(frozen=True)
class SlurmOptions:
    shards: int
    partition: str | None = None
    gpus_per_task: int = 0
    cpus_per_task: int = 2
    time: str | None = None  # e.g. 04:00:00
    max_parallel: int | None = None  # the array's %K throttle
    max_array_size: int = 1001  # Slurm's default MaxArraySize: array indices must stay below it


def dropcli_command() -> list[str]:
    """The dropcli that writes the scripts, by absolute path, so that the jobs run the same code."""
    return [str(Path(sys.executable).absolute()), "-m", "dropcli"]  # not resolved: a venv's python is a link


def arrays(n: int, max_array_size: int) -> list[tuple[int, int]]:
    """(first shard, last shard) of each array: at most max_array_size - 1 tasks each (indices 1..)."""
    size = max_array_size - 1
    return [(lo, min(n, lo + size - 1)) for lo in range(1, n + 1, size)]


def _header(name: str, logs: Path, opts: SlurmOptions, extra: list[str]) -> list[str]:
    lines = ["#!/bin/bash", f"#SBATCH --job-name={name}", *extra, f"#SBATCH --cpus-per-task={opts.cpus_per_task}"]
    if opts.partition:
        lines.append(f"#SBATCH --partition={opts.partition}")
    if opts.time:
        lines.append(f"#SBATCH --time={opts.time}")
    return lines


def write_scripts(out: Path, ablate_args: list[str], opts: SlurmOptions) -> list[Path]:
    """Write the array scripts, the merge script and submit.sh into out/slurm; returns the paths."""
    if opts.shards < 1:
        raise UsageError("--shards must be at least 1")
    if opts.max_array_size < 2:
        raise UsageError("--max-array-size must be at least 2")
    folder, logs = out / "slurm", out / "slurm" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    command = " ".join(shlex.quote(a) for a in dropcli_command())
    grid = " ".join(shlex.quote(a) for a in ablate_args)
    target = shlex.quote(str(out))
    paths = []
    for i, (lo, hi) in enumerate(arrays(opts.shards, opts.max_array_size), start=1):
        throttle = f"%{opts.max_parallel}" if opts.max_parallel else ""
        extra = [f"#SBATCH --array=1-{hi - lo + 1}{throttle}", f"#SBATCH --output={logs}/array-{i}-%a.out"]
        if opts.gpus_per_task:
            extra.append(f"#SBATCH --gpus-per-task={opts.gpus_per_task}")
        lines = _header(f"dropcli-{out.name}", logs, opts, extra) + [
            "set -euo pipefail",
            f"# shard K of {opts.shards}: this array's task index plus {lo - 1}",
            f"exec {command} ablate {grid} --out {target} --shard \"$((SLURM_ARRAY_TASK_ID + {lo - 1}))/{opts.shards}\"",
        ]
        path = folder / f"array-{i}.sbatch"
        atomic_write_text(path, "\n".join(lines) + "\n")
        paths.append(path)
    merge_opts = SlurmOptions(shards=opts.shards, partition=opts.partition, cpus_per_task=1, time=opts.time)
    merge = _header(f"dropcli-{out.name}-merge", logs, merge_opts, [f"#SBATCH --output={logs}/merge.out"]) + [
        "set -uo pipefail", f"exec {command} merge {target}"]
    atomic_write_text(folder / "merge.sbatch", "\n".join(merge) + "\n")
    submit = ["#!/bin/bash", "# submits the arrays, then the merge job once every array task has ended (ok or not)",
              "set -euo pipefail", "ids=()"]
    for p in paths:
        submit.append(f"ids+=($(sbatch --parsable {shlex.quote(str(p))} | cut -d';' -f1))")
    submit += ["dep=$(IFS=:; echo \"${ids[*]}\")",
               f"sbatch --parsable --dependency=afterany:$dep {shlex.quote(str(folder / 'merge.sbatch'))}"]
    atomic_write_text(folder / "submit.sh", "\n".join(submit) + "\n")
    (folder / "submit.sh").chmod(0o755)
    return [*paths, folder / "merge.sbatch", folder / "submit.sh"]


def submit(out: Path) -> str:
    """Run out/slurm/submit.sh (sbatch must be on PATH); returns what it printed."""
    import shutil

    if shutil.which("sbatch") is None:
        raise DropcliError("sbatch is not on PATH: run this on the cluster's login node, or run "
                           f"{out / 'slurm' / 'submit.sh'} there")
    proc = subprocess.run(["bash", str(out / "slurm" / "submit.sh")], capture_output=True, text=True)
    if proc.returncode:
        last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        raise DropcliError(f"sbatch failed: {last}; check the scripts in {out / 'slurm'}")
    return proc.stdout.strip()

