"""A study as a Slurm job array: one task per shard, and a merge job that runs when they end.

    $ dropcli slurm --grid --seeds 10 --out /shared/study --shards 40 --partition gpu --gpus-per-task 1
    $ dropcli slurm ... --submit          # also runs the sbatch commands it prints

Writes DIR/slurm/array-1.sbatch (more arrays when the shards exceed the cluster's MaxArraySize,
often 1001), DIR/slurm/merge.sbatch and DIR/slurm/submit.sh. The array tasks run
`dropcli ablate ... --shard K/N`, each into its own shard folder; the merge job depends on every
array with `afterany`, so it runs even when a shard fails and then names the shards to rerun
(`dropcli merge` exits 1 while cells are missing). Nothing waits on the login node: sbatch returns
at once, and a rerun of a shard resumes where it stopped. DIR must be on storage every node sees.

No value can add a line to a script: every value is checked against what Slurm accepts (names,
time formats) or refused when it holds a character that is not printable, and written quoted for
the reader of its line: shlex quoting on the command line (bash), and in #SBATCH lines a value
with anything but [A-Za-z0-9_./%:=,@+-] in double quotes with a backslash before each '\\', '"',
"'" and '#'. sbatch's directive parser (`get_argument` in Slurm's source) ends an argument at an
unquoted space even after a backslash and starts a comment at an unquoted '#' (so `my\\ study`
fails with "Invalid directive found in batch script: study"), but keeps spaces inside quotes and
takes a backslash as "the next character is plain" (checked on Slurm 22.05 by
tests/test_slurm_real.py). Log file names double '%', as sbatch's file name patterns read %a, %j, %x.
"""

from __future__ import annotations

import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from dropcli.chars import as_is
from dropcli.errors import UsageError

NAME = r"[A-Za-z0-9_.-]+"  # a partition or account name: Slurm's names are letters, digits, '_', '.' and '-'
PARTITIONS = re.compile(rf"{NAME}(,{NAME})*")  # sbatch --partition takes a comma-separated list
TIME = re.compile(r"[0-9]+(:[0-9]+){0,2}|[0-9]+-[0-9]+(:[0-9]+){0,2}|unlimited|infinite", re.IGNORECASE)
TIME_FORMATS = "minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS or UNLIMITED"
# the longest limit sbatch reads right: it counts a limit in seconds, rounded up to minutes, in a signed 32-bit
# int; Slurm 22.05 turned --time 35791394 (and 24855-03:14, 1491309-0) into 4259175903 minutes, 21:52:00 or UNLIMITED
MAX_TIME_MINUTES = (2**31 - 1 - 59) // 60
MAX_PER_TASK = 2**16 - 3  # Slurm's largest CPU count per task (a 16-bit field, NO_VAL16 = 2**16 - 2 excluded)
MAX_ARRAY_SIZE = 4_000_001  # slurm.conf MaxArraySize: "The maximum value is 4000001"
DIRECTIVE_PLAIN = re.compile(r"[A-Za-z0-9_./%:=,@+-]*")  # written as is in an #SBATCH line; others are quoted


def unprintable(text: str) -> str | None:
    """The first character of `text` that cannot go into a job script (control characters, line
    and paragraph separators, format characters, lone surrogates, any space but ' '), shown
    escaped (e.g. '\\n'), or None when every character is printable. A byte of a path that the
    locale could not decode (U+DC80-U+DCFF, Python's surrogateescape, as under a C locale) is
    allowed: the script holds that byte, so it names the same file, and no byte >= 0x80 ends a line."""
    for ch in text:
        if not as_is(ch):
            return ascii(ch)[1:-1]
    return None


def check_printable(what: str, text: str) -> str:
    """`text` unchanged, or ValueError naming `what` and its first unprintable character."""
    bad = unprintable(text)
    if bad is not None:
        raise ValueError(f"{what} holds the character {bad}, which cannot go into a job script; "
                         "use printable characters only")
    return text


@dataclass(frozen=True)
class SlurmOptions:
    """What the sbatch lines ask for; each value is checked here (ValueError naming the option and
    what Slurm accepts), so no script is written with one Slurm would refuse or that could end a line."""

    shards: int
    partition: str | None = None  # None: the cluster's default partition
    gpus_per_task: int = 0
    cpus_per_task: int = 2
    time: str | None = None  # None: the partition's default limit; e.g. 04:00:00
    max_parallel: int | None = None  # the array's %K throttle
    max_array_size: int = 1001  # Slurm's default MaxArraySize: array indices must stay below it
    account: str | None = None  # None: the user's default account

    def __post_init__(self):
        if self.shards < 1:
            raise ValueError("--shards must be at least 1")
        if self.max_array_size < 2:
            raise ValueError("--max-array-size must be at least 2")
        if self.partition is not None and not PARTITIONS.fullmatch(self.partition):
            raise ValueError(f"--partition {self.partition!r} is not a Slurm partition list; use names of letters, "
                             "digits, '_', '.' and '-', separated by commas (e.g. gpu or gpu,cpu)")
        if self.account is not None and not re.fullmatch(NAME, self.account):
            raise ValueError(f"--account {self.account!r} is not a Slurm account name; use letters, digits, "
                             "'_', '.' and '-'")
        if self.time is not None and not TIME.fullmatch(self.time):
            raise ValueError(f"--time {self.time!r} is not a Slurm time limit; use {TIME_FORMATS} (e.g. 04:00:00)")
        if self.time is not None and (time_minutes(self.time) or 0) > MAX_TIME_MINUTES:
            raise ValueError(f"--time {self.time} is longer than Slurm can hold ({MAX_TIME_MINUTES} minutes, about 68 "
                             "years: sbatch would turn it into another limit); give a shorter one, or UNLIMITED")
        for option, value, most in (("--cpus-per-task", self.cpus_per_task, MAX_PER_TASK),
                                    ("--gpus-per-task", self.gpus_per_task, MAX_PER_TASK),
                                    ("--max-array-size", self.max_array_size, MAX_ARRAY_SIZE),
                                    ("--max-parallel", self.max_parallel or 0, MAX_ARRAY_SIZE)):
            if value > most:
                raise ValueError(f"{option} {value} is more than Slurm takes; use at most {most}")


def time_minutes(text: str) -> int | None:
    """The minutes of a Slurm time limit (TIME_FORMATS, seconds rounded up as Slurm does), or None for
    UNLIMITED; `text` must match TIME."""
    if text.lower() in ("unlimited", "infinite"):
        return None
    days, _, clock = text.rpartition("-")
    number = lambda p: int(p) if len(p.lstrip("0")) <= 20 else 10**20  # noqa: E731  (past any limit; int() stops at 4,300 digits)
    parts = [number(p) for p in clock.split(":")]
    if days:  # D-HH, D-HH:MM, D-HH:MM:SS
        hours, minutes, seconds = (parts + [0, 0])[:3]
        return number(days) * 1440 + hours * 60 + minutes + -(-seconds // 60)
    hours, minutes, seconds = [[0, parts[0], 0], [0, *parts], parts][len(parts) - 1]  # minutes, MM:SS, HH:MM:SS
    return hours * 60 + minutes + -(-seconds // 60)


def check_out(out: Path) -> Path:
    """The study folder as it can appear in job scripts, or UsageError: a character that is not
    printable, or a backslash (Slurm reads one in a log file name as 'expand no %a')."""
    text = str(out)
    try:
        check_printable(f"--out {text!r}", text)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if "\\" in text:
        raise UsageError(f"--out {text!r} holds a backslash, which Slurm reads in log file names as "
                         "'expand no %a'; choose a folder without one")
    return out


def check_args(args: list[str]) -> list[str]:
    """The ablate options that go into the job scripts, or UsageError naming one that is not printable."""
    for i, arg in enumerate(args):
        try:
            check_printable(f"{args[i - 1]} {arg!r}" if i and args[i - 1].startswith("--") else repr(arg), arg)
        except ValueError as e:
            raise UsageError(str(e)) from None
    return args


def check_job_settings(base, device_name: str) -> None:
    """What `ablate` checks of the device before training, checked where the scripts are written,
    not hours later in every job: the --device spelling (not the hardware: a login node has no
    GPU) and tf32 on a CPU. UsageError naming the fix. `base` is the grid's TrainConfig. (The
    --data-dir is read when the plan is made: its files' SHA-256 goes into study.json.)"""
    from dropcli.device import check_precision, parse_device

    device = parse_device(device_name)
    if device is not None:
        check_precision(base.precision, device)


def directive(option: str, value: str) -> str:
    """One #SBATCH line that sbatch reads as the one argument `option=value` (spaces, quotes and
    '#' included): plain values as they are, others in double quotes with '\\', '"', "'" and '#'
    backslash-escaped. Values that are not printable are refused before this is called."""
    assert unprintable(value) is None, value
    if DIRECTIVE_PLAIN.fullmatch(value):
        return f"#SBATCH {option}={value}"
    return f'#SBATCH {option}="' + re.sub(r"""([\\"'#])""", r"\\\1", value) + '"'


def log_name(path: Path) -> str:
    """A log file name for --output: '%' doubled, as Slurm's file name patterns read '%%' as '%'."""
    return str(path).replace("%", "%%")


def job_name(out: Path, suffix: str = "") -> str:
    """The job name: dropcli-<folder name>, with anything but [A-Za-z0-9_.-] made '_' (squeue shows it)."""
    return "dropcli-" + re.sub(r"[^A-Za-z0-9_.-]", "_", out.name)[:64] + suffix


def dropcli_command() -> list[str]:
    """The dropcli that writes the scripts, by absolute path, so that the jobs run the same code."""
    return [str(Path(sys.executable).absolute()), "-m", "dropcli"]  # not resolved: a venv's python is a link


def arrays(n: int, max_array_size: int) -> list[tuple[int, int]]:
    """(first shard, last shard) of each array: at most max_array_size - 1 tasks each (indices 1..)."""
    size = max_array_size - 1
    return [(lo, min(n, lo + size - 1)) for lo in range(1, n + 1, size)]


def _header(name: str, opts: SlurmOptions, cpus: int, extra: list[str]) -> list[str]:
    lines = ["#!/bin/bash", directive("--job-name", name), *extra, directive("--cpus-per-task", str(cpus))]
    for option, value in (("--partition", opts.partition), ("--account", opts.account), ("--time", opts.time)):
        if value:
            lines.append(directive(option, value))
    return lines


def script_names(opts: SlurmOptions) -> tuple[str, ...]:
    """The names write_scripts writes in out/slurm: each array's script, merge.sbatch, submit.sh and logs/."""
    arrays_ = [f"array-{i}.sbatch" for i in range(1, len(arrays(opts.shards, opts.max_array_size)) + 1)]
    return (*arrays_, "merge.sbatch", "submit.sh", "logs/")


def write_scripts(folder, out: Path, ablate_args: list[str], opts: SlurmOptions) -> list[Path]:
    """Write the array scripts, the merge script and submit.sh into `folder`, the owned.OwnedFolder
    out/slurm (so never over a user's file or through a link); returns the paths. UsageError
    (before anything is written) for a value that cannot go into a script."""
    check_out(out)
    check_args(ablate_args)
    folder.check(script_names(opts))
    logs = folder.subfolder("logs").folder
    command = " ".join(shlex.quote(a) for a in dropcli_command())
    grid = " ".join(shlex.quote(a) for a in ablate_args)
    target = shlex.quote(str(out))
    paths = []
    for i, (lo, hi) in enumerate(arrays(opts.shards, opts.max_array_size), start=1):
        throttle = f"%{opts.max_parallel}" if opts.max_parallel else ""
        extra = [directive("--array", f"1-{hi - lo + 1}{throttle}"),
                 directive("--output", log_name(logs / f"array-{i}-") + "%a.out")]
        if opts.gpus_per_task:
            extra.append(directive("--gpus-per-task", str(opts.gpus_per_task)))
        lines = _header(job_name(out), opts, opts.cpus_per_task, extra) + [
            "set -euo pipefail",
            f"# shard K of {opts.shards}: this array's task index plus {lo - 1}",
            f"exec {command} ablate {grid} --out {target} --shard \"$((SLURM_ARRAY_TASK_ID + {lo - 1}))/{opts.shards}\"",
        ]
        paths.append(folder.write_text(f"array-{i}.sbatch", "\n".join(lines) + "\n"))
    merge = _header(job_name(out, "-merge"), opts, 1, [directive("--output", log_name(logs / "merge.out"))]) + [
        "set -uo pipefail", f"exec {command} merge {target}"]
    paths.append(folder.write_text("merge.sbatch", "\n".join(merge) + "\n"))
    submit = ["#!/bin/bash", "# submits the arrays, then the merge job once every array task has ended (ok or not);",
              "# by hand: it submits everything each time (dropcli slurm --submit records the job ids in",
              "# submitted.json and submits only what is missing)", "set -euo pipefail", "ids=()"]
    for p in paths[:-1]:
        submit.append(f"ids+=($(sbatch --parsable {shlex.quote(str(p))} | cut -d';' -f1))")
    submit += ["dep=$(IFS=:; echo \"${ids[*]}\")",
               f"sbatch --parsable --dependency=afterany:$dep {shlex.quote(str(paths[-1]))}"]
    paths.append(folder.write_text("submit.sh", "\n".join(submit) + "\n", mode=0o755))
    return paths
