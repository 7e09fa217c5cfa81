#!/usr/bin/env bash
# sfnet -> PyTorch DDP hand-off, end to end at tiny size (issue 5, part 5):
#   1. convert fixtures/torch/tiny_pyslowfast.pyth to native weights with the tiny arch
#      (sfnet.arch of fixtures/reference/tiny_slowfast_8x8_ref.safetensors: 8 frames, crop 32),
#   2. export them for PySlowFast (model.pyth + model.yaml),
#   3. fine-tune 3 steps with DistributedDataParallel, 2 processes, gloo, CPU
#      (asserting the export is bit-exact with the source and both ranks end identical),
#   4. convert the fine-tuned checkpoint back to native and check it bit for bit.
# Usage: bash examples/ddp/run_example.sh [SFNET_BINARY]   (PYTHON=... picks the interpreter)
# Prints SKIPPED loudly and exits 0 when torch is missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
SFNET=${1:-.build/release/sfnet}
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3

banner() { printf '%s\n  %s\n%s\n' "============================================================" "$1" "============================================================"; }

if ! "$PY" -c 'import torch, safetensors' >/dev/null 2>&1; then
  banner "SKIPPED: torch (or safetensors) is not installed for $PY; the DDP example did NOT run"
  exit 0
fi
[ -x "$SFNET" ] || { echo "FAILED: $SFNET not found (make build)"; exit 1; }

# Outputs go to DDP_OUT (default: a fresh temporary directory, so the checkout stays clean).
OUT=${DDP_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/sfnet-ddp.XXXXXX")}
mkdir -p "$OUT"
echo "== outputs in $OUT"

"$PY" - "$OUT/arch.json" <<'PYEOF'
import sys
from safetensors import safe_open
with safe_open("fixtures/reference/tiny_slowfast_8x8_ref.safetensors", "pt") as f:
    open(sys.argv[1], "w").write(f.metadata()["sfnet.arch"])
PYEOF
echo "== arch: $(cat "$OUT/arch.json")"

echo "== sfnet convert"
"$SFNET" convert fixtures/torch/tiny_pyslowfast.pyth --arch-json "$OUT/arch.json" -o "$OUT/tiny.safetensors" --force
echo "== sfnet export --to pyslowfast"
"$SFNET" export "$OUT/tiny.safetensors" --to pyslowfast -o "$OUT/model.pyth" --force

echo "== DDP: 2 processes, gloo, CPU, 3 steps"
"$PY" examples/ddp/train_ddp.py "$OUT/model.pyth" --nproc 2 --backend gloo --steps 3 \
  --reference fixtures/torch/tiny_pyslowfast.pyth -o "$OUT/finetuned.pyth"

echo "== sfnet convert (fine-tuned checkpoint back to native)"
"$SFNET" convert "$OUT/finetuned.pyth" --arch-json "$OUT/arch.json" -o "$OUT/finetuned.safetensors" --force
"$PY" - "$OUT/finetuned.pyth" "$OUT/finetuned.safetensors" <<'PYEOF'
import sys, torch
from safetensors.torch import load_file
sd = torch.load(sys.argv[1], weights_only=True)["model_state"]
nat = load_file(sys.argv[2])
assert sorted(nat) == sorted(sd), "names differ"  # (safetensors readers do not keep header order)
assert all(nat[k].dtype == v.dtype and torch.equal(nat[k], v) for k, v in sd.items()), "values differ"
print(f"fine-tuned checkpoint -> native: {len(sd)} tensors bit-exact")
PYEOF

banner "PASS: sfnet export -> torch.load(weights_only=True) -> DDP (2 x gloo, 3 steps) -> sfnet convert, bit-exact at both hand-offs"
