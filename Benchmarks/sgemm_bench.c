/* sgemm throughput on the linear-layer shapes of VideoMAE-S/B (issue 16): row-major cblas_sgemm, best of 6
   timed runs after one warm-up. The peer is Benchmarks/sgemm_peer.py (torch.mm on the same shapes).
   mkdir -p bench-out && gcc -O2 Benchmarks/sgemm_bench.c -o bench-out/sgemm -lopenblas
   OPENBLAS_NUM_THREADS=2 OPENBLAS_CORETYPE=Cooperlake bench-out/sgemm      (or OPENBLAS_CORETYPE=SkylakeX) */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(void) {
    const int shapes[][3] = {{1568, 1152, 384}, {1568, 384, 384}, {1568, 1536, 384}, {1568, 384, 1536},
                             {3136, 2304, 768}, {3136, 3072, 768}, {3136, 768, 3072}, {4096, 4096, 4096}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
        float *a = malloc(sizeof(float) * m * k), *b = malloc(sizeof(float) * k * n), *c = malloc(sizeof(float) * m * n);
        if (!a || !b || !c) return 1;
        for (long i = 0; i < (long)m * k; i++) a[i] = (i % 7) * 0.1f;
        for (long i = 0; i < (long)k * n; i++) b[i] = (i % 5) * 0.1f;
        double best = 1e9;
        for (int r = 0; r < 7; r++) {   /* run 0 warms up */
            double t = now();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1, a, k, b, n, 0, c, n);
            t = now() - t;
            if (r > 0 && t < best) best = t;
        }
        printf("openblas %dx%dx%d %.1f GFLOP/s\n", m, n, k, 2.0 * m * n * k / best / 1e9);
        free(a); free(b); free(c);
    }
    return 0;
}
