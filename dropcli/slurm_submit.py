"""Submit a study's Slurm scripts, recording each job as sbatch accepts it, so that a rejection
loses nothing and a rerun submits only what is missing.

    $ dropcli slurm ... --submit      # array-1 accepted (job 4001), array-2 rejected: exit 1, naming 4001
    $ dropcli slurm ... --submit      # after the fix: array-2 only, then the merge after 4001 and the new id

DIR/slurm/submitted.json holds the jobs accepted so far: the number of shards, each array's
shards and job id, and the merge job's id. It is rewritten (atomically) after every accepted
sbatch, before the next one runs. The merge job depends (afterany) on every recorded array, old
and new. A study once submitted whole is not submitted again: delete the record to do that.
sbatch runs as a subprocess with --parsable, one script at a time; submit.sh beside the scripts
does the same by hand, without the record.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

from dropcli.errors import DropcliError, UsageError
from dropcli.owned import OwnedFolder

RECORD_VERSION = 1
JOB_ID = "[0-9]{1,10}"  # a Slurm job id as sbatch --parsable prints it (ASCII digits; Slurm's ids are 32-bit)
SBATCH_SECONDS = 300  # sbatch retries an unreachable controller for a while; past this it is a failure


def _in_order(key: str, shards: int) -> bool:
    """Whether a record's array key 'LO-HI' names shards 1 <= LO <= HI <= shards, as dropcli writes it."""
    match = re.fullmatch(r"([1-9][0-9]{0,9})-([1-9][0-9]{0,9})", key)
    return bool(match) and int(match[1]) <= int(match[2]) <= shards


def record_path(out: Path) -> Path:
    """Where the submitted job ids of the study in `out` are recorded: out/slurm/submitted.json."""
    return out / "slurm" / "submitted.json"


def read_record(out: Path, shards: int) -> dict:
    """The jobs recorded for `out` ({"version", "shards", "arrays": {"LO-HI": job id}, "merge": job id
    or None}), empty for a study not yet submitted. DropcliError for a file dropcli did not write;
    UsageError when it records another split into shards than `shards`."""
    path = record_path(out)
    if not path.exists():
        return {"version": RECORD_VERSION, "shards": shards, "arrays": {}, "merge": None}
    from dropcli.schemas import load_json

    try:
        record = load_json(path, "record of submitted jobs", "delete it if no job of it runs")
        ok = (type(record["version"]) is int and record["version"] == RECORD_VERSION  # not True, not 1.0
              and type(record["shards"]) is int and record["shards"] >= 1
              and all(_in_order(k, record["shards"]) and re.fullmatch(JOB_ID, v) for k, v in record["arrays"].items())
              and (record["merge"] is None or re.fullmatch(JOB_ID, record["merge"])))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        ok = False
    if not ok:
        raise DropcliError(f"{path} is not a record of submitted jobs that dropcli wrote; check that none of its "
                           "jobs is queued (squeue), then delete it")
    if record["shards"] != shards:
        raise UsageError(f"{path} records jobs of this study split into {record['shards']} shards "
                         f"({described(record)}); rerun with --shards {record['shards']}, or cancel them "
                         "(scancel) and delete the record to split it anew")
    return record


def described(record: dict) -> str:
    """The recorded jobs in words, e.g. 'shards 1-1000 = job 4001, merge = job 4003'."""
    parts = [f"shards {k} = job {v}" for k, v in record["arrays"].items()]
    if record["merge"]:
        parts.append(f"merge = job {record['merge']}")
    return ", ".join(parts) or "no jobs"


def sbatch(args: list[str], script: Path) -> str:
    """Run `sbatch --parsable ARGS SCRIPT`; the job id, or DropcliError with sbatch's last line."""
    try:
        proc = subprocess.run(["sbatch", "--parsable", *args, str(script)], capture_output=True, text=True,
                              timeout=SBATCH_SECONDS)
    except subprocess.TimeoutExpired:
        raise DropcliError(f"sbatch did not answer in {SBATCH_SECONDS} s for {script}") from None
    except OSError as e:
        raise DropcliError(f"cannot run sbatch: {e.strerror or e}") from None
    lines = proc.stdout.strip().splitlines()
    job = lines[-1].split(";")[0].strip() if lines else ""
    if proc.returncode or not re.fullmatch(JOB_ID, job):  # str.isdigit also takes '²' and other scripts' digits
        last = (proc.stderr.strip().splitlines() or lines or ["no message"])[-1]
        raise DropcliError(f"sbatch refused {script} ({last})")
    return job


def submit_scripts(out: Path, arrays: list[tuple[Path, int, int]], shards: int, merge: Path) -> dict:
    """Submit each array script (path, first shard, last shard) not yet recorded, then the merge
    script after all of them; returns the record with "new": the names submitted now. On a
    rejection, DropcliError naming the jobs accepted before it (they stay recorded)."""
    if shutil.which("sbatch") is None:
        raise DropcliError("sbatch is not on PATH: run this on the cluster's login node, or run "
                           f"{out / 'slurm' / 'submit.sh'} there")
    record, new = read_record(out, shards), []

    def accepted(key: str | None, job: str, name: str) -> None:
        if key is None:
            record["merge"] = job
        else:
            record["arrays"][key] = job
        text = json.dumps({k: v for k, v in record.items() if k != "new"}, indent=1)
        OwnedFolder(record_path(out).parent).write_text(record_path(out).name, text)  # never over a user's file
        new.append(name)

    try:
        for script, lo, hi in arrays:
            if f"{lo}-{hi}" not in record["arrays"]:
                accepted(f"{lo}-{hi}", sbatch([], script), script.name)
        if record["merge"] is None:
            dependency = ":".join(record["arrays"][f"{lo}-{hi}"] for _, lo, hi in arrays)
            accepted(None, sbatch([f"--dependency=afterany:{dependency}"], merge), merge.name)
    except DropcliError as e:
        before = (f"submitted before it: {described(record)}, recorded in {record_path(out)}"
                  if record["arrays"] else "nothing was submitted")
        raise DropcliError(f"{e}; {before}; fix the cause and rerun the same command: it submits only what "
                           "is missing") from None
    return {**record, "new": new}
