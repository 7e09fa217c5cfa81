// The files of an epoch (best.safetensors, the checkpoint, the reports) written on a background
// thread while the next epoch trains: the loop takes the snapshot (weights and optimizer state
// copied) and goes on; the disk writes and their fsyncs, most of a checkpoint's cost on a small
// job, overlap the next epoch's steps. One epoch's files at a time, in order, each write atomic as
// before: a kill leaves the previous complete checkpoint, as a kill during a synchronous write did.
// Before it writes anything else, and before the run ends or fails, the loop waits for the pending
// epoch, so a failed write stops the run (one epoch later than a synchronous write would) and no
// file is left half-written by an exit.

import Foundation

final class EpochWriter {
    /// The work of one epoch; it owns what it writes (copies), so it may run beside the loop.
    private final class Job: @unchecked Sendable {
        /// Released once run, so the epoch's copies are freed before the loop takes the next ones.
        var body: (() throws -> Void)?
        init(_ body: @escaping () throws -> Void) { self.body = body }
    }

    private let condition = NSCondition()
    private var busy = false
    private var failure: Error?
    private var seconds = 0.0

    /// Seconds the background writes took in all (overlapped with training).
    var backgroundSeconds: Double {
        condition.lock(); defer { condition.unlock() }
        return seconds
    }

    /// Waits for the previous epoch's files, rethrowing its error, then starts `body` in the background.
    func submit(_ body: @escaping () throws -> Void) throws {
        try wait()
        let job = Job(body)
        condition.lock()
        busy = true
        condition.unlock()
        let thread = Thread { [self, job] in
            let t0 = Date()
            var error: Error?
            do { try job.body?() } catch let e { error = e }
            job.body = nil
            condition.lock()
            failure = error
            seconds += Date().timeIntervalSince(t0)
            busy = false
            condition.broadcast()
            condition.unlock()
        }
        thread.stackSize = 1 << 20
        thread.start()
    }

    /// Waits until the pending epoch's files are written; rethrows its error (once).
    func wait() throws {
        condition.lock()
        while busy { condition.wait() }
        let e = failure
        failure = nil
        condition.unlock()
        if let e { throw e }
    }

    /// Waits without reporting (on the way out of a run that already failed).
    func drain() { try? wait() }
}

extension EpochWriter: @unchecked Sendable {}
