// The optimizers' element-wise loops over a parameter split across threads: every element's update
// is independent, so the result does not depend on the split. The momentum update of SlowFast R50's
// 33.7 M parameters reads and writes ~400 MB a step, which one core did while the other waited (issue
// 14's fine-tuning job spent 3.5 s less in its 108 steps once it was split; BENCHMARKS.md).

import Foundation
import Parallel

enum ParallelLoop {
    /// Below this many elements per thread a loop stays on the calling thread.
    static let minPerThread = 1 << 15

    /// Calls `body` with contiguous ranges covering `0..<count`, one per thread, at most `threads` of them.
    static func ranges(_ count: Int, threads: Int, _ body: (Range<Int>) -> Void) {
        split(count, parts: min(threads, count / minPerThread), body)
    }

    /// The sum of `chunk(range)` over fixed chunks of `chunkSize` elements (a multiple of the kernels'
    /// blocks), computed on up to `threads` threads and added in chunk order: the same double whatever
    /// the thread count.
    static func chunkedSum(_ count: Int, threads: Int, chunkSize: Int = 1 << 16, _ chunk: (Range<Int>) -> Double) -> Double {
        let chunks = (count + chunkSize - 1) / chunkSize
        guard chunks > 1 else { return count == 0 ? 0 : chunk(0 ..< count) }
        var sums = [Double](repeating: 0, count: chunks)
        sums.withUnsafeMutableBufferPointer { out in
            let base = UncheckedSendable(out.baseAddress!)
            split(chunks, parts: threads) { mine in
                for c in mine { base.value[c] = chunk((c * chunkSize) ..< min(count, (c + 1) * chunkSize)) }
            }
        }
        return sums.reduce(0, +)
    }

    /// `body` over `0..<count` in `parts` contiguous ranges (at least 1, at most `count`), one per thread.
    private static func split(_ count: Int, parts requested: Int, _ body: (Range<Int>) -> Void) {
        let parts = max(1, min(requested, count))
        guard parts > 1 else { return body(0 ..< count) }
        runParts(parts, threads: parts) { part in body((count * part / parts) ..< (count * (part + 1) / parts)) }
    }
}
