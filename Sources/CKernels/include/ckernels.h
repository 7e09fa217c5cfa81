// sfnet's hot element-wise loops in C, so that one binary runs them 16 lanes wide with FMA (AVX-512)
// where the CPU has it, 8 lanes with FMA where it has AVX2 (no AVX-512), and 8 lanes at the baseline
// target elsewhere: Swift's SIMD types compile to the package's baseline (no -march, STYLE 10). The
// path is chosen once per process (the widest the CPU runs; SFNET_KERNELS=generic or avx2 forces a
// narrower one); tests switch it with sfk_set_path.
// Counts are element counts; pointers need no alignment; in-place calls (dst equal to an input) are
// allowed where a comment says so.

#ifndef SFNET_CKERNELS_H
#define SFNET_CKERNELS_H

#ifdef __cplusplus
extern "C" {
#endif

/// The builds of the kernels.
typedef enum {
    SFK_PATH_GENERIC = 0,  ///< the baseline target, 8 lanes (plain C vector code)
    SFK_PATH_AVX512 = 1,   ///< AVX-512 F/DQ/BW/VL with FMA, 16 lanes (x86-64 only)
    SFK_PATH_AVX2 = 2,     ///< AVX2 with FMA, 8 lanes (x86-64 only)
} sfk_path;

/// The path the kernels run now.
sfk_path sfk_active_path(void);
/// Whether `path` can run on this CPU (generic always can).
int sfk_path_available(sfk_path path);
/// Makes `path` the active one if it is available; returns 1 then, 0 (nothing changed) otherwise.
/// Meant for tests and benchmarks: not synchronised with kernels running on other threads.
int sfk_set_path(sfk_path path);

// MARK: attention softmax rows

/// The largest of p[0..<n] (n > 0).
float sfk_row_max(const float *p, long n);
/// p[j] = exp(p[j] - m) for j < n (m >= every p[j], the row maximum); returns their sum (float lanes).
float sfk_exp_shifted(float *p, long n, float m);
/// p[j] = exp(p[j] - m) * inv; ds[j] = p[j] * (ds[j] - d), for j < n.
void sfk_probabilities_and_gradient(float *p, float *ds, long n, float m, float inv, float d);
/// p[j] = exp(p[j] - m) * inv for j < n.
void sfk_recompute_probabilities(float *p, long n, float m, float inv);
/// ds[j] = e[j] * inv * (ds[j] - d) for j < n.
void sfk_scaled_softmax_gradient(const float *e, float *ds, long n, float inv, float d);
/// ds[j] = p[j] * (ds[j] - sum_k p[k] ds[k]) for j < n, the sum in double.
void sfk_softmax_row_backward(const float *p, float *ds, long n);
/// sum of a[j] * b[j] for j < n, in double (each product exact).
double sfk_dot_double(const float *a, const float *b, long n);

// MARK: attention's products (attention_avx512.c)
// Register tiles for the products of a score block [rows, Lk] with one head's [., dh] operand, reading
// the block where it lies (no packing, no clearing of C). They run only where sfk_attention_tiles(dh)
// says so; elsewhere the caller uses sgemm. Row strides are in floats.

/// 1 when the tiles run on the active path for heads of `dh` columns (AVX-512; dh a multiple of 16, 16...256).
int sfk_attention_tiles(long dh);
/// Floats sfk_attention_pack_panels writes for `n` rows of `dh` columns: ceil(n / 64) x 64 x dh.
long sfk_attention_panel_floats(long n, long dh);
/// The transpose of a strided [n, dh] operand (K or V) in 64-column panels, zero-padded, for sfk_attention_abt.
void sfk_attention_pack_panels(const float *src, long ld, long n, long dh, float *dst);
/// A strided [n, dh] operand made contiguous (dst row stride dh).
void sfk_attention_pack_rows(const float *src, long ld, long n, long dh, float *dst);
/// C[m, n] = alpha A[m, dh] B[n, dh]^T with B packed by sfk_attention_pack_panels; C is only written.
void sfk_attention_abt(long m, long n, long dh, float alpha, const float *a, long lda, const float *panels, float *c, long ldc);
/// C[m, dh] = alpha A[m, k] B[k, dh] + beta C (C read only when beta != 0).
void sfk_attention_ab(long m, long k, long dh, float alpha, const float *a, long lda, const float *b, long ldb,
                      float beta, float *c, long ldc);

// MARK: GELU (form 0: erf, exact; form 1: tanh approximation)

/// dst[i] = gelu(x[i]) for i < n (dst may be x).
void sfk_gelu_forward(const float *x, float *dst, long n, int tanh_form);
/// dx[i] = dy[i] * gelu'(x[i]) for i < n (dx may be x or dy).
void sfk_gelu_backward(const float *x, const float *dy, float *dx, long n, int tanh_form);

// MARK: Swish and its exp core

/// dst[i] = swish(scale * x[i]) for i < n, swish(v) = v * sigmoid(v) (dst may be x).
void sfk_swish_forward(const float *x, float *dst, long n, float scale);
/// dx[i] = dy[i] * s (1 + x[i] (1 - s)), s = sigmoid(x[i]), for i < n (dx may be x or dy).
void sfk_swish_backward(const float *x, const float *dy, float *dx, long n);
/// dst[i] = exp(x[i]) for i < n, through the exp core that Swish and the attention softmax share
/// (inputs clamped to [-87.3, 88.37]); for tests that check the core itself.
void sfk_exp(const float *x, float *dst, long n);

// MARK: the network's thread pool (pool.c)

/// One part of a parallel loop: `part` in 0..<parts.
typedef void (*sfk_pool_task)(void *context, long part);
/// Runs task(context, part) for every part in 0..<parts on the calling thread and up to threads - 1
/// pool workers (started on first use, spinning briefly between loops), and returns 1 when all are
/// done. Returns 0 having run nothing when the pool is busy (a loop on another thread, or one opened
/// inside a part), when threads < 2 or parts < 2, or when no worker could start: the caller then runs
/// the loop itself. parts <= 0 returns 1 at once.
int sfk_pool_run(long parts, long threads, sfk_pool_task task, void *context);

#ifdef __cplusplus
}
#endif

#endif
