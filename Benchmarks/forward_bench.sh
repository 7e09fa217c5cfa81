#!/usr/bin/env bash
# make bench-forward: sfnet vs PyTorch vs onnxruntime on the SlowFast R50 8x8 forward pass.
set -euo pipefail
SFNET=${1:-.build/release/sfnet}
PY=${PYTHON:-$(dirname "$0")/../.venv/bin/python}
[ -x "$PY" ] || PY=python3
if ! "$PY" -c "import torch" 2>/dev/null; then
  echo "SKIPPED: the benchmark needs torch (and onnx + onnxruntime for the third peer); set PYTHON=..."; exit 0
fi
mkdir -p bench-out
"$PY" Benchmarks/forward_bench.py "$SFNET" --threads "${THREADS:-2}" --rounds "${ROUNDS:-3}" --repeat "${REPEAT:-5}" --json bench-out/forward.json
