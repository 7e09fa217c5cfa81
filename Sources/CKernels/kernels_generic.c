// The kernels at the baseline target: 8 float lanes, multiply-adds rounded twice (kernels_body.h).

#define SFK_LANES 8
#define SFK_TARGET
#define SFK_FUSED 0
#define SFK_TABLE sfk_generic_table

// 32-byte vectors pass in memory without AVX; every helper here is always inlined, so none crosses a call.
#pragma clang diagnostic ignored "-Wpsabi"

typedef float sfk_vf8 __attribute__((vector_size(32)));

/// The first k lanes from p, `fill` beyond.
static inline __attribute__((always_inline)) sfk_vf8 ld_part(const float *p, long k, float fill) {
    sfk_vf8 v;
    for (int t = 0; t < 8; t++) v[t] = t < k ? p[t] : fill;
    return v;
}

/// The first k lanes of v to p.
static inline __attribute__((always_inline)) void st_part(float *p, sfk_vf8 v, long k) {
    for (long t = 0; t < k; t++) p[t] = v[t];
}

#include "kernels_body.h"
