// The one error type of Formats: every message names the file, where in it
// (offset, entry, key) and what was expected.

import Foundation

public struct FormatError: Error, CustomStringConvertible, LocalizedError, Sendable {
    /// What kind of problem; tests and the CLI may switch on it.
    public enum Kind: String, Sendable {
        case io            // cannot open/read/write
        case unsupported   // a format we deliberately refuse (TorchScript, encryption)
        case malformed     // corrupt or hostile input
        case disallowed    // pickle global or operation outside the allowlist
        case limit         // a resource budget was exceeded
    }

    public var kind: Kind
    public var file: String?
    /// Where in the file: "offset 123", "entry 'archive/data/0'", "key 'x'".
    public var location: String?
    public var message: String
    public var hint: String?

    public init(_ kind: Kind, _ message: String, file: String? = nil, at location: String? = nil, hint: String? = nil) {
        self.kind = kind
        self.message = message
        self.file = file
        self.location = location
        self.hint = hint
    }

    /// The same error with the file name filled in, if it was missing.
    public func inFile(_ path: String) -> FormatError {
        var e = self
        if e.file == nil { e.file = path }
        return e
    }

    public var description: String {
        var s = ""
        if let file { s += file + ": " }
        if let location { s += location + ": " }
        s += message
        if let hint { s += " (" + hint + ")" }
        return s
    }

    public var errorDescription: String? { description }
}

extension FormatError {
    static func malformed(_ message: String, at location: String? = nil, hint: String? = nil) -> FormatError {
        FormatError(.malformed, message, at: location, hint: hint)
    }
    static func limit(_ message: String, at location: String? = nil) -> FormatError {
        FormatError(.limit, message, at: location)
    }
}

/// Overflow-checked arithmetic for sizes read from files.
public enum Checked {
    public static func mul(_ a: Int, _ b: Int, _ what: @autoclosure () -> String) throws -> Int {
        let (r, o) = a.multipliedReportingOverflow(by: b)
        if o || r < 0 { throw FormatError.malformed("size overflow computing \(what())") }
        return r
    }
    public static func add(_ a: Int, _ b: Int, _ what: @autoclosure () -> String) throws -> Int {
        let (r, o) = a.addingReportingOverflow(b)
        if o { throw FormatError.malformed("size overflow computing \(what())") }
        return r
    }
    /// The element count of `xs`. The product of the non-zero dimensions must fit too (as
    /// PyTorch's `safe_multiplies_u64`): `[0, 2^62, 2^62]` has 0 elements, but its row-major
    /// strides (suffix products) would overflow, so it is refused. Every sub-product of an
    /// accepted shape therefore fits in an Int, in any order.
    public static func product(_ xs: [Int], _ what: @autoclosure () -> String) throws -> Int {
        try product(xs, elementSize: 1, what())
    }
    /// `product(xs) * elementSize`, with the same rule (the non-zero product times the size must fit).
    public static func product(_ xs: [Int], elementSize: Int, _ what: @autoclosure () -> String) throws -> Int {
        var nonZero = elementSize
        var hasZero = false
        for x in xs {
            if x < 0 { throw FormatError.malformed("negative dimension \(x) in \(what())") }
            if x == 0 { hasZero = true; continue }
            nonZero = try mul(nonZero, x, what())
        }
        return hasZero ? 0 : nonZero
    }
}
