#!/usr/bin/env bash
# make bench-train-step: sfnet vs PyTorch on one SlowFast R50 8x8 training step (batch 2, 32x224x224).
set -euo pipefail
SFNET=${1:-.build/release/sfnet}
PY=${PYTHON:-$(dirname "$0")/../.venv/bin/python}
[ -x "$PY" ] || PY=python3
if ! "$PY" -c "import torch" 2>/dev/null; then
  echo "SKIPPED: the benchmark needs torch; set PYTHON=..."; exit 0
fi
mkdir -p bench-out
"$PY" Benchmarks/train_step_bench.py "$SFNET" --threads "${THREADS:-2}" --rounds "${ROUNDS:-3}" --repeat "${REPEAT:-2}" --json bench-out/train_step.json
