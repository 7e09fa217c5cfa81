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

/// Below this many multiply-adds a GEMM is not worth splitting. 2^20 while a split cost a
/// Dispatch wake-up (tens of microseconds on a VM); on the pool's spinning workers 2^18 (a GEMM of
/// 0.5 MFLOP, ~5 microseconds on one core) is 1.5-3% faster on the 64² train step (BENCHMARKS.md).
private let splitThreshold = 1 << 18

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

/// `sgemm` with any transposes, split over the network's threads by blocks of
/// C's columns (N >= M) or rows; one call when small or `splitGemms` is off.
func parallelSgemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
                   a: UnsafePointer<Float>, lda: Int,
                   b: UnsafePointer<Float>, ldb: Int,
                   beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
    guard shouldSplitGemm(macs: m * n * k) else {
        return sgemm(transA: transA, transB: transB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb,
                     beta: beta, c: c, ldc: ldc)
    }
    if n >= m {
        forGemmColumnBlocks(n, macs: m * n * k) { cols in
            sgemm(transA: transA, transB: transB, m: m, n: cols.count, k: k, a: a, lda: lda,
                  b: b + (transB ? cols.lowerBound * ldb : cols.lowerBound), ldb: ldb,
                  beta: beta, c: c + cols.lowerBound, ldc: ldc)
        }
    } else {
        parallelRanges(m) { rows in
            sgemm(transA: transA, transB: transB, m: rows.count, n: n, k: k,
                  a: a + (transA ? rows.lowerBound : rows.lowerBound * lda), lda: lda, b: b, ldb: ldb,
                  beta: beta, c: c + rows.lowerBound * ldc, ldc: ldc)
        }
    }
}

/// A reduction GEMM spread over threads (weight gradients: C += A B^T summed over long K): the
/// first thread adds its share of K straight into the destination, each other thread into its own
/// [m, n] buffer (zeroed when a GEMM first splits), and `finish` adds those buffers in once. A
/// reduction that never splits (small GEMMs) costs nothing beyond its GEMMs.
final class SplitKAccumulator {
    let m: Int, n: Int, parts: Int
    private let destination: UnsafeMutablePointer<Float>
    private let workspace: Workspace, slot: Int
    /// The other threads' buffers, once a GEMM split.
    private var extra: UnsafeMutablePointer<Float>?

    /// Accumulates into `destination` ([m, n] row-major, added to).
    init(m: Int, n: Int, into destination: UnsafeMutablePointer<Float>, workspace: Workspace, slot: Int) {
        (self.m, self.n, self.destination, self.workspace, self.slot) = (m, n, destination, workspace, slot)
        parts = Threading.splitGemms ? max(1, Threading.threads) : 1
    }

    /// acc += A[m, k] x B[n, k]^T over the K range split across threads (row-major,
    /// A and B with row strides lda and ldb).
    func add(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
             rowOffset: Int = 0) {
        precondition(m + rowOffset <= self.m && n == self.n)
        let split = shouldSplitGemm(macs: m * n * k) ? parts : 1
        if split > 1 && k < Conv3dTuning.splitKMinimum && m >= 32 {
            // A short reduction (the stacked small clips): the threads take row blocks of the destination
            // instead, so no buffer is zeroed and added back for a GEMM this thin.
            let destination = self.destination
            parallelParts((m + 15) / 16, maxParts: split) { _, blocks in
                let rows = (blocks.lowerBound * 16)..<min(m, blocks.upperBound * 16)
                sgemm(transB: true, m: rows.count, n: n, k: k, a: a + rows.lowerBound * lda, lda: lda, b: b, ldb: ldb,
                      beta: 1, c: destination + (rowOffset + rows.lowerBound) * n, ldc: n)
            }
            return
        }
        if split > 1 && extra == nil {
            let count = (parts - 1) * self.m * self.n
            let buffer = workspace.buffer(count, slot: slot)
            parallelRanges(count, minPerThread: 1 << 16) { range in (buffer + range.lowerBound).update(repeating: 0, count: range.count) }
            extra = buffer
        }
        let (destination, extra, size) = (self.destination, self.extra, self.m * self.n)
        parallelParts(k, minPerThread: 64, maxParts: split) { part, ks in
            let c = part == 0 ? destination : extra! + (part - 1) * size
            sgemm(transB: true, m: m, n: n, k: ks.count, a: a + ks.lowerBound, lda: lda, b: b + ks.lowerBound, ldb: ldb,
                  beta: 1, c: c + rowOffset * n, ldc: n)
        }
    }

    /// Adds the other threads' sums into the destination.
    func finish() {
        guard let extra else { return }
        let (total, others, dst) = (m * n, parts - 1, destination)
        parallelRanges(total, minPerThread: 1 << 14) { range in
            for p in 0..<others {
                let src = extra + p * total
                for i in range { dst[i] += src[i] }
            }
        }
    }
}
