// The one error type of Train: every message names what was being read or
// checked (file, tensor, parameter, option) and what was expected.

import Foundation

public struct TrainError: Error, CustomStringConvertible, LocalizedError, Sendable {
    public enum Kind: String, Sendable {
        case invalidArgument   // a setting or input of the wrong size/range
        case shapeMismatch     // a tensor whose shape disagrees with the parameter
        case missing           // a tensor or metadata entry that should be there
        case malformed         // a state file that cannot be understood
        case io                // cannot read or write
    }

    public var kind: Kind
    public var file: String?
    /// Where: "tensor 'optimizer.momentum.head.projection.weight'", "option momentum".
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

    public func inFile(_ path: String) -> TrainError {
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
