#!/usr/bin/env bash
# Builds sfnet's libFuzzer targets (Sources/Fuzz*, present with SFNET_FUZZ=1) optimised (-O) with
# AddressSanitizer and libFuzzer's coverage, and runs each for a given time, seeded with the small
# fixtures of its format, with its dictionary from Fuzz/dict and its own input-size cap. Prints per
# target the executions, executions per second, coverage (cov: edges, ft: features), corpus size and
# findings; every crash / timeout / OOM / slow input is copied to Fuzz/regressions/<target>/ (replayed
# by `make test`).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET (default 600)] [TARGET ...]
#   JOBS=2 scripts/fuzz.sh 600          # two targets at a time (one per core)
#   make fuzz-deep SECS=3600            # every target, JOBS=nproc at a time
#   make fuzz-deep SECS=10800 RUNS=10000000:1000000   # stop each target at its depth budget: 10M
#                                       # executions for a byte format, 1M for a text format (or at SECS)
# Targets: pickle zip torch safetensors npy onnx onnx-external caffe2 json hf-config yaml pyslowfast-config xlsx csv frame-list
# Environment: JOBS (parallel targets, default 1), WORK (default .fuzz-work), BUILD=debug (the -Onone
# build the first runs used; slower by 10-100x, kept for comparison), NOBUILD=1 (use what is built),
# BIN=DIR (run the executables in DIR instead of .build-fuzz/$BUILD, e.g. a saved build to compare with),
# FORK=N (libFuzzer's fork mode: N worker processes on one target, sharing its corpus; the executions,
# the budget in RUNS and the rate are the workers' total: how one slow target gets every core).
# pickle, zip, torch and onnx mutate structurally (CFuzzMutators: opcodes, entries, protobuf fields) mixed
# with libFuzzer's byte mutation; SFNET_FUZZ_MUTATOR=bytes makes them use libFuzzer's byte mutation alone.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-600}; shift || true
ALL=(onnx torch pickle caffe2 zip safetensors npy onnx-external json hf-config yaml pyslowfast-config xlsx csv frame-list)
TARGETS=("${@:-${ALL[@]}}")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=("${ALL[@]}")
JOBS=${JOBS:-1}
# RUNS=BYTE:TEXT: each target stops after that many executions (byte formats: pickle zip torch safetensors
# npy onnx onnx-external caffe2; text formats: the rest) or after SECS, whichever comes first.
RUNS=${RUNS:-}
runs_for() { [ -z "$RUNS" ] && return 0
  case "$1" in pickle|zip|torch|safetensors|npy|onnx|onnx-external|caffe2) echo "-runs=${RUNS%%:*}";;
    *) echo "-runs=${RUNS##*:}";; esac; }
WORK=${WORK:-.fuzz-work}
BUILD=${BUILD:-release}
mkdir -p "$WORK"

# target -> product, dictionary, -max_len. The caps are what exercises each grammar: a pickle opcode
# stream, a zip directory or an ONNX graph needs a few KiB to 64 KiB; larger inputs (the deep nests,
# the bombs) are limit tests in the hostile corpus, where one input costs seconds, not fuzz seeds.
product() { case "$1" in pickle) echo FuzzPickle;; zip) echo FuzzZip;; torch) echo FuzzTorch;; safetensors) echo FuzzSafetensors;;
  npy) echo FuzzNpy;; onnx) echo FuzzOnnx;; onnx-external) echo FuzzOnnxExternal;; caffe2) echo FuzzCaffe2;;
  json) echo FuzzJson;; hf-config) echo FuzzHfConfig;; yaml) echo FuzzYaml;; pyslowfast-config) echo FuzzPySlowFastConfig;; xlsx) echo FuzzXlsx;; csv) echo FuzzCsv;; frame-list) echo FuzzFrameList;;
  *) echo "unknown target $1" >&2; exit 2;; esac; }
dict() { case "$1" in pickle|caffe2) echo Fuzz/dict/pickle.dict;; zip|torch) echo Fuzz/dict/zip.dict;; onnx|onnx-external) echo Fuzz/dict/protobuf.dict;;
  json|hf-config) echo Fuzz/dict/json.dict;; yaml|pyslowfast-config) echo Fuzz/dict/yaml.dict;; xlsx) echo Fuzz/dict/xlsx.dict;; csv|frame-list) echo Fuzz/dict/csv.dict;;
  *) echo Fuzz/dict/safetensors.dict;; esac; }
maxlen() { case "$1" in pickle|caffe2|zip|torch|onnx|onnx-external|xlsx) echo 65536;; safetensors|npy) echo 16384;;
  json|hf-config|yaml|pyslowfast-config|csv|frame-list) echo 8192;; esac; }
# Seeds: the format's fixtures up to the target's cap, minus the limit tests (deep nests, bombs, laughs).
seeds() {
  { case "$1" in
    pickle) ls fixtures/caffe2/*.pkl fixtures/imagenet/*.pkl fixtures/hostile/files/*.pkl Fuzz/seeds/caffe2/*;;
    caffe2) ls fixtures/caffe2/*.pkl fixtures/imagenet/*.pkl fixtures/hostile/files/*caffe2* fixtures/hostile/files/c13_np*.pkl;;
    zip|torch) ls fixtures/torch/*.pt fixtures/torch/*.pth fixtures/torch/*.pyth fixtures/numpy/*.npz fixtures/hostile/files/*.pt*;;
    safetensors) ls fixtures/torch/*.safetensors fixtures/numpy/*.safetensors fixtures/hostile/files/*.safetensors;;
    npy) ls fixtures/numpy/*.np* fixtures/hostile/files/*.np*;;
    onnx|onnx-external) ls fixtures/onnx/*.onnx fixtures/onnx/hostile/*.onnx fixtures/hostile/files/*.onnx;;
    json) ls fixtures/hostile/files/*.json fixtures/hostile/cases*.json fixtures/text/*.json fixtures/*/*config*.json;;
    hf-config) ls fixtures/transformers/*/config.json fixtures/transformers/*/*.index.json fixtures/hostile/files/*hf*/*.json;;
    yaml|pyslowfast-config) ls fixtures/yaml/*.yaml fixtures/ak/configs/*.yaml fixtures/hostile/files/*.yaml;;
    xlsx) ls fixtures/ak/annotation/*.xlsx fixtures/ak/hostile/*.xlsx fixtures/hostile/files/*.xlsx;;
    csv) ls fixtures/text/*.csv fixtures/hostile/files/c36_csv_*.csv fixtures/hostile/files/valid_manifest.csv;;
    frame-list) ls fixtures/text/ak_frames.csv fixtures/ak/annotation/*.csv fixtures/hostile/files/c36_frame_list_*;;
  esac 2>/dev/null | grep -Ev 'nest_|laughs|bomb|_huge|overlong|deep|memo' || true
  ls Fuzz/seeds/"$1"/* 2>/dev/null   # small hand-made seeds where the fixtures have none
  } | while read -r f; do if [ "$(stat -c %s "$f")" -le "$(maxlen "$1")" ]; then echo "$f"; fi; done || true
}

# A seed's name in the corpus: its file name, or for hf-config (whose seeds are all config.json or an index
# file) its path with '/' as '_', so that one folder's config.json does not hide the next one's.
seedname() { case "$1" in hf-config) echo "$2" | tr / _;; *) basename "$2";; esac; }

if [ -z "${NOBUILD:-}" ]; then
  echo "building the fuzz targets ($BUILD, libFuzzer + AddressSanitizer) ..."
  # SwiftPM's --sanitize fuzzer did not instrument the parsers' modules for coverage here (libFuzzer then
  # ran blind: no "cov:" in its log); the explicit inline-8bit-counters coverage is what libFuzzer reads.
  for t in "${TARGETS[@]}"; do
    SFNET_FUZZ=1 swift build --scratch-path .build-fuzz -c "$BUILD" --product "$(product "$t")" --sanitize fuzzer --sanitize address \
      -Xswiftc -sanitize-coverage=edge,inline-8bit-counters,pc-table,trace-cmp 2>&1 | tail -1
  done
fi

run_one() {
  local t=$1 p; p=$(product "$t")
  local dir="$WORK/$t"; mkdir -p "$dir/corpus" "$dir/artifacts"
  seeds "$t" | while read -r f; do cp -n "$f" "$dir/corpus/$(seedname "$t" "$f")" 2>/dev/null || true; done || true
  local nseeds; nseeds=$(ls "$dir/corpus" | wc -l)
  local start end
  start=$(date +%s)
  # fork mode: the parent logs a summary line per finished job; a crash, timeout or OOM stops the run
  local fork=(); [ -n "${FORK:-}" ] && fork=(-fork="$FORK")
  SWIFT_BACKTRACE=enable=no ASAN_OPTIONS=detect_leaks=0 "${BIN:-.build-fuzz/$BUILD}/$p" "$dir/corpus" -dict="$(dict "$t")" \
    -max_total_time="$SECS" $(runs_for "$t") -max_len="$(maxlen "$t")" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
    "${fork[@]}" -artifact_prefix="$dir/artifacts/" > "$dir/log.txt" 2>&1 || true
  end=$(date +%s)
  local execs rate cov ft findings corpus
  if [ -n "${FORK:-}" ]; then
    # the parent prints "#EXECS: cov: C ft: F corp: N exec/s: R oom/timeout/crash: ..." after each job
    execs=$(grep -o '^#[0-9]*: cov' "$dir/log.txt" | tail -1 | grep -o '[0-9]*' || true)
    rate=$(( ${execs:-0} / ( end - start > 0 ? end - start : 1 ) ))
  else
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$dir/log.txt" | tail -1 | grep -o '[0-9]*$' || true)
    rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$dir/log.txt" | tail -1 | grep -o '[0-9]*$' || true)
  fi
  cov=$(grep -o 'cov: [0-9]*' "$dir/log.txt" | tail -1 | grep -o '[0-9]*$' || true)
  ft=$(grep -o 'ft: [0-9]*' "$dir/log.txt" | tail -1 | grep -o '[0-9]*$' || true)
  corpus=$(ls "$dir/corpus" | wc -l)
  findings=$(ls "$dir/artifacts" 2>/dev/null | wc -l)
  mkdir -p "Fuzz/regressions/$t"
  for a in "$dir"/artifacts/*; do [ -e "$a" ] && cp "$a" "Fuzz/regressions/$t/"; done
  printf "%-14s %11s execs %8s exec/s %5s s  cov %5s ft %6s  corpus %4s -> %4s  findings %s\n" "$t" "${execs:-0}" "${rate:-0}" \
    "$((end - start))" "${cov:--}" "${ft:--}" "$nseeds" "$corpus" "$findings" | tee -a "$WORK/results.txt"
}

echo "fuzzing ${#TARGETS[@]} target(s) for ${SECS} s each${RUNS:+ or until ${RUNS%%:*} (byte) / ${RUNS##*:} (text) executions}, ${JOBS} at a time ($BUILD build, $(date -u +%FT%TZ), $(nproc) cores)" | tee -a "$WORK/results.txt"
running=0
for t in "${TARGETS[@]}"; do
  run_one "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$JOBS" ]; then wait -n; running=$((running - 1)); fi
done
wait
echo "logs: $WORK/<target>/log.txt; findings (if any) copied to Fuzz/regressions/<target>/"
