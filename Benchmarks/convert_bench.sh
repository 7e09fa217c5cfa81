#!/usr/bin/env bash
# make bench-convert: builds the full-size checkpoint if needed (needs torch) and runs the benchmark.
set -euo pipefail
SFNET=${1:-.build/release/sfnet}
PY=${PYTHON:-$(dirname "$0")/../.venv/bin/python}
[ -x "$PY" ] || PY=python3
if ! "$PY" -c "import torch, safetensors" 2>/dev/null; then
  echo "SKIPPED: the benchmark needs torch and safetensors (make venv, or set PYTHON=...)"; exit 0
fi
IN=fixtures/full/slowfast_r50_8x8.pyth
[ -f "$IN" ] || "$PY" fixtures/generate.py --full
mkdir -p bench-out
"$PY" Benchmarks/convert_bench.py "$SFNET" "$IN" --python "$PY" --runs "${RUNS:-7}" --json bench-out/convert.json
