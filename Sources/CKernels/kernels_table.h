// The entry points one build of the kernels provides (kernels_generic.c, kernels_avx2.c, kernels_avx512.c); dispatch.c
// holds the active table. Signatures as in include/ckernels.h.

#ifndef SFNET_CKERNELS_TABLE_H
#define SFNET_CKERNELS_TABLE_H

struct sfk_table {
    float (*row_max)(const float *p, long n);
    float (*exp_shifted)(float *p, long n, float m);
    void (*probabilities_and_gradient)(float *p, float *ds, long n, float m, float inv, float d);
    void (*recompute_probabilities)(float *p, long n, float m, float inv);
    void (*scaled_softmax_gradient)(const float *e, float *ds, long n, float inv, float d);
    void (*softmax_row_backward)(const float *p, float *ds, long n);
    double (*dot_double)(const float *a, const float *b, long n);
    void (*gelu_forward)(const float *x, float *dst, long n, int tanh_form);
    void (*gelu_backward)(const float *x, const float *dy, float *dx, long n, int tanh_form);
    void (*swish_forward)(const float *x, float *dst, long n, float scale);
    void (*swish_backward)(const float *x, const float *dy, float *dx, long n);
    void (*exp)(const float *x, float *dst, long n);
};

extern const struct sfk_table sfk_generic_table;
#if defined(__x86_64__)
extern const struct sfk_table sfk_avx2_table;
extern const struct sfk_table sfk_avx512_table;
#endif

#endif
