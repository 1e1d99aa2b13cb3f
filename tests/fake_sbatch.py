#!/usr/bin/env python3
"""A stand-in for Slurm's sbatch: reads the #SBATCH lines as Slurm 22.05 does (`directives`), runs
an array script's tasks one after another (SLURM_ARRAY_TASK_ID 1..M, SLURM_ARRAY_TASK_COUNT M), or
a plain script once, and prints a job id as --parsable does. Every call is logged to
$FAKE_SBATCH_LOG. $FAKE_SBATCH_FAIL=<script>:<task> skips a task (as if its node died);
$FAKE_SBATCH_REJECT=<script> refuses that script as sbatch refuses one (exit 1, a line on stderr);
$FAKE_SBATCH_RUN=0 accepts scripts without running them."""

import os
import subprocess
import sys

SPACE = " \t\n\v\f\r"  # C's isspace in the "C" locale


def arguments(text: str) -> list[str]:
    """The arguments of one #SBATCH line after the magic word, as Slurm's get_argument reads them
    (22.05, as observed with the real sbatch): a backslash makes the next character plain, single
    or double quotes group (spaces kept), an unquoted space ends an argument, even after a
    backslash, and an unquoted '#' ends the line."""
    args, i = [], 0
    while True:
        while i < len(text) and text[i] in SPACE:
            i += 1
        if i == len(text):
            return args
        arg, quote, escaped = [], None, False
        while i < len(text) and (quote or text[i] not in SPACE) and text[i] != "\n":
            c = text[i]
            i += 1
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
                continue
            elif quote:
                if c == quote:
                    quote = None
                    continue
            elif c in "\"'":
                quote = c
                continue
            elif c == "#":
                return args + (["".join(arg)] if arg else [])
            arg.append(c)
        if quote:
            raise ValueError(f"Unmatched `{quote}` in [{text}]")
        args.append("".join(arg))


def directives(script: str) -> list[str]:
    """Every argument of the #SBATCH lines before the first command, as sbatch collects them."""
    found = []
    for line in script.split("\n")[1:]:
        if line.startswith("#SBATCH"):
            found += arguments(line[len("#SBATCH"):])
        elif line.strip() and not line.strip().startswith("#"):
            break  # sbatch stops at the first command
    return found


def option(found: list[str], name: str) -> str | None:
    values = [a.split("=", 1)[1] for a in found if a.startswith(f"{name}=")]
    return values[-1] if values else None


def log_file(pattern: str, task) -> str:
    return pattern.replace("%%", "\0").replace("%a", str(task)).replace("\0", "%")


def main() -> None:
    args = sys.argv[1:]
    script = args[-1]
    if os.environ.get("FAKE_SBATCH_LOG"):
        with open(os.environ["FAKE_SBATCH_LOG"], "a") as f:
            f.write(" ".join(args) + "\n")
    if os.path.basename(script) == os.environ.get("FAKE_SBATCH_REJECT"):
        sys.exit(print("sbatch: error: Batch job submission failed: Job violates accounting/QOS policy", file=sys.stderr))
    found = directives(open(script).read())
    array = option(found, "--array")
    tasks = range(1, int(array.split("-")[1].split("%")[0]) + 1) if array else [None]
    for t in tasks if os.environ.get("FAKE_SBATCH_RUN") != "0" else []:
        env = dict(os.environ)
        if t is not None:
            env.update(SLURM_ARRAY_TASK_ID=str(t), SLURM_ARRAY_TASK_COUNT=str(len(tasks)))
            if os.environ.get("FAKE_SBATCH_FAIL") == f"{os.path.basename(script)}:{t}":
                continue  # as if the node died before the task ran
        with open(log_file(option(found, "--output"), t), "w") as f:
            subprocess.run(["bash", script], env=env, stdout=f, stderr=subprocess.STDOUT)
    n = 4001 + os.getpid() % 1000
    if os.environ.get("FAKE_SBATCH_LOG"):  # job ids counted from 4001, one per call
        n = 4000 + len(open(os.environ["FAKE_SBATCH_LOG"]).read().splitlines())
    print(f"{n};cluster")


if __name__ == "__main__":
    main()
