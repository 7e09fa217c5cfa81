#!/usr/bin/env bash
# The numerics-sensitive tests (op forward/backward, model and train-step references, verify; the
# transformer and X3D ops, which also run each element-wise kernel build)
# under each OpenBLAS kernel Debian's OpenBLAS can run on this CPU: OPENBLAS_CORETYPE unset, then
# Haswell, SkylakeX, Cooperlake and Zen, each a separate, labelled step. A kernel the CPU lacks the
# instructions for (AVX2/FMA, AVX-512, AVX-512 BF16) is skipped loudly. Needs `swift build --build-tests`.
# Exit status: non-zero when any kernel's run fails.
set -u
cd "$(dirname "$0")/.."
filter='OpBackwardTests|OpsReferenceTests|NormActivationTests|Conv3dTests|PoolLinearTests|ModelReferenceTests|ModelOracleTests|ModelForwardTests|TrainStepReferenceTests|TrainableModelTests|TrainStepsReferenceTests|VerifyTests|ReferenceFormsTests|InflationPropertyTests|VerifyCLITests|LossTests|SGDTests|TransformerOpsTests|X3DOpsTests|ElementwiseKernelsTests'
flags="$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || true)"
has() { for f in "$@"; do [[ " $flags " == *" $f "* ]] || return 1; done; }
failed=()
for kernel in unset Haswell SkylakeX Cooperlake Zen; do
  case "$kernel" in
    Haswell|Zen) need="avx2 fma" ;;
    SkylakeX) need="avx512f avx512bw avx512vl avx512dq" ;;
    Cooperlake) need="avx512f avx512bw avx512vl avx512dq avx512_bf16" ;;
    *) need="" ;;
  esac
  if [ -n "$need" ] && ! has $need; then
    echo "=== numerics tests, OpenBLAS kernel $kernel: SKIPPED (this CPU lacks: $need)"
    continue
  fi
  echo "=== numerics tests, OpenBLAS kernel $kernel (OPENBLAS_L2_SIZE=${OPENBLAS_L2_SIZE:-unset})"
  if [ "$kernel" = unset ]; then
    env -u OPENBLAS_CORETYPE swift test --skip-build --disable-swift-testing --filter "$filter" > .build/kernel-$kernel.log 2>&1
  else
    OPENBLAS_CORETYPE=$kernel swift test --skip-build --disable-swift-testing --filter "$filter" > .build/kernel-$kernel.log 2>&1
  fi
  rc=$?
  grep -E "gradients on BLAS kernel|error:|Executed [0-9]+ tests" .build/kernel-$kernel.log | sed 's|^.*/fixtures/|  fixtures/|' | tail -8
  if [ $rc -ne 0 ]; then failed+=("$kernel"); echo "=== kernel $kernel: FAILED (log: .build/kernel-$kernel.log)"; else echo "=== kernel $kernel: passed"; fi
done
if [ ${#failed[@]} -gt 0 ]; then echo "numerics tests failed under: ${failed[*]}"; exit 1; fi
echo "numerics tests passed under every kernel this CPU runs"
