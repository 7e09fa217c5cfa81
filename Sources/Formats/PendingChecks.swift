// Integrity checks (zip CRC-32) that a caller may run later, when it reads the
// bytes anyway: a converter checks each storage just before writing it, so the
// input is read once. Nothing may be published before `verifyAll()` succeeded.

import Foundation

public final class PendingChecks: @unchecked Sendable {
    struct Check {
        let start: UInt
        let end: UInt
        let run: () throws -> Void
        var done = false
    }

    private var checks: [Check] = []
    private var sorted = true

    public init() {}

    /// Registers `run` as the check of the bytes `range`.
    public func add(_ range: Bytes, _ run: @escaping () throws -> Void) {
        let start = UInt(bitPattern: range.raw.baseAddress)
        if let last = checks.last, last.start > start { sorted = false }
        checks.append(Check(start: start, end: start + UInt(range.count), run: run))
    }

    public var count: Int { checks.count }
    public var remaining: Int { checks.filter { !$0.done }.count }

    /// Runs every pending check whose bytes overlap `bytes`.
    public func verify(covering bytes: Bytes) throws {
        if !sorted { checks.sort { $0.start < $1.start }; sorted = true }
        let lo = UInt(bitPattern: bytes.raw.baseAddress), hi = lo + UInt(bytes.count)
        // First check that could overlap: binary search on start, then step back over one.
        var a = 0, b = checks.count
        while a < b { let m = (a + b) / 2; if checks[m].start < lo { a = m + 1 } else { b = m } }
        var i = max(0, a - 1)
        while i < checks.count, checks[i].start < max(hi, lo + 1) {
            if !checks[i].done, checks[i].end > lo || (bytes.count == 0 && checks[i].start == lo) {
                try checks[i].run()
                checks[i].done = true
            }
            i += 1
        }
    }

    /// Runs every check not yet run.
    public func verifyAll() throws {
        for i in checks.indices where !checks[i].done {
            try checks[i].run()
            checks[i].done = true
        }
    }
}
