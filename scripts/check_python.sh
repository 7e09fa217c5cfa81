#!/usr/bin/env bash
# Converts every model fixture and opens each native file with Python's
# safetensors package (fixtures/check_native.py), comparing it byte for byte
# with the file the generator wrote. Skips loudly when safetensors is absent.
set -uo pipefail
SFNET=${1:-.build/release/sfnet}
PY=${PYTHON:-python3}
if ! "$PY" -c "import safetensors, numpy" 2>/dev/null; then
  VENV=.build/py-check
  if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV" >/dev/null 2>&1 && "$VENV/bin/pip" install -q safetensors numpy >/dev/null 2>&1 || true
  fi
  if "$VENV/bin/python" -c "import safetensors, numpy" 2>/dev/null; then PY="$VENV/bin/python"; else
    echo "SKIPPED: Python safetensors/numpy not available; native files were NOT checked with Python"; exit 0
  fi
fi
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
passed=0; failed=0; i=0
while IFS=$'\t' read -r input expected args; do
  i=$((i+1))
  # shellcheck disable=SC2086
  if "$SFNET" convert "fixtures/$input" -o "$OUT/$i.safetensors" $args >/dev/null \
     && "$PY" fixtures/check_native.py "$OUT/$i.safetensors" "fixtures/$expected"; then
    passed=$((passed+1))
  else
    echo "FAILED: $input $args"; failed=$((failed+1))
  fi
done < <("$PY" -c '
import json
for c in json.load(open("fixtures/manifest.json")):
    if c.get("kind") == "model":
        print(c["input"], c["expected"], " ".join(c.get("convert_args", [])), sep="\t")
')
echo "python safetensors check: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
