#!/usr/bin/env bash
# GPU check for dropcli: CUDA tests, a 3-epoch train on cuda, the --grid in lockstep vs one by one,
# and bf16 against float32 (GPU_CHECK_BF16=0 skips it). Installs nothing from the network;
# takes about 3 minutes on one H100.
#   bash benchmarks/gpu_check.sh            (from the repository root, on a machine with CUDA)
# Wheels in .whl/ (typer and its needs, for a machine whose typer is older) go to /tmp/site first.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 DROPCLI_DATA_DIR=${DROPCLI_DATA_DIR:-/tmp/dropcli-data}
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
PY=${PYTHON:-python3}
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
TIMEFORMAT='%R s wall'
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY -c "import torch, torchvision, typer; print('torch', torch.__version__, '| torchvision', torchvision.__version__, '| typer', typer.__version__, '| cuda', torch.cuda.is_available())"

echo "== tests that need CUDA (and the engine's checks against autograd and torch.optim.Adam)"
$PY -m pytest -q -p no:cacheprovider tests/test_engine.py tests/test_masks.py

echo "== dropcli train --device cuda --epochs 3"
time $PY -m dropcli train --device cuda --epochs 3 --out "$OUT/train3"

echo "== dropcli ablate --grid --device cuda (24 cells x 15 epochs, lockstep)"
time $PY -m dropcli ablate --grid --device cuda --out "$OUT/grid-lockstep"

echo "== the same grid, --parallel-models 1 (one cell at a time)"
time $PY -m dropcli ablate --grid --device cuda --parallel-models 1 --out "$OUT/grid-one-by-one"
$PY - "$OUT" <<'PY'
import sys, pandas as pd
out = sys.argv[1]
a = pd.read_csv(f"{out}/grid-lockstep/runs.csv").sort_values(["keep_prob", "seed"]).reset_index(drop=True)
b = pd.read_csv(f"{out}/grid-one-by-one/runs.csv").sort_values(["keep_prob", "seed"]).reset_index(drop=True)
print("lockstep group size", a["parallel_models"].iloc[0], "| train seconds per group", a["train_seconds"].iloc[0].round(2),
      "| one by one: mean train seconds per cell", b["train_seconds"].mean().round(2))
print("max |test accuracy difference| lockstep vs one by one:", (a["test_accuracy"] - b["test_accuracy"]).abs().max())
print("max relative final-cost difference:", ((a["final_cost"] - b["final_cost"]).abs() / b["final_cost"]).max())
PY

[ "${GPU_CHECK_BF16:-1}" = 0 ] && exit 0
echo "== float32 vs bf16, 15 epochs on cuda"
time $PY -m dropcli train --device cuda --out "$OUT/fp32"
time $PY -m dropcli train --device cuda --precision bf16 --out "$OUT/bf16"
$PY - "$OUT" <<'PY'
import json, sys
for p in ("fp32", "bf16"):
    r = json.load(open(f"{sys.argv[1]}/{p}/run.json"))
    s = [h["seconds"] for h in r["history"]]
    print(f"{p}: test accuracy {r['metrics']['test_accuracy']:.4f}, steady epoch {min(s[1:]):.3f} s, total {sum(s):.2f} s")
PY
