// The one door to OpenBLAS: row-major single-precision GEMM,
// C[m, n] = alpha * op(A)[m, k] * op(B)[k, n] + beta * C, whole or split
// over the network's threads (see Threading.swift).

import COpenBLAS

/// Row-major `cblas_sgemm`. `lda`, `ldb`, `ldc` are row strides in elements
/// of the matrices as stored (before transposition).
@inline(__always)
func sgemm(transA: Bool = false, transB: Bool = false,
           m: Int, n: Int, k: Int, alpha: Float = 1,
           a: UnsafePointer<Float>, lda: Int,
           b: UnsafePointer<Float>, ldb: Int,
           beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
    guard m > 0, n > 0 else { return }
    guard k > 0 else {
        // BLAS would scale C by beta; do the same without the call.
        for i in 0..<m {
            let row = c + i * ldc
            if beta == 0 { row.update(repeating: 0, count: n) } else if beta != 1 {
                for j in 0..<n { row[j] *= beta }
            }
        }
        return
    }
    cblas_sgemm(CblasRowMajor,
                transA ? CblasTrans : CblasNoTrans,
                transB ? CblasTrans : CblasNoTrans,
                blasint(m), blasint(n), blasint(k), alpha,
                a, blasint(lda), b, blasint(ldb),
                beta, c, blasint(ldc))
}

/// Below this many multiply-adds a GEMM is not worth splitting.
private let splitThreshold = 1 << 20

/// Whether a GEMM of `macs` multiply-adds is split over the network's threads.
func shouldSplitGemm(macs: Int) -> Bool {
    Threading.splitGemms && Threading.threads > 1 && macs >= splitThreshold
}

/// Calls `body` with column ranges of `0..<n` (multiples of 16 apart from the
/// last), one per thread when the GEMM is split, else once with everything.
func forGemmColumnBlocks(_ n: Int, macs: Int, _ body: (Range<Int>) -> Void) {
    guard shouldSplitGemm(macs: macs) else { return body(0..<n) }
    parallelRanges((n + 15) / 16) { blocks in
        body((blocks.lowerBound * 16)..<min(n, blocks.upperBound * 16))
    }
}

/// Non-transposed `sgemm` split over the network's threads: by column blocks
/// when N >= M, else by row blocks. One OpenBLAS call (on OpenBLAS's threads)
/// when `Threading.splitGemms` is off or the GEMM is small.
func parallelSgemm(m: Int, n: Int, k: Int,
                   a: UnsafePointer<Float>, lda: Int,
                   b: UnsafePointer<Float>, ldb: Int,
                   beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
    if n >= m || !shouldSplitGemm(macs: m * n * k) {
        forGemmColumnBlocks(n, macs: m * n * k) { cols in
            sgemm(m: m, n: cols.count, k: k, a: a, lda: lda, b: b + cols.lowerBound, ldb: ldb,
                  beta: beta, c: c + cols.lowerBound, ldc: ldc)
        }
    } else {
        parallelRanges(m) { rows in
            sgemm(m: rows.count, n: n, k: k, a: a + rows.lowerBound * lda, lda: lda, b: b, ldb: ldb,
                  beta: beta, c: c + rows.lowerBound * ldc, ldc: ldc)
        }
    }
}
