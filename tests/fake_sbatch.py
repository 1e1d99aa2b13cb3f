#!/usr/bin/env python3
"""A stand-in for Slurm's sbatch: runs an array script's tasks one after another (SLURM_ARRAY_TASK_ID
1..M, SLURM_ARRAY_TASK_COUNT M), or a plain script once, and prints a job id as --parsable does.
Every call is logged to $FAKE_SBATCH_LOG. A task may be made to fail with $FAKE_SBATCH_FAIL=<array>:<task>."""

import os
import re
import subprocess
import sys

args = sys.argv[1:]
script = args[-1]
log = os.environ.get("FAKE_SBATCH_LOG")
if log:
    with open(log, "a") as f:
        f.write(" ".join(args) + "\n")
text = open(script).read()
array = re.search(r"^#SBATCH --array=1-(\d+)", text, re.M)
fail = os.environ.get("FAKE_SBATCH_FAIL", "")
tasks = range(1, int(array.group(1)) + 1) if array else [None]
for t in tasks:
    env = dict(os.environ)
    if t is not None:
        env.update(SLURM_ARRAY_TASK_ID=str(t), SLURM_ARRAY_TASK_COUNT=str(len(tasks)))
        if fail == f"{os.path.basename(script)}:{t}":
            continue  # as if the node died before the task ran
    out = re.search(r"^#SBATCH --output=(\S+)", text, re.M).group(1).replace("%a", str(t))
    with open(out, "w") as f:
        subprocess.run(["bash", script], env=env, stdout=f, stderr=subprocess.STDOUT)
print(f"{abs(hash(script)) % 100000};cluster")
