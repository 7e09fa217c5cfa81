// Attention's products for AVX-512, where one side is a head (dh = 16..256 columns, a multiple of 16)
// and the other a block of scores [rows, Lk]. OpenBLAS packs both operands of every call: the score
// block (the large one) again in each product that reads it, K and V once per block of query rows,
// and a beta = 0 call first clears C. These register tiles compute the scores (Q K^T, dO V^T) and the
// products along the scores' rows (P V, dS K) with the block read where it lies and K and V copied
// once per (sequence, head) (sfk_attention_pack_*). One thread, L = 1568, dh = 64, 256 query rows, on
// Sapphire Rapids against OpenBLAS's Cooperlake kernel: Benchmarks/attention_tiles_bench.c, numbers in
// BENCHMARKS.md. The products down the block's columns (P^T dO, dS^T Q) stay with OpenBLAS, whose
// packed product measured faster than tiles reading the block's rows a page apart.
// Every tile keeps 6 rows x up to 4 vectors of 16 columns in 24 registers and reduces with fused
// multiply-adds in the order of the reduction index, as a GEMM does.

#if defined(__x86_64__)

#include <immintrin.h>

#define T __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,fma")))
#define AI static inline __attribute__((always_inline)) T

/// Lanes 0..<k set (k clamped to 0...16).
static inline __mmask16 lanes(long k) { return k >= 16 ? (__mmask16)0xFFFF : k <= 0 ? (__mmask16)0 : (__mmask16)((1u << k) - 1); }

/// Columns a panel holds: 64, four vectors.
#define PANEL 64
/// Rows of the reduction one pass of `ab` keeps in the L1 cache (128 x 64 floats: 32 KB).
#define KBLOCK 128

// MARK: packing

/// dst[(p dh + d) 64 + j] = src[(64 p + j) ld + d] for the ceil(n / 64) panels p of 64 rows of a strided
/// [n, dh] operand (K or V), zero beyond row n: its transpose, one 64-column panel after another, as
/// `abt` reads it.
T void sfk_avx512_pack_panels(const float *src, long ld, long n, long dh, float *dst) {
    long panels = (n + PANEL - 1) / PANEL;
    __m512i down = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                      _mm512_set1_epi32((int)ld));
    for (long p = 0; p < panels; p++) {
        float *pd = dst + p * dh * PANEL;
        long j0 = p * PANEL, w = n - j0 < PANEL ? n - j0 : PANEL;
        // 16 rows x 16 columns at a time: gather a column of 16 rows with a strided load per lane. A last
        // panel gets the vectors `abt` reads of it only (those holding a row; lanes past row n are zero).
        for (long jb = 0; jb < w; jb += 16) {
            __mmask16 m = lanes(w - jb);
            const float *base = src + (j0 + jb) * ld;
            for (long d = 0; d < dh; d++) {
                _mm512_storeu_ps(pd + d * PANEL + jb, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, down, base + d, 4));
            }
        }
    }
}

/// dst[j dh + d] = src[j ld + d] for j < n: a strided [n, dh] operand made contiguous.
T void sfk_avx512_pack_rows(const float *src, long ld, long n, long dh, float *dst) {
    for (long j = 0; j < n; j++) {
        const float *s = src + j * ld;
        float *o = dst + j * dh;
        for (long d = 0; d < dh; d += 16) _mm512_storeu_ps(o + d, _mm512_loadu_ps(s + d));
    }
}

// MARK: C = alpha A B^T, the reduction over dh (scores, dP)

/// `rows` (<= 6) rows x `nv` (<= 4) vectors of C [.., the panel's first 16 nv columns]: sum over d < dh of
/// A[i, d] panel[d, :].
AI void abt_tile(const int rows, const int nv, long dh, const float *a, long lda, const float *panel, float alpha,
                 float *c, long ldc, long valid) {
    __m512 acc[6][4];
    for (int i = 0; i < 6; i++) for (int v = 0; v < 4; v++) acc[i][v] = _mm512_setzero_ps();
    for (long d = 0; d < dh; d++) {
        const float *b = panel + d * PANEL;
        __m512 bv[4];
        for (int v = 0; v < 4; v++) if (v < nv) bv[v] = _mm512_loadu_ps(b + 16 * v);
        for (int i = 0; i < 6; i++) {
            if (i >= rows) break;
            __m512 x = _mm512_set1_ps(a[i * lda + d]);
            for (int v = 0; v < 4; v++) if (v < nv) acc[i][v] = _mm512_fmadd_ps(x, bv[v], acc[i][v]);
        }
    }
    __m512 s = _mm512_set1_ps(alpha);
    for (int i = 0; i < 6; i++) {
        if (i >= rows) break;
        for (int v = 0; v < 4; v++) {
            if (v >= nv) break;
            _mm512_mask_storeu_ps(c + i * ldc + 16 * v, lanes(valid - 16 * v), _mm512_mul_ps(acc[i][v], s));
        }
    }
}

#define ABT_ROWS(NV) \
    switch (rows) { \
    case 6: abt_tile(6, NV, dh, ai, lda, panel, alpha, ci, ldc, valid); break; \
    case 5: abt_tile(5, NV, dh, ai, lda, panel, alpha, ci, ldc, valid); break; \
    case 4: abt_tile(4, NV, dh, ai, lda, panel, alpha, ci, ldc, valid); break; \
    case 3: abt_tile(3, NV, dh, ai, lda, panel, alpha, ci, ldc, valid); break; \
    case 2: abt_tile(2, NV, dh, ai, lda, panel, alpha, ci, ldc, valid); break; \
    default: abt_tile(1, NV, dh, ai, lda, panel, alpha, ci, ldc, valid); break; \
    }

/// C[m, n] = alpha A[m, dh] B[n, dh]^T, B packed by sfk_avx512_pack_panels (C's row stride ldc; C is
/// written, not read).
T void sfk_avx512_abt(long m, long n, long dh, float alpha, const float *a, long lda, const float *panels,
                      float *c, long ldc) {
    long count = (n + PANEL - 1) / PANEL;
    for (long p = 0; p < count; p++) {
        const float *panel = panels + p * dh * PANEL;
        long j0 = p * PANEL, valid = n - j0;
        // A last panel's columns in vectors: 197 keys cost 208 columns, not 256; 8 keys 16, not 64.
        long nv = valid >= PANEL ? 4 : (valid + 15) / 16;
        for (long i0 = 0; i0 < m; i0 += 6) {
            const float *ai = a + i0 * lda;
            float *ci = c + i0 * ldc + j0;
            long rows = m - i0 < 6 ? m - i0 : 6;
            switch (nv) {
            case 4: ABT_ROWS(4) break;
            case 3: ABT_ROWS(3) break;
            case 2: ABT_ROWS(2) break;
            default: ABT_ROWS(1) break;
            }
        }
    }
}

// MARK: C = alpha A B + beta C, the reduction over the scores' columns (P V, dS K)

/// `rows` (<= 6) rows x `nv` (<= 4) vectors of C: alpha sum over k < kn of A[i, k] B[k, :] + beta C.
AI void ab_tile(const int rows, const int nv, long kn, const float *a, long lda, const float *b, long ldb,
                float alpha, float beta, float *c, long ldc) {
    __m512 acc[6][4];
    for (int i = 0; i < 6; i++) for (int v = 0; v < 4; v++) acc[i][v] = _mm512_setzero_ps();
    for (long k = 0; k < kn; k++) {
        __m512 bv[4];
        for (int v = 0; v < 4; v++) if (v < nv) bv[v] = _mm512_loadu_ps(b + k * ldb + 16 * v);
        for (int i = 0; i < 6; i++) {
            if (i >= rows) break;
            __m512 x = _mm512_set1_ps(a[i * lda + k]);
            for (int v = 0; v < 4; v++) if (v < nv) acc[i][v] = _mm512_fmadd_ps(x, bv[v], acc[i][v]);
        }
    }
    __m512 s = _mm512_set1_ps(alpha), t = _mm512_set1_ps(beta);
    for (int i = 0; i < 6; i++) {
        if (i >= rows) break;
        for (int v = 0; v < 4; v++) {
            if (v >= nv) break;
            float *ci = c + i * ldc + 16 * v;
            __m512 r = _mm512_mul_ps(acc[i][v], s);
            if (beta != 0) r = _mm512_fmadd_ps(_mm512_loadu_ps(ci), t, r);
            _mm512_storeu_ps(ci, r);
        }
    }
}

#define AB_ROWS(NV) \
    switch (rows) { \
    case 6: ab_tile(6, NV, kn, ai, lda, bk, ldb, alpha, b0, ci, ldc); break; \
    case 5: ab_tile(5, NV, kn, ai, lda, bk, ldb, alpha, b0, ci, ldc); break; \
    case 4: ab_tile(4, NV, kn, ai, lda, bk, ldb, alpha, b0, ci, ldc); break; \
    case 3: ab_tile(3, NV, kn, ai, lda, bk, ldb, alpha, b0, ci, ldc); break; \
    case 2: ab_tile(2, NV, kn, ai, lda, bk, ldb, alpha, b0, ci, ldc); break; \
    default: ab_tile(1, NV, kn, ai, lda, bk, ldb, alpha, b0, ci, ldc); break; \
    }

/// C[m, dh] = alpha A[m, k] B[k, dh] + beta C (B's row stride ldb; C read only when beta != 0). The
/// reduction runs in blocks of KBLOCK rows of B, each kept in L1 while every row tile passes over it.
T void sfk_avx512_ab(long m, long k, long dh, float alpha, const float *a, long lda, const float *b, long ldb,
                     float beta, float *c, long ldc) {
    for (long k0 = 0; k0 < k; k0 += KBLOCK) {
        long kn = k - k0 < KBLOCK ? k - k0 : KBLOCK;
        float b0 = k0 == 0 ? beta : 1;
        for (long c0 = 0; c0 < dh; c0 += PANEL) {
            long nv = (dh - c0 < PANEL ? dh - c0 : PANEL) / 16;
            const float *bk = b + k0 * ldb + c0;
            for (long i0 = 0; i0 < m; i0 += 6) {
                long rows = m - i0 < 6 ? m - i0 : 6;
                const float *ai = a + i0 * lda + k0;
                float *ci = c + i0 * ldc + c0;
                switch (nv) {
                case 4: AB_ROWS(4) break;
                case 3: AB_ROWS(3) break;
                case 2: AB_ROWS(2) break;
                default: AB_ROWS(1) break;
                }
            }
        }
    }
}

#endif
