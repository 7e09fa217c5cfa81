// The optimizers' element-wise loops over a parameter split across threads: every element's update
// is independent, so the result does not depend on the split. A fine-tuning step of VideoMAE-B updates
// 86 M parameters (AdamW reads and writes four arrays), which one core took ~0.1 s for while the
// other waited.

import Dispatch
import Foundation

enum ParallelLoop {
    /// Below this many elements per thread a loop stays on the calling thread.
    static let minPerThread = 1 << 15

    /// Calls `body` with contiguous ranges covering `0..<count`, one per thread, at most `threads` of them.
    static func ranges(_ count: Int, threads: Int, _ body: (Range<Int>) -> Void) {
        let parts = max(1, min(threads, count / minPerThread))
        guard parts > 1 else { return body(0 ..< count) }
        withoutActuallyEscaping(body) { body in
            let shared = Shared(body)
            DispatchQueue.concurrentPerform(iterations: parts) { part in
                shared.value((count * part / parts) ..< (count * (part + 1) / parts))
            }
        }
    }

    /// The sum of `chunk(range)` over fixed chunks of `chunkSize` elements (a multiple of the kernels'
    /// blocks), computed on up to `threads` threads and added in chunk order: the same double whatever
    /// the thread count.
    static func chunkedSum(_ count: Int, threads: Int, chunkSize: Int = 1 << 16, _ chunk: (Range<Int>) -> Double) -> Double {
        let chunks = (count + chunkSize - 1) / chunkSize
        guard chunks > 1 else { return count == 0 ? 0 : chunk(0 ..< count) }
        var sums = [Double](repeating: 0, count: chunks)
        sums.withUnsafeMutableBufferPointer { out in
            let base = Shared(out.baseAddress!)
            ranges(chunks * minPerThread, threads: threads) { span in
                for c in (span.lowerBound / minPerThread) ..< (span.upperBound / minPerThread) {
                    base.value[c] = chunk((c * chunkSize) ..< min(count, (c + 1) * chunkSize))
                }
            }
        }
        return sums.reduce(0, +)
    }

    /// Carries a closure or pointer into the threads; the callers give each thread disjoint elements.
    private struct Shared<Value>: @unchecked Sendable {
        let value: Value
        init(_ value: Value) { self.value = value }
    }
}
