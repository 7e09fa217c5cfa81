// Thread control. By default every parallel loop, GEMMs included, runs on the
// network's own threads (the pool behind Parallel.runParts), and each GEMM piece is
// a single-threaded OpenBLAS call: measured on the 2-core box this is as fast
// as OpenBLAS's threads on large GEMMs and 1.5-3x faster on the thin ones
// (fast pathway, stem), and no OpenBLAS worker spins while our loops run.
// `splitGemms = false` hands GEMMs to OpenBLAS's own threads instead.

import COpenBLAS
import Foundation
import Parallel

/// The number of threads the network uses, and who runs the GEMMs.
public enum Threading {
    nonisolated(unsafe) private static var current: Int = {
        let n = ProcessInfo.processInfo.activeProcessorCount
        openblas_set_num_threads(1)
        return n
    }()
    nonisolated(unsafe) private static var split = true

    /// Threads used by the network's own loops.
    public static var threads: Int { current }

    /// Whether GEMMs are split over the network's threads (true, the default)
    /// or given whole to OpenBLAS's thread pool (false).
    public static var splitGemms: Bool { _ = current; return split }

    /// Sets the network's thread count and OpenBLAS's: with `splitGemms`
    /// (default) OpenBLAS runs single-threaded inside our `n` threads, otherwise
    /// OpenBLAS itself gets `n`. Call between forward passes, not during one.
    public static func setThreads(_ n: Int, splitGemms: Bool = true) {
        let n = max(1, n)
        current = n
        split = splitGemms
        openblas_set_num_threads(Int32(splitGemms ? 1 : n))
    }

    /// OpenBLAS's current thread count.
    public static var blasThreads: Int {
        _ = current
        return Int(openblas_get_num_threads())
    }

    /// The OpenBLAS kernel in use ("Cooperlake", "SkylakeX", ... or "Prescott"
    /// when OpenBLAS did not recognise the CPU: then set OPENBLAS_CORETYPE).
    public static var blasCoreName: String { String(cString: openblas_get_corename()) }
}

/// Runs `body(part, range)` over `0..<count` split into at most `maxParts`
/// (default `Threading.threads`) contiguous ranges, each at least
/// `minPerThread` long; serial (part 0, whole range) when small. Returns the
/// number of parts used. `part` indexes per-thread scratch.
@discardableResult
func parallelParts(_ count: Int, minPerThread: Int = 1, maxParts: Int? = nil,
                   _ body: (_ part: Int, _ range: Range<Int>) -> Void) -> Int {
    guard count > 0 else { return 0 }
    let parts = min(maxParts ?? Threading.threads, max(1, count / max(1, minPerThread)))
    if parts <= 1 {
        body(0, 0..<count)
        return 1
    }
    runParts(parts) { part in
        let lo = count * part / parts
        let hi = count * (part + 1) / parts
        if lo < hi { body(part, lo..<hi) }
    }
    return parts
}

/// `Parallel.runParts` on the network's threads (`Threading.threads`).
@inline(__always)
func runParts(_ parts: Int, _ body: (_ part: Int) -> Void) {
    Parallel.runParts(parts, threads: Threading.threads, body)
}

/// `parallelParts` without the part index.
@inline(__always)
func parallelRanges(_ count: Int, minPerThread: Int = 1, _ body: (Range<Int>) -> Void) {
    parallelParts(count, minPerThread: minPerThread) { _, range in body(range) }
}

/// `parallelRanges` for per-item work: calls `body(i)` for every `i` in `0..<count`.
/// `work` is a rough cost of one item in elements touched, used to stay
/// serial when the whole job is too small to be worth waking threads.
@inline(__always)
func parallelFor(_ count: Int, work: Int = 1 << 16, _ body: (Int) -> Void) {
    let minItems = max(1, (1 << 15) / max(1, work))
    parallelRanges(count, minPerThread: minItems) { range in
        for i in range { body(i) }
    }
}

/// Parallel's wrapper, under the name the ops use without importing Parallel.
typealias UncheckedSendable = Parallel.UncheckedSendable
