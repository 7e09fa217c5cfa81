// The kernels for AVX-512 (F, DQ, BW, VL) with FMA: 16 float lanes, fused multiply-adds, masked tails
// (kernels_body.h). Per-function target attributes: the file needs no compiler flags, and dispatch.c
// calls it only where the CPU has the features.

#if defined(__x86_64__)

#include <immintrin.h>

#define SFK_LANES 16
#define SFK_TARGET __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,fma")))
#define SFK_FUSED 1
#define SFK_TABLE sfk_avx512_table

typedef float sfk_vf16 __attribute__((vector_size(64)));

/// The first k < 16 lanes from p (nothing read beyond), `fill` beyond.
static inline __attribute__((always_inline)) SFK_TARGET sfk_vf16 ld_part(const float *p, long k, float fill) {
    return (sfk_vf16)_mm512_mask_loadu_ps(_mm512_set1_ps(fill), (__mmask16)((1u << k) - 1), p);
}

/// The first k < 16 lanes of v to p (nothing written beyond).
static inline __attribute__((always_inline)) SFK_TARGET void st_part(float *p, sfk_vf16 v, long k) {
    _mm512_mask_storeu_ps(p, (__mmask16)((1u << k) - 1), (__m512)v);
}

#include "kernels_body.h"

#endif
