#!/usr/bin/env bash
# Builds sfnet's libFuzzer targets (Sources/Fuzz*, present with SFNET_FUZZ=1; ASan + libFuzzer) and runs each for a given
# time, seeded from the fixtures, with the dictionaries in Fuzz/dict. Prints per target
# the executions, CPU seconds, corpus size and findings; every crash / timeout / OOM
# input is copied to Fuzz/regressions/<target>/ (replayed by `make test`).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET (default 600)] [TARGET ...]
#   JOBS=2 scripts/fuzz.sh 600          # two targets at a time (one per core)
# Targets: pickle zip torch safetensors npy onnx onnx-external caffe2
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-600}; shift || true
ALL=(pickle zip torch safetensors npy onnx onnx-external caffe2)
TARGETS=("${@:-${ALL[@]}}")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=("${ALL[@]}")
JOBS=${JOBS:-1}
WORK=.fuzz-work
mkdir -p "$WORK"

product() { case "$1" in pickle) echo FuzzPickle;; zip) echo FuzzZip;; torch) echo FuzzTorch;; safetensors) echo FuzzSafetensors;;
  npy) echo FuzzNpy;; onnx) echo FuzzOnnx;; onnx-external) echo FuzzOnnxExternal;; caffe2) echo FuzzCaffe2;; *) echo "unknown target $1" >&2; exit 2;; esac; }
dict() { case "$1" in pickle|caffe2) echo Fuzz/dict/pickle.dict;; zip|torch) echo Fuzz/dict/zip.dict;; onnx|onnx-external) echo Fuzz/dict/protobuf.dict;;
  *) echo Fuzz/dict/safetensors.dict;; esac; }
seeds() { # files under 1 MiB that exercise the target
  case "$1" in
    pickle) ls fixtures/caffe2/*.pkl fixtures/imagenet/*.pkl fixtures/hostile/files/*.pkl 2>/dev/null;;
    caffe2) ls fixtures/caffe2/*.pkl fixtures/imagenet/*.pkl fixtures/hostile/files/*caffe2* 2>/dev/null;;
    zip|torch) ls fixtures/torch/*.pt fixtures/torch/*.pth fixtures/torch/*.pyth fixtures/numpy/*.npz fixtures/hostile/files/*.pt* 2>/dev/null;;
    safetensors) ls fixtures/torch/views_expected.safetensors fixtures/reference/ops_ref.safetensors fixtures/boring/*.safetensors fixtures/hostile/files/*.safetensors 2>/dev/null;;
    npy) ls fixtures/numpy/* fixtures/hostile/files/*.np* 2>/dev/null;;
    onnx|onnx-external) ls fixtures/onnx/*.onnx fixtures/onnx/hostile/*.onnx 2>/dev/null;;
  esac | while read -r f; do [ "$(stat -c %s "$f")" -lt 1048576 ] && echo "$f"; done
}

echo "building the fuzz targets (libFuzzer + AddressSanitizer) ..."
# SwiftPM's --sanitize fuzzer did not instrument the parsers' modules for coverage here (libFuzzer then
# ran blind: no "cov:" in its log); the explicit inline-8bit-counters coverage is what libFuzzer reads.
for t in "${TARGETS[@]}"; do
  SFNET_FUZZ=1 swift build --scratch-path .build-fuzz -c debug --product "$(product "$t")" --sanitize fuzzer --sanitize address \
    -Xswiftc -sanitize-coverage=edge,inline-8bit-counters,pc-table,trace-cmp 2>&1 | tail -1
done

run_one() {
  local t=$1 p; p=$(product "$t")
  local dir="$WORK/$t"; mkdir -p "$dir/corpus" "$dir/artifacts"
  seeds "$t" | while read -r f; do cp -n "$f" "$dir/corpus/" 2>/dev/null || true; done
  local start end
  start=$(date +%s)
  SWIFT_BACKTRACE=enable=no ASAN_OPTIONS=detect_leaks=0 .build-fuzz/debug/"$p" "$dir/corpus" -dict="$(dict "$t")" \
    -max_total_time="$SECS" -max_len=262144 -rss_limit_mb=3072 -timeout=20 -print_final_stats=1 \
    -artifact_prefix="$dir/artifacts/" > "$dir/log.txt" 2>&1 || true
  end=$(date +%s)
  local execs cpu findings corpus
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$dir/log.txt" | tail -1 | grep -o '[0-9]*$' || echo 0)
  corpus=$(ls "$dir/corpus" | wc -l)
  findings=$(ls "$dir/artifacts" 2>/dev/null | wc -l)
  mkdir -p "Fuzz/regressions/$t"
  for a in "$dir"/artifacts/*; do [ -e "$a" ] && cp "$a" "Fuzz/regressions/$t/"; done
  printf "%-14s %10s executions  %5s s wall  corpus %5s  findings %s\n" "$t" "${execs:-0}" "$((end - start))" "$corpus" "$findings" | tee -a "$WORK/results.txt"
}

echo "fuzzing ${#TARGETS[@]} target(s) for ${SECS} s each, ${JOBS} at a time ($(date -u +%FT%TZ), $(nproc) cores)" | tee -a "$WORK/results.txt"
running=0
for t in "${TARGETS[@]}"; do
  run_one "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$JOBS" ]; then wait -n; running=$((running - 1)); fi
done
wait
echo "logs: $WORK/<target>/log.txt; findings (if any) copied to Fuzz/regressions/<target>/"
