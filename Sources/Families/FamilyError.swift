// Errors of the Families module: a config that cannot describe a network, an unknown preset.

import Foundation

public enum FamilyError: Error, CustomStringConvertible, LocalizedError {
    /// A config that cannot describe a network: every problem found, in one list.
    case invalidConfig([String])
    case unknownPreset(String, known: [String])
    /// A file that is not native sfnet weights, and why.
    case notNative(String)

    public var description: String {
        switch self {
        case let .invalidConfig(problems):
            return "invalid architecture config: " + problems.joined(separator: "; ")
        case let .unknownPreset(name, known):
            return "unknown architecture preset '\(name)'; known: \(known.joined(separator: ", "))"
        case let .notNative(reason):
            return "not native sfnet weights: \(reason)"
        }
    }

    public var errorDescription: String? { description }
}
