/* The AVX-512 attention tiles (Sources/CKernels/attention_avx512.c) against OpenBLAS's cblas_sgemm on one
   attention block of VideoMAE-S: 256 query rows, 1568 keys, dh = 64, Q/K/V columns of a fused qkv row
   (stride 1152); one thread, 200 calls each. Prints GFLOP/s and the largest difference from sgemm. Build with
   clang, as SwiftPM builds the package: gcc -O2 does not keep a tile's 24 accumulators in registers
   (32-37 GFLOP/s here).
   mkdir -p bench-out && clang -O2 Benchmarks/attention_tiles_bench.c Sources/CKernels/attention_avx512.c \
       -ISources/CKernels -o bench-out/attention_tiles -lopenblas -lm
   OPENBLAS_NUM_THREADS=1 OPENBLAS_CORETYPE=Cooperlake bench-out/attention_tiles */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

void sfk_avx512_pack_panels(const float *src, long ld, long n, long dh, float *dst);
void sfk_avx512_pack_rows(const float *src, long ld, long n, long dh, float *dst);
void sfk_avx512_abt(long m, long n, long dh, float alpha, const float *a, long lda, const float *panels, float *c, long ldc);
void sfk_avx512_ab(long m, long k, long dh, float alpha, const float *a, long lda, const float *b, long ldb, float beta,
                   float *c, long ldc);

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static double max_diff(const float *x, const float *y, long n) {
    double worst = 0;
    for (long i = 0; i < n; i++) worst = fmax(worst, fabs((double)x[i] - y[i]));
    return worst;
}

int main(void) {
    const long rows = 256, keys = 1568, dh = 64, ld = 1152, calls = 200;
    const double flop = 2.0 * rows * keys * dh * calls;
    float *q = malloc(sizeof(float) * keys * ld), *k = malloc(sizeof(float) * keys * ld);
    float *p = malloc(sizeof(float) * rows * keys), *s1 = malloc(sizeof(float) * rows * keys), *s2 = malloc(sizeof(float) * rows * keys);
    float *panels = malloc(sizeof(float) * (keys + 63) / 64 * 64 * dh), *krows = malloc(sizeof(float) * keys * dh);
    float *o1 = malloc(sizeof(float) * rows * dh), *o2 = malloc(sizeof(float) * rows * dh);
    if (!q || !k || !p || !s1 || !s2 || !panels || !krows || !o1 || !o2) return 1;
    srand(1);
    for (long i = 0; i < keys * ld; i++) { q[i] = rand() / (float)RAND_MAX - 0.5f; k[i] = rand() / (float)RAND_MAX - 0.5f; }
    for (long i = 0; i < rows * keys; i++) p[i] = rand() / (float)RAND_MAX;

    /* scores: S = 0.125 Q K^T */
    sfk_avx512_pack_panels(k, ld, keys, dh, panels);
    double t = now();
    for (long r = 0; r < calls; r++) sfk_avx512_abt(rows, keys, dh, 0.125f, q, ld, panels, s1, keys);
    double tiles = now() - t;
    t = now();
    for (long r = 0; r < calls; r++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, keys, dh, 0.125f, q, ld, k, ld, 0, s2, keys);
    double blas = now() - t;
    printf("Q K^T  tiles %.1f GFLOP/s  sgemm %.1f GFLOP/s  max |diff| %.3g\n", flop / tiles / 1e9, flop / blas / 1e9,
           max_diff(s1, s2, rows * keys));

    /* products along the scores: O = P K (P V's shape) */
    sfk_avx512_pack_rows(k, ld, keys, dh, krows);
    t = now();
    for (long r = 0; r < calls; r++) sfk_avx512_ab(rows, keys, dh, 1, p, keys, krows, dh, 0, o1, dh);
    tiles = now() - t;
    t = now();
    for (long r = 0; r < calls; r++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, dh, keys, 1, p, keys, k, ld, 0, o2, dh);
    blas = now() - t;
    printf("P V    tiles %.1f GFLOP/s  sgemm %.1f GFLOP/s  max |diff| %.3g\n", flop / tiles / 1e9, flop / blas / 1e9,
           max_diff(o1, o2, rows * dh));
    t = now();
    for (long r = 0; r < calls; r++) sfk_avx512_pack_panels(k, ld, keys, dh, panels);
    printf("K's panels copied in %.1f us\n", (now() - t) / calls * 1e6);
    return 0;
}
