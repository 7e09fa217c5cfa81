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

// MARK: - The products of a score block with one head (attention_avx512.c)

/// One thread's copies of a (sequence, head)'s K and V in the layouts the AVX-512 attention tiles read
/// (K and V transposed in 64-column panels; `rows`: V's rows made contiguous in the forward, for P V, K's
/// in the backward, for dS K), made once per pair instead of once per block of query rows; nil where the
/// tiles do not run (no AVX-512, or dh not a multiple of 16), and the attention calls sgemm then.
struct HeadTiles {
    let dh: Int, lk: Int
    /// Floats one thread's copies take: two panel sets and one row copy.
    static func floats(dh: Int, lk: Int) -> Int { 2 * sfk_attention_panel_floats(lk, dh) + lk * dh }

    let keyPanels: UnsafeMutablePointer<Float>, valuePanels: UnsafeMutablePointer<Float>, rows: UnsafeMutablePointer<Float>
    private(set) var pair = -1

    /// The tiles for heads of `dh` columns over `lk` keys, in `floats(dh:lk:)` floats at `scratch`; nil where they do not run.
    init?(dh: Int, lk: Int, scratch: UnsafeMutablePointer<Float>) {
        guard sfk_attention_tiles(dh) != 0 else { return nil }
        (self.dh, self.lk) = (dh, lk)
        let panels = sfk_attention_panel_floats(lk, dh)
        (keyPanels, valuePanels, rows) = (scratch, scratch + panels, scratch + 2 * panels)
    }

    static func available(dh: Int) -> Bool { sfk_attention_tiles(dh) != 0 }

    /// Copies pair `pair`'s K and V unless this thread already holds them: for the forward K's panels and
    /// V's rows; for the `backward` K's and V's panels and K's rows.
    mutating func load(pair: Int, key: UnsafePointer<Float>, keyStride: Int, value: UnsafePointer<Float>, valueStride: Int,
                       backward: Bool) {
        guard pair != self.pair else { return }
        self.pair = pair
        sfk_attention_pack_panels(key, keyStride, lk, dh, keyPanels)
        if backward {
            sfk_attention_pack_panels(value, valueStride, lk, dh, valuePanels)
            sfk_attention_pack_rows(key, keyStride, lk, dh, rows)
        } else {
            sfk_attention_pack_rows(value, valueStride, lk, dh, rows)
        }
    }

    /// C[m, lk] = alpha A[m, dh] K^T (or V^T with `value`), C written with row stride lk.
    func scores(m: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int, value: Bool = false, c: UnsafeMutablePointer<Float>) {
        sfk_attention_abt(m, lk, dh, alpha, a, lda, value ? valuePanels : keyPanels, c, lk)
    }
}

/// C[m, dh] = alpha A[m, k] B[k, dh] + beta C (the tiles; C read only when beta != 0).
@inline(__always)
func headProduct(m: Int, k: Int, dh: Int, alpha: Float = 1, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                 beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
    sfk_attention_ab(m, k, dh, alpha, a, lda, b, ldb, beta, c, ldc)
}
