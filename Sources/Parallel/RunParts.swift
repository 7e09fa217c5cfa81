// The one Swift door to CKernels' thread pool (pool.c), shared by the network's loops (Networks'
// Threading.swift) and the optimizers' (Train's ParallelLoop.swift).

import CKernels
import Dispatch

/// Calls `body(part)` for every part in `0..<parts`, on the calling thread and up to `threads - 1` pool
/// workers (which spin briefly between loops), and returns when all are done. When the pool declines
/// (busy with another loop: one opened inside a part, or on another thread; or fewer than 2 threads or
/// parts) the loop runs on Dispatch's threads instead. Callers give each part disjoint memory, so the
/// closure is shared across threads unchecked.
public func runParts(_ parts: Int, threads: Int, _ body: (_ part: Int) -> Void) {
    withoutActuallyEscaping(body) { body in
        var task = body
        let ran = withUnsafeMutablePointer(to: &task) { task in
            sfk_pool_run(parts, threads, { context, part in
                context!.assumingMemoryBound(to: ((Int) -> Void).self).pointee(part)
            }, task)
        }
        guard ran == 0 else { return }
        let shared = UncheckedSendable(body)
        DispatchQueue.concurrentPerform(iterations: parts) { part in shared.value(part) }
    }
}

/// Carries a closure or pointer into the threads of a loop whose parts touch disjoint memory (the
/// callers' guarantee, which the compiler cannot check).
public struct UncheckedSendable<Value>: @unchecked Sendable {
    public let value: Value
    public init(_ value: Value) { self.value = value }
}
