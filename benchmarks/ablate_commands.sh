#!/bin/bash
# Whole `dropcli ablate` commands of the 24-cell benchmark grid (2 epochs on 5,000 images), timed in
# turn, interleaved, as a user runs them: every arm pays its own start (imports, data, workers).
#
#   bash benchmarks/ablate_commands.sh ROUNDS ARM...     # an ARM is CHECKOUT:WORKERS
#   bash benchmarks/ablate_commands.sh 3 /work/before:0 .:0 .:1
#
# CHECKOUT is a folder holding a dropcli checkout (e.g. a `git worktree` of an older commit), run
# with this checkout's .venv; WORKERS is passed to --workers (0: the automatic layout). Prints one
# line per command (seconds, load average) and the minimum of each arm.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
rounds=$1; shift
out=$(mktemp -d); trap 'rm -rf "$out"' EXIT
declare -A best
for r in $(seq "$rounds"); do
  for arm in "$@"; do
    src=$(cd "${arm%:*}" && pwd); workers=${arm##*:}
    rm -rf "$out/study"
    start=$(date +%s.%N)
    (cd "$out" && PYTHONPATH="$src" "$here/.venv/bin/python" -m dropcli ablate --grid --train-sizes 5000 --epochs 2 \
      --workers "$workers" --out "$out/study" > "$out/log" 2>&1) || { cat "$out/log"; exit 1; }
    s=$(echo "$(date +%s.%N) - $start" | bc)
    echo "round $r  $arm  $s s  load $(cut -d' ' -f1 /proc/loadavg)  ($(git -C "$src" rev-parse --short HEAD))"
    best[$arm]=$(echo "${best[$arm]:-$s} $s" | tr ' ' '\n' | sort -g | head -1)
  done
done
for arm in "$@"; do echo "minimum  $arm  ${best[$arm]} s"; done
