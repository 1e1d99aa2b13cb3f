#!/usr/bin/env bash
# GPU check for dropcli: CUDA tests, a 3-epoch train on cuda, the --grid in lockstep (float32 with
# the fused dropout kernel, float32 with dropout as torch ops, tf32) against cells one by one.
# Installs nothing from the network; takes about 4 minutes on one H100.
#   bash benchmarks/gpu_check.sh            (from the repository root, on a machine with CUDA)
# GPU_CHECK_ONE_BY_ONE: the cells run one by one (default 3 of the grid's; "--grid" for all 24).
# GPU_CHECK_BF16=1 adds float32 against bf16 for one 15-epoch run.
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
ONE_BY_ONE=${GPU_CHECK_ONE_BY_ONE:---keep-probs 0.3,0.7,1.0 --seeds 1}
mkdir -p "$OUT"
TIMEFORMAT='%R s wall'
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY -c "import torch, torchvision, typer; print('torch', torch.__version__, '| torchvision', torchvision.__version__, '| typer', typer.__version__, '| cuda', torch.cuda.is_available())"

echo "== tests that need CUDA (and the engine's checks against autograd and torch.optim.Adam)"
$PY -m pytest -q -p no:cacheprovider -rs tests/test_engine.py tests/test_train.py tests/test_masks.py tests/test_model.py

echo "== dropcli train --device cuda --epochs 3"
time $PY -m dropcli train --device cuda --epochs 3 --out "$OUT/train3"

echo "== dropcli ablate --grid --device cuda (24 cells x 15 epochs, lockstep; fused dropout kernel)"
# (--out under $OUT: a new folder each time; --executor ray splits the grid over several GPUs where there are)
time $PY -m dropcli ablate --grid --device cuda --out "$OUT/grid-lockstep"

echo "== the same, --no-fused-dropout (the same masks as torch ops)"
time $PY -m dropcli ablate --grid --device cuda --no-fused-dropout --out "$OUT/grid-unfused"

echo "== the same, --precision tf32"
time $PY -m dropcli ablate --grid --device cuda --precision tf32 --out "$OUT/grid-tf32"

echo "== one by one: ablate $ONE_BY_ONE --parallel-models 1"
time $PY -m dropcli ablate $ONE_BY_ONE --device cuda --parallel-models 1 --out "$OUT/grid-one-by-one"
$PY - "$OUT" <<'PY'
import sys, pandas as pd
out = sys.argv[1]
key = ["keep_prob", "seed"]
runs = {n: pd.read_csv(f"{out}/grid-{n}/runs.csv").sort_values(key).reset_index(drop=True)
        for n in ("lockstep", "unfused", "tf32", "one-by-one")}
a, one = runs["lockstep"], runs["one-by-one"]
for n in ("lockstep", "unfused", "tf32"):
    r = runs[n]
    print(f"{n}: group size {r['parallel_models'].iloc[0]}, training {r['train_seconds'].iloc[0]:.2f} s, "
          f"mean test accuracy {r['test_accuracy'].mean():.4f}")
print("fused vs unfused: identical test accuracies:", bool((a["test_accuracy"] == runs["unfused"]["test_accuracy"]).all()),
      "| max |test accuracy difference|:", (a["test_accuracy"] - runs["unfused"]["test_accuracy"]).abs().max())
print("tf32 - float32 test accuracy per cell: mean %+.4f, min %+.4f, max %+.4f"
      % tuple(getattr(runs["tf32"]["test_accuracy"] - a["test_accuracy"], f)() for f in ("mean", "min", "max")))
same = a.merge(one, on=key, suffixes=("", "_one"))
per_cell = one["train_seconds"].mean()
print(f"one by one: {len(one)} cells, {per_cell:.2f} s training per cell; lockstep trains {len(a)} cells in "
      f"{a['train_seconds'].iloc[0]:.2f} s = {len(a) * per_cell / a['train_seconds'].iloc[0]:.1f}x one by one")
print("max |test accuracy difference| lockstep vs one by one, same cell:",
      (same["test_accuracy"] - same["test_accuracy_one"]).abs().max())
PY

[ "${GPU_CHECK_BF16:-0}" = 0 ] && exit 0
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
