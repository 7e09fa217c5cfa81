// The network's thread pool (CKernels' pool.c behind `runParts`): every part of every loop runs
// exactly once, whether the loop lands on the pool, on Dispatch (a loop opened inside a part, or
// while another thread holds the pool) or on the caller alone.

import CKernels
import Dispatch
import Foundation
import XCTest
@testable import Networks

final class ThreadPoolTests: XCTestCase {
    /// Counts per part, safe to bump from any thread (each part owns its slot).
    private final class Tally: @unchecked Sendable {
        var counts: [Int]
        init(_ n: Int) { counts = Array(repeating: 0, count: n) }
    }

    /// The thread that ran each of `parts` parts, each part sleeping `microseconds` first.
    private func threadsRunning(parts: Int, microseconds: UInt32) -> [pthread_t] {
        var threadsSeen = Array(repeating: pthread_self(), count: parts)
        threadsSeen.withUnsafeMutableBufferPointer { slots in
            let base = UncheckedSendable(slots.baseAddress!)
            runParts(parts) { part in
                usleep(microseconds)
                base.value[part] = pthread_self()
            }
        }
        return threadsSeen
    }

    func testEveryPartRunsOnceAcrossManyLoops() {
        let saved = (Threading.threads, Threading.splitGemms)
        defer { Threading.setThreads(saved.0, splitGemms: saved.1) }
        for threads in [2, 3, 5] {
            Threading.setThreads(threads)
            for parts in [2, 3, 7, 64, 1000] {
                for _ in 0..<20 {
                    let tally = Tally(parts)
                    tally.counts.withUnsafeMutableBufferPointer { slots in
                        let base = UncheckedSendable(slots.baseAddress!)
                        runParts(parts) { part in base.value[part] += 1 }
                    }
                    XCTAssertEqual(tally.counts, Array(repeating: 1, count: parts), "threads \(threads), parts \(parts)")
                }
            }
        }
    }

    func testTheThreadsOtherThanTheCallerDoRunParts() {
        let saved = (Threading.threads, Threading.splitGemms)
        defer { Threading.setThreads(saved.0, splitGemms: saved.1) }
        Threading.setThreads(2)
        // Parts slow enough that the caller cannot take them all before a worker wakes.
        let threadsSeen = threadsRunning(parts: 16, microseconds: 2000)
        let caller = pthread_self()
        XCTAssertTrue(threadsSeen.contains { pthread_equal($0, caller) == 0 }, "every part ran on the caller")
    }

    func testALoopRunsOnNoMoreThreadsThanItAsksFor() {
        let saved = (Threading.threads, Threading.splitGemms)
        defer { Threading.setThreads(saved.0, splitGemms: saved.1) }
        // Five threads start four workers; with the count lowered to two, one of them may take parts.
        Threading.setThreads(5)
        runParts(8) { _ in usleep(200) }
        Threading.setThreads(2)
        for _ in 0..<3 {
            let threadsSeen = threadsRunning(parts: 24, microseconds: 1000)
            var distinct: [pthread_t] = []
            for t in threadsSeen where !distinct.contains(where: { pthread_equal($0, t) != 0 }) { distinct.append(t) }
            XCTAssertLessThanOrEqual(distinct.count, 2, "a loop asked for 2 threads ran on \(distinct.count)")
        }
    }

    func testLoopsInsidePartsAndOnOtherThreadsStillRunEveryPart() {
        let saved = (Threading.threads, Threading.splitGemms)
        defer { Threading.setThreads(saved.0, splitGemms: saved.1) }
        Threading.setThreads(2)
        let (outer, inner) = (6, 5)
        let nested = Tally(outer * inner)
        nested.counts.withUnsafeMutableBufferPointer { slots in
            let base = UncheckedSendable(slots.baseAddress!)
            runParts(outer) { o in
                runParts(inner) { i in base.value[o * inner + i] += 1 }
            }
        }
        XCTAssertEqual(nested.counts, Array(repeating: 1, count: outer * inner))

        // Two threads opening loops at once: one holds the pool, the other falls back.
        let callers = 4, parts = 9, loops = 50
        let tallies = (0..<callers).map { _ in Tally(parts) }
        DispatchQueue.concurrentPerform(iterations: callers) { c in
            for _ in 0..<loops {
                tallies[c].counts.withUnsafeMutableBufferPointer { slots in
                    let base = UncheckedSendable(slots.baseAddress!)
                    runParts(parts) { part in base.value[part] += 1 }
                }
            }
        }
        for tally in tallies { XCTAssertEqual(tally.counts, Array(repeating: loops, count: parts)) }
    }

    func testThePoolDeclinesWhatItCannotRun() {
        XCTAssertEqual(sfk_pool_run(5, 1, { _, _ in }, nil), 0, "one thread: the caller runs the loop")
        XCTAssertEqual(sfk_pool_run(1, 4, { _, _ in }, nil), 0, "one part: the caller runs it")
        XCTAssertEqual(sfk_pool_run(0, 4, { _, _ in }, nil), 1, "no parts: nothing to run")
    }
}
