// The kernels for AVX2 with FMA (Zen 1-3, Intel Haswell to the laptop chips without AVX-512): 8 float
// lanes, fused multiply-adds, masked tails (kernels_body.h). Per-function target attributes: the file
// needs no compiler flags, and dispatch.c calls it only where the CPU has the features.

#if defined(__x86_64__)

#include <immintrin.h>
#include <stdint.h>

#define SFK_LANES 8
#define SFK_TARGET __attribute__((target("avx2,fma")))
#define SFK_FUSED 1
#define SFK_TABLE sfk_avx2_table

typedef float sfk_vf8 __attribute__((vector_size(32)));

/// The lane mask of the first k < 8 lanes: 8 - k zeros after k all-ones words, read from one table.
static inline __attribute__((always_inline)) SFK_TARGET __m256i first_lanes(long k) {
    static const int32_t words[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    return _mm256_loadu_si256((const __m256i *)(words + 8 - k));
}

/// The first k < 8 lanes from p (nothing read beyond), `fill` beyond.
static inline __attribute__((always_inline)) SFK_TARGET sfk_vf8 ld_part(const float *p, long k, float fill) {
    __m256i mask = first_lanes(k);
    return (sfk_vf8)_mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, mask), _mm256_castsi256_ps(mask));
}

/// The first k < 8 lanes of v to p (nothing written beyond).
static inline __attribute__((always_inline)) SFK_TARGET void st_part(float *p, sfk_vf8 v, long k) {
    _mm256_maskstore_ps(p, first_lanes(k), (__m256)v);
}

#include "kernels_body.h"

#endif
