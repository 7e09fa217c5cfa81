// The per-row softmax kernels of attention (Attention.swift): row maximum, exp of the max-shifted
// scores with their sum, and the softmax backward dS = P (dP - rowsum(P dP)) from recomputed or kept
// probabilities. The lanes run in C (CKernels, AVX-512 where the CPU has it) with Swish's exp restricted
// to x <= 0 (a score minus its row maximum never exceeds 0, so only the lower clamp remains).

import CKernels

/// The largest of `n` floats (n > 0).
@inline(__always)
func rowMaximum(_ p: UnsafePointer<Float>, _ n: Int) -> Float { sfk_row_max(p, n) }

/// p[j] = exp(p[j] - m) for j < n (m the row maximum); returns their sum. The sum runs in float lanes:
/// at L = 1568 that is as accurate as double lanes measured against float64 (relative L2 of the output
/// 5.6e-7 both ways, PyTorch's flash kernel 5.4e-7).
@inline(__always)
func expShifted(_ p: UnsafeMutablePointer<Float>, _ n: Int, max m: Float) -> Float { sfk_exp_shifted(p, n, m) }

/// Recomputes one row's probabilities and their softmax gradient in one pass: p[j] = exp(p[j] - m) * inv,
/// ds[j] = p[j] * (ds[j] - d) for j < n, where `ds` holds dP on entry and d = sum over k of p[k] dP[k]
/// (given: dO . O of the row).
@inline(__always)
func probabilitiesAndGradient(_ p: UnsafeMutablePointer<Float>, _ ds: UnsafeMutablePointer<Float>, _ n: Int,
                              max m: Float, inverseSum inv: Float, rowDot d: Float) {
    sfk_probabilities_and_gradient(p, ds, n, m, inv, d)
}

/// p[j] = exp(p[j] - m) * inv for j < n: one row's probabilities, recomputed.
@inline(__always)
func recomputeProbabilities(_ p: UnsafeMutablePointer<Float>, _ n: Int, max m: Float, inverseSum inv: Float) {
    sfk_recompute_probabilities(p, n, m, inv)
}

/// ds[j] = e[j] * inv * (ds[j] - d) for j < n: dS from a kept row e = exp(S - max) (P = e inv), dP in
/// `ds` and d = sum over k of P[k] dP[k].
@inline(__always)
func scaledSoftmaxGradient(_ e: UnsafePointer<Float>, _ ds: UnsafeMutablePointer<Float>, _ n: Int,
                           inverseSum inv: Float, rowDot d: Float) {
    sfk_scaled_softmax_gradient(e, ds, n, inv, d)
}

/// ds[j] = p[j] * (ds[j] - sum over k of p[k] ds[k]) for j < n: the softmax backward of one row,
/// dS from P and dP (the sum in double), when the forward's output is not at hand.
@inline(__always)
func softmaxRowBackward(_ p: UnsafePointer<Float>, _ ds: UnsafeMutablePointer<Float>, _ n: Int) {
    sfk_softmax_row_backward(p, ds, n)
}

/// The dot product of `n` floats at `a` and `b`, in double.
@inline(__always)
func dotInDouble(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Double { sfk_dot_double(a, b, n) }
