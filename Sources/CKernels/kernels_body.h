// The kernels' bodies, written once over a vector of SFK_LANES floats (clang's vector extensions) and
// compiled three times: kernels_generic.c (8 lanes, baseline target, multiply-adds rounded twice, as the
// Swift SIMD8 code they replace), kernels_avx2.c (8 lanes, fused multiply-adds, masked tails) and
// kernels_avx512.c (16 lanes, fused multiply-adds, masked tails). The includer defines:
//   SFK_LANES           8 or 16
//   SFK_TARGET          function attributes (the target, or nothing)
//   SFK_FUSED           1: MADD is one fused multiply-add
//   SFK_TABLE           the name of the table of entry points to define
//   ld_part / st_part   partial loads and stores (k < SFK_LANES lanes), defined before the include
// The algorithms and constants are those the Swift code had (exp: Cephes' expf; erfc: see the GELU part).

#include <stdint.h>
#include <string.h>

#include "kernels_table.h"

// Only the multiply-adds written as MADD fuse (and only in the fused build): the results do not depend
// on what the compiler would contract.
#pragma clang fp contract(off)

#define L SFK_LANES
#define F static inline __attribute__((always_inline)) SFK_TARGET
#define K(c) ((VF){} + (float)(c))

typedef float VF __attribute__((vector_size(SFK_LANES * 4)));
typedef float VFu __attribute__((vector_size(SFK_LANES * 4), aligned(4), may_alias));
typedef int32_t VI __attribute__((vector_size(SFK_LANES * 4)));
typedef uint32_t VU __attribute__((vector_size(SFK_LANES * 4)));
typedef float VF8u __attribute__((vector_size(32), aligned(4), may_alias));
typedef double VD8 __attribute__((vector_size(64)));

#if SFK_FUSED
#define MADD(a, b, c) __builtin_elementwise_fma((a), (b), (c))
#else
#define MADD(a, b, c) ((a) * (b) + (c))
#endif
/// c - a b.
#define NMADD(a, b, c) MADD(-(a), (b), (c))

F VF ld(const float *p) { return *(const VFu *)p; }
F void st(float *p, VF v) { *(VFu *)p = v; }
F VF splat(float x) {
    VF v;
    for (int i = 0; i < L; i++) v[i] = x;
    return v;
}
/// a where m, b elsewhere.
F VF sel(VI m, VF a, VF b) { return (VF)(((VI)a & m) | ((VI)b & ~m)); }

// MARK: exp

/// exp(x) for x already within [-87.3, 88.37] (2^n stays a normal float): n = round(x / ln 2) by the
/// 1.5 * 2^23 trick, Cody-Waite reduction by ln 2 in two parts, Cephes' degree-5 polynomial, 2^n through
/// the exponent bits; within about 1 ulp. The one core of Swish's exp and the attention softmax's.
F VF exp_core(VF x) {
    const VF magic = K(12582912.0f);
    VF t = MADD(x, K(1.44269504f), magic);
    VF n = t - magic;
    VF r = NMADD(n, K(-2.1219444e-4f), NMADD(n, K(0.693359375f), x));
    VF p = K(1.98756915e-4f);
    p = MADD(p, r, K(1.39819995e-3f));
    p = MADD(p, r, K(8.3334519e-3f));
    p = MADD(p, r, K(4.16657959e-2f));
    p = MADD(p, r, K(1.66666655e-1f));
    p = MADD(p, r, K(5.00000012e-1f));
    VF e = MADD(p, r * r, r) + K(1.0f);
    VU bits = (VU)t - 0x4B400000u;
    return e * (VF)((bits + 127u) << 23);
}

/// exp(x), x clamped to [-87.3, 88.37] (no inf, no denormals; NaN passes through).
F VF exp_clamped(VF v) {
    VF x = sel(v < K(-87.3f), K(-87.3f), v);
    return exp_core(sel(v > K(88.37f), K(88.37f), x));
}

/// exp(x) for x <= 0 (a score minus its row maximum): only the lower clamp.
F VF exp_non_positive(VF v) { return exp_core(sel(v < K(-87.3f), K(-87.3f), v)); }

/// exp(hi + lo) where hi carries the magnitude and lo a small correction that would round away in
/// hi + lo (Cody-Waite reduction of hi, lo added to the reduced argument); hi + lo within [-87.3, 88.37].
/// Cephes' polynomial by Estrin's scheme (shorter dependency chains: the lane math is latency-bound).
F VF exp_hi_lo(VF hi, VF lo) {
    const VF magic = K(12582912.0f);
    VF t = MADD(hi + lo, K(1.44269504f), magic);
    VF n = t - magic;
    VF r = NMADD(n, K(-2.1219444e-4f), NMADD(n, K(0.693359375f), hi)) + lo;
    VF r2 = r * r;
    VF p01 = MADD(K(1.66666655e-1f), r, K(5.00000012e-1f));
    VF p23 = MADD(K(8.3334519e-3f), r, K(4.16657959e-2f));
    VF p45 = MADD(K(1.98756915e-4f), r, K(1.39819995e-3f));
    VF p = MADD(p45, r2 * r2, MADD(p23, r2, p01));
    VF e = MADD(p, r2, r) + K(1.0f);
    VU bits = (VU)t - 0x4B400000u;
    return e * (VF)((bits + 127u) << 23);
}

// MARK: attention softmax rows

/// Four vectors of maxima (the compare-select chain's latency, not the loads, bounds one vector).
static SFK_TARGET float row_max(const float *p, long n) {
    long j = 0;
    float m = -__builtin_inff();
    if (n >= L) {
        VF v0 = ld(p), v1 = v0, v2 = v0, v3 = v0;
        for (j = L; j + 4 * L <= n; j += 4 * L) {
            VF w0 = ld(p + j), w1 = ld(p + j + L), w2 = ld(p + j + 2 * L), w3 = ld(p + j + 3 * L);
            v0 = sel(w0 > v0, w0, v0);
            v1 = sel(w1 > v1, w1, v1);
            v2 = sel(w2 > v2, w2, v2);
            v3 = sel(w3 > v3, w3, v3);
        }
        for (; j + L <= n; j += L) {
            VF w = ld(p + j);
            v0 = sel(w > v0, w, v0);
        }
        v0 = sel(v1 > v0, v1, v0);
        v2 = sel(v3 > v2, v3, v2);
        v0 = sel(v2 > v0, v2, v0);
        m = v0[0];
        for (int t = 1; t < L; t++) m = v0[t] >= m ? v0[t] : m;
    }
    for (; j < n; j++) m = p[j] >= m ? p[j] : m;
    return m;
}

/// The sum runs in two vectors of float lanes: at L = 1568 as accurate as double lanes measured against
/// float64 (relative L2 of the attention output 5.6e-7 both ways, PyTorch's flash kernel 5.4e-7).
static SFK_TARGET float exp_shifted(float *p, long n, float m) {
    VF mv = splat(m), a0 = K(0.0f), a1 = K(0.0f);
    long j = 0;
    for (; j + 2 * L <= n; j += 2 * L) {
        VF e0 = exp_non_positive(ld(p + j) - mv), e1 = exp_non_positive(ld(p + j + L) - mv);
        a0 += e0;
        a1 += e1;
        st(p + j, e0);
        st(p + j + L, e1);
    }
    for (; j + L <= n; j += L) {
        VF e = exp_non_positive(ld(p + j) - mv);
        a0 += e;
        st(p + j, e);
    }
    if (j < n) {
        // Lanes past the row read -inf; their exp (of the clamp) is zeroed before the sum.
        VF e = exp_non_positive(ld_part(p + j, n - j, -__builtin_inff()) - mv);
        for (long t = n - j; t < L; t++) e[t] = 0;
        a1 += e;
        st_part(p + j, e, n - j);
    }
    VF a = a0 + a1;
    float s = -0.0f;
    for (int t = 0; t < L; t++) s += a[t];
    return s;
}

static SFK_TARGET void probabilities_and_gradient(float *p, float *ds, long n, float m, float inv, float d) {
    VF mv = splat(m), iv = splat(inv), dv = splat(d);
    long j = 0;
    for (; j + L <= n; j += L) {
        VF e = exp_non_positive(ld(p + j) - mv) * iv;
        st(p + j, e);
        st(ds + j, e * (ld(ds + j) - dv));
    }
    if (j < n) {
        long k = n - j;
        VF e = exp_non_positive(ld_part(p + j, k, -__builtin_inff()) - mv) * iv;
        st_part(p + j, e, k);
        st_part(ds + j, e * (ld_part(ds + j, k, 0) - dv), k);
    }
}

static SFK_TARGET void recompute_probabilities(float *p, long n, float m, float inv) {
    VF mv = splat(m), iv = splat(inv);
    long j = 0;
    for (; j + L <= n; j += L) st(p + j, exp_non_positive(ld(p + j) - mv) * iv);
    if (j < n) st_part(p + j, exp_non_positive(ld_part(p + j, n - j, -__builtin_inff()) - mv) * iv, n - j);
}

static SFK_TARGET void scaled_softmax_gradient(const float *e, float *ds, long n, float inv, float d) {
    VF iv = splat(inv), dv = splat(d);
    long j = 0;
    for (; j + L <= n; j += L) st(ds + j, ld(e + j) * iv * (ld(ds + j) - dv));
    for (; j < n; j++) ds[j] = e[j] * inv * (ds[j] - d);
}

/// 8 double lanes (each float product exact in double: only the additions round), then the tail.
static SFK_TARGET double dot_double(const float *a, const float *b, long n) {
    VD8 acc = {0};
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        VD8 x = __builtin_convertvector(*(const VF8u *)(a + i), VD8), y = __builtin_convertvector(*(const VF8u *)(b + i), VD8);
        acc = MADD(x, y, acc);
    }
    double s = -0.0;
    for (int t = 0; t < 8; t++) s += acc[t];
    for (; i < n; i++) s += (double)a[i] * (double)b[i];
    return s;
}

static SFK_TARGET void softmax_row_backward(const float *p, float *ds, long n) {
    float d = (float)dot_double(p, ds, n);
    VF dv = splat(d);
    long j = 0;
    for (; j + L <= n; j += L) st(ds + j, ld(p + j) * (ld(ds + j) - dv));
    for (; j < n; j++) ds[j] = p[j] * (ds[j] - d);
}

// MARK: GELU
// erfc(a), a = |x| / sqrt 2, is t exp(-a^2 + f(t)) with t = 1 / (1 + a / 2) (Numerical Recipes' erfcc
// form) and f(t) = log(erfc(a) exp(a^2) / t) a degree-10 least-squares fit in u = (t - 0.58849555) 2.4301076,
// made against mpmath on 1500 Chebyshev nodes of a in [0, 9.3] (past 9.2 erfc is below float's smallest
// normal); float evaluation keeps f within 1.4e-7. exp(-x^2 / 2) is taken with x^2 split into an exact high
// part and a small low part, so erfc keeps its relative accuracy in the tail (x = -10: PyTorch's vectorised
// erf, Abramowitz and Stegun 7.1.26, is good to 1.5e-7 absolute only). One formula for both signs:
// Phi(x) = erfc / 2 for x < 0, 1 - erfc / 2 otherwise, so neither side cancels.

/// erfc(|x| / sqrt 2), and exp(-x^2 / 2) into *gauss when it is given. From |x| = 13 on (erfc(9.19) =
/// 1.2e-38, exp(-84.5) = 2e-37) both are 0.
F VF erfc_and_gauss(VF x, VF *gauss) {
    VF ax = (VF)((VU)x & 0x7FFFFFFFu);
    const VF cap = K(13.0f);
    ax = sel(ax > cap, cap, ax);
    VF t = K(1.0f) / MADD(ax, K(0.35355339f), K(1.0f));
    VF u = (t - K(0.58849555f)) * K(2.4301076f);
    // Degree 10 by Estrin's scheme.
    VF u2 = u * u, u4 = u2 * u2;
    VF c01 = MADD(K(5.636132360e-01f), u, K(-5.515272617e-01f));
    VF c23 = MADD(K(-2.843306027e-02f), u, K(1.428804174e-02f));
    VF c45 = MADD(K(3.463069908e-03f), u, K(-7.763330359e-04f));
    VF c67 = MADD(K(-4.783698241e-04f), u, K(-3.001161385e-04f));
    VF c89 = MADD(K(4.688202534e-05f), u, K(1.249048219e-04f));
    VF c810 = MADD(K(-2.103154111e-05f), u2, c89);
    VF f = MADD(c810, u4 * u4, MADD(MADD(c67, u2, c45), u4, MADD(c23, u2, c01)));
    // -x^2 / 2 = -xh^2 / 2 (exact: xh has 12 significant bits) - xl (x + xh) / 2.
    VF xh = (VF)((VU)ax & 0xFFFFF000u);
    VF hi = -(xh * xh) * K(0.5f);
    VF lo = -((ax - xh) * (ax + xh)) * K(0.5f);
    // From the clamp on both are below 1e-36: zero, so that x exp(-x^2 / 2) does not grow with x.
    VI beyond = ax >= cap;
    if (gauss) *gauss = sel(beyond, K(0.0f), exp_hi_lo(hi, lo));
    return sel(beyond, K(0.0f), t * exp_hi_lo(hi, lo + f));
}

/// x Phi(x) = x (erfc / 2, or 1 - erfc / 2 for x >= 0).
F VF gelu_erf(VF x) {
    VF half = K(0.5f) * erfc_and_gauss(x, 0);
    return x * sel(x >= K(0.0f), K(1.0f) - half, half);
}

/// dy (Phi(x) + x phi(x)), phi(x) = exp(-x^2 / 2) / sqrt(2 pi).
F VF gelu_erf_backward(VF x, VF g) {
    VF gauss;
    VF half = K(0.5f) * erfc_and_gauss(x, &gauss);
    VF phi = sel(x >= K(0.0f), K(1.0f) - half, half);
    return g * MADD(x * gauss, K(0.39894228f), phi);
}

/// s = sigmoid(2u), u = c (x + 0.044715 x^3), and e s = 1 - s into *complement (e = exp(-2u): without
/// the subtraction, which leaves nothing once s rounds to 1); s is zero where exp(-2u) is clamped
/// (2u < -88: s below 1e-38, as in double).
F VF tanh_form_sigmoid(VF x, VF x2, VF *complement) {
    VF u = K(0.79788456f) * MADD(K(0.044715f) * x2, x, x);
    VF e = exp_clamped(-(u + u));
    VF s = sel(u < K(-44.0f), K(0.0f), K(1.0f) / (K(1.0f) + e));
    *complement = e * s;
    return s;
}

/// x sigmoid(2u).
F VF gelu_tanh(VF x) {
    VF sm;
    return x * tanh_form_sigmoid(x, x * x, &sm);
}

/// dy (s + 2 x s (1 - s) u'), u' = c (1 + 3 0.044715 x^2).
F VF gelu_tanh_backward(VF x, VF g) {
    VF x2 = x * x, sm;
    VF s = tanh_form_sigmoid(x, x2, &sm);
    VF du = K(0.79788456f) * MADD(K(3 * 0.044715f), x2, K(1.0f));
    return g * MADD((x + x) * s * sm, du, s);
}

static SFK_TARGET void gelu_forward(const float *x, float *dst, long n, int tanh_form) {
    long i = 0;
    if (tanh_form) {
        for (; i + L <= n; i += L) st(dst + i, gelu_tanh(ld(x + i)));
        if (i < n) st_part(dst + i, gelu_tanh(ld_part(x + i, n - i, 0)), n - i);
    } else {
        for (; i + L <= n; i += L) st(dst + i, gelu_erf(ld(x + i)));
        if (i < n) st_part(dst + i, gelu_erf(ld_part(x + i, n - i, 0)), n - i);
    }
}

static SFK_TARGET void gelu_backward(const float *x, const float *dy, float *dx, long n, int tanh_form) {
    long i = 0;
    if (tanh_form) {
        for (; i + L <= n; i += L) st(dx + i, gelu_tanh_backward(ld(x + i), ld(dy + i)));
        if (i < n) st_part(dx + i, gelu_tanh_backward(ld_part(x + i, n - i, 0), ld_part(dy + i, n - i, 0)), n - i);
    } else {
        for (; i + L <= n; i += L) st(dx + i, gelu_erf_backward(ld(x + i), ld(dy + i)));
        if (i < n) st_part(dx + i, gelu_erf_backward(ld_part(x + i, n - i, 0), ld_part(dy + i, n - i, 0)), n - i);
    }
}

// MARK: Swish

/// 1 / (1 + exp(-x)).
F VF sigmoid(VF x) { return K(1.0f) / (K(1.0f) + exp_clamped(-x)); }

F VF swish(VF v) { return v * sigmoid(v); }

/// dy s (1 + x (1 - s)).
F VF swish_backward_lanes(VF v, VF g) {
    VF s = sigmoid(v);
    return g * s * MADD(v, K(1.0f) - s, K(1.0f));
}

static SFK_TARGET void swish_forward(const float *x, float *dst, long n, float scale) {
    long i = 0;
    if (scale == 1.0f) {
        for (; i + L <= n; i += L) st(dst + i, swish(ld(x + i)));
        if (i < n) st_part(dst + i, swish(ld_part(x + i, n - i, 0)), n - i);
        return;
    }
    VF g = splat(scale);
    for (; i + L <= n; i += L) st(dst + i, swish(ld(x + i) * g));
    if (i < n) st_part(dst + i, swish(ld_part(x + i, n - i, 0) * g), n - i);
}

static SFK_TARGET void swish_backward(const float *x, const float *dy, float *dx, long n) {
    long i = 0;
    for (; i + L <= n; i += L) st(dx + i, swish_backward_lanes(ld(x + i), ld(dy + i)));
    if (i < n) st_part(dx + i, swish_backward_lanes(ld_part(x + i, n - i, 0), ld_part(dy + i, n - i, 0)), n - i);
}

static SFK_TARGET void exp_map(const float *x, float *dst, long n) {
    long i = 0;
    for (; i + L <= n; i += L) st(dst + i, exp_clamped(ld(x + i)));
    if (i < n) st_part(dst + i, exp_clamped(ld_part(x + i, n - i, 0)), n - i);
}

const struct sfk_table SFK_TABLE = {
    .row_max = row_max,
    .exp_shifted = exp_shifted,
    .probabilities_and_gradient = probabilities_and_gradient,
    .recompute_probabilities = recompute_probabilities,
    .scaled_softmax_gradient = scaled_softmax_gradient,
    .softmax_row_backward = softmax_row_backward,
    .dot_double = dot_double,
    .gelu_forward = gelu_forward,
    .gelu_backward = gelu_backward,
    .swish_forward = swish_forward,
    .swish_backward = swish_backward,
    .exp = exp_map,
};
