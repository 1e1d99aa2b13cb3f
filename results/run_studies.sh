#!/usr/bin/env bash
# The studies behind README's "Does the headline hold?" (training length, learning rate, width, data
# size at a fixed step budget), in the order they run. Each command resumes where it stopped, so
# rerunning this script after an interruption (or in a later session) finishes them:
#   nohup nice -n 19 bash results/run_studies.sh > studies.log 2>&1 &
# then `dropcli report` on each folder. Every row of runs.csv records where and with which code it ran.
# A study runs in results/running/ (ignored by git, so a half-done study never reaches a commit, CI or the
# tests of committed studies); once complete, it gets its README, `mv` puts it in results/, and
# `dropcli report results/NAME` rewrites its page to name the folder it is committed in.
set -euo pipefail
cd "$(dirname "$0")/.."
DROPCLI=${DROPCLI:-dropcli}
study() {  # study NAME OPTIONS...: run (or resume) it in results/running/NAME, unless results/NAME holds it complete
    local name=$1
    shift
    if [ -e "results/$name" ]; then
        echo "results/$name is complete and committed; skipped"
        return
    fi
    $DROPCLI ablate "$@" --out "results/running/$name"
}
study ablation-lr --keep-probs 0.7,1.0 --lrs 0.0003,0.001,0.003 --seeds 10
study ablation-width --keep-probs 0.5,0.7,1.0 --hiddens 512x4,1024x4 --seeds 10 --parallel-models 1
study ablation-steps --keep-probs 0.5,0.7,0.9,1.0 --train-sizes 1000,5000,10000,55000 --steps 8250 --seeds 10
study ablation-epochs-60 --keep-probs 0.5,0.7,0.8,1.0 --epochs 60 --seeds 10
