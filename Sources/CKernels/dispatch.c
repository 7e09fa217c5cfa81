// Chooses the build of the kernels once per process: AVX-512 where the CPU (and the OS, which
// __builtin_cpu_supports checks through XCR0) has F, DQ, BW and VL; else AVX2 with FMA where it has
// those; else the baseline build. SFNET_KERNELS=generic forces the baseline, SFNET_KERNELS=avx2 the AVX2
// build where the CPU runs it. Each entry point is one indirect call through the active table.

#include "ckernels.h"
#include "kernels_table.h"

#include <stdlib.h>
#include <string.h>

static int avx512_usable(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq")
        && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
#else
    return 0;
#endif
}

static int avx2_usable(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

static const struct sfk_table *table_for(sfk_path path) {
#if defined(__x86_64__)
    if (path == SFK_PATH_AVX512) return &sfk_avx512_table;
    if (path == SFK_PATH_AVX2) return &sfk_avx2_table;
#endif
    return &sfk_generic_table;
}

static const struct sfk_table *_Atomic active;

/// The widest build the CPU runs, or the narrower one SFNET_KERNELS names (generic, or avx2 where usable).
static sfk_path chosen_path(void) {
    const char *forced = getenv("SFNET_KERNELS");
    if (forced && strcmp(forced, "generic") == 0) return SFK_PATH_GENERIC;
    if (avx512_usable() && !(forced && strcmp(forced, "avx2") == 0)) return SFK_PATH_AVX512;
    return avx2_usable() ? SFK_PATH_AVX2 : SFK_PATH_GENERIC;
}

/// The first call (from any thread) decides; racing first calls decide the same.
static const struct sfk_table *current(void) {
    const struct sfk_table *t = active;
    if (t) return t;
    active = table_for(chosen_path());
    return active;
}

sfk_path sfk_active_path(void) {
    const struct sfk_table *t = current();
#if defined(__x86_64__)
    if (t == &sfk_avx512_table) return SFK_PATH_AVX512;
    if (t == &sfk_avx2_table) return SFK_PATH_AVX2;
#endif
    return SFK_PATH_GENERIC;
}

int sfk_path_available(sfk_path path) {
    return path == SFK_PATH_GENERIC || (path == SFK_PATH_AVX512 && avx512_usable()) || (path == SFK_PATH_AVX2 && avx2_usable());
}

int sfk_set_path(sfk_path path) {
    if (!sfk_path_available(path)) return 0;
    active = table_for(path);
    return 1;
}

float sfk_row_max(const float *p, long n) { return current()->row_max(p, n); }
float sfk_exp_shifted(float *p, long n, float m) { return current()->exp_shifted(p, n, m); }
void sfk_probabilities_and_gradient(float *p, float *ds, long n, float m, float inv, float d) {
    current()->probabilities_and_gradient(p, ds, n, m, inv, d);
}
void sfk_recompute_probabilities(float *p, long n, float m, float inv) { current()->recompute_probabilities(p, n, m, inv); }
void sfk_scaled_softmax_gradient(const float *e, float *ds, long n, float inv, float d) {
    current()->scaled_softmax_gradient(e, ds, n, inv, d);
}
void sfk_softmax_row_backward(const float *p, float *ds, long n) { current()->softmax_row_backward(p, ds, n); }
double sfk_dot_double(const float *a, const float *b, long n) { return current()->dot_double(a, b, n); }
void sfk_gelu_forward(const float *x, float *dst, long n, int tanh_form) { current()->gelu_forward(x, dst, n, tanh_form); }
void sfk_gelu_backward(const float *x, const float *dy, float *dx, long n, int tanh_form) {
    current()->gelu_backward(x, dy, dx, n, tanh_form);
}
void sfk_swish_forward(const float *x, float *dst, long n, float scale) { current()->swish_forward(x, dst, n, scale); }
void sfk_swish_backward(const float *x, const float *dy, float *dx, long n) { current()->swish_backward(x, dy, dx, n); }
void sfk_exp(const float *x, float *dst, long n) { current()->exp(x, dst, n); }

#if defined(__x86_64__)
void sfk_avx512_pack_panels(const float *src, long ld, long n, long dh, float *dst);
void sfk_avx512_pack_rows(const float *src, long ld, long n, long dh, float *dst);
void sfk_avx512_abt(long m, long n, long dh, float alpha, const float *a, long lda, const float *panels, float *c, long ldc);
void sfk_avx512_ab(long m, long k, long dh, float alpha, const float *a, long lda, const float *b, long ldb, float beta, float *c, long ldc);
#endif

int sfk_attention_tiles(long dh) {
#if defined(__x86_64__)
    return current() == &sfk_avx512_table && dh >= 16 && dh <= 256 && dh % 16 == 0;
#else
    (void)dh;
    return 0;
#endif
}

long sfk_attention_panel_floats(long n, long dh) { return (n + 63) / 64 * 64 * dh; }

// Reached only where sfk_attention_tiles said yes (an x86-64 build with AVX-512).
#if defined(__x86_64__)
void sfk_attention_pack_panels(const float *src, long ld, long n, long dh, float *dst) { sfk_avx512_pack_panels(src, ld, n, dh, dst); }
void sfk_attention_pack_rows(const float *src, long ld, long n, long dh, float *dst) { sfk_avx512_pack_rows(src, ld, n, dh, dst); }
void sfk_attention_abt(long m, long n, long dh, float alpha, const float *a, long lda, const float *panels, float *c, long ldc) {
    sfk_avx512_abt(m, n, dh, alpha, a, lda, panels, c, ldc);
}
void sfk_attention_ab(long m, long k, long dh, float alpha, const float *a, long lda, const float *b, long ldb, float beta, float *c, long ldc) {
    sfk_avx512_ab(m, k, dh, alpha, a, lda, b, ldb, beta, c, ldc);
}
#else
void sfk_attention_pack_panels(const float *src, long ld, long n, long dh, float *dst) { abort(); }
void sfk_attention_pack_rows(const float *src, long ld, long n, long dh, float *dst) { abort(); }
void sfk_attention_abt(long m, long n, long dh, float alpha, const float *a, long lda, const float *panels, float *c, long ldc) { abort(); }
void sfk_attention_ab(long m, long k, long dh, float alpha, const float *a, long lda, const float *b, long ldb, float beta, float *c, long ldc) { abort(); }
#endif
