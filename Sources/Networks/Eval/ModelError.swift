// Errors of the network builder and its forward pass: weights that do not fit
// the config (each offender named with both shapes), inputs of the wrong shape,
// files without an architecture.

import Foundation
import Formats

/// One tensor that does not fit the network.
public struct WeightMismatch: Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable { case missing, unused, misshaped, wrongDType }
    public var kind: Kind
    /// Canonical PySlowFast name.
    public var name: String
    public var fileShape: [Int]?
    public var modelShape: [Int]?
    public var fileDType: String?

    public init(kind: Kind, name: String, fileShape: [Int]? = nil, modelShape: [Int]? = nil, fileDType: String? = nil) {
        (self.kind, self.name, self.fileShape, self.modelShape, self.fileDType) = (kind, name, fileShape, modelShape, fileDType)
    }

    public var description: String {
        let file = fileShape.map(Tensor.shapeString) ?? "?"
        let model = modelShape.map(Tensor.shapeString) ?? "?"
        switch kind {
        case .missing: return "\(name): missing, model expects \(model)"
        case .unused: return "\(name): file has \(file), model has no such tensor"
        case .misshaped: return "\(name): file has \(file), model expects \(model)"
        case .wrongDType: return "\(name): file has \(fileDType ?? "?") \(file), model expects a floating-point tensor \(model)"
        }
    }
}

public enum ModelError: Error, CustomStringConvertible, LocalizedError {
    /// Strict loading failed: the offenders shown (at most 10), their total, the config, a hint.
    case weights(offenders: [WeightMismatch], total: Int, config: String, hint: String?)
    /// A file without usable `sfnet.arch` metadata.
    case missingArchitecture(path: String, reason: String)
    /// The config cannot describe a network this builder runs.
    case invalidConfig(String)
    /// The inputs do not fit the network: which input, what was found, what was expected.
    case badInput(String)

    public var description: String {
        switch self {
        case let .weights(offenders, total, config, hint):
            var lines = ["\(total) tensor\(total == 1 ? "" : "s") do\(total == 1 ? "es" : "") not fit the model (\(config)):"]
            lines += offenders.map { "  " + $0.description }
            if total > offenders.count { lines.append("  ... and \(total - offenders.count) more") }
            if let hint { lines.append("hint: " + hint) }
            return lines.joined(separator: "\n")
        case let .missingArchitecture(path, reason):
            return "\(path): no usable architecture (sfnet.arch metadata): \(reason); convert the checkpoint with `sfnet convert` first"
        case let .invalidConfig(reason):
            return "invalid architecture config: \(reason)"
        case let .badInput(reason):
            return "bad network input: \(reason)"
        }
    }

    public var errorDescription: String? { description }
}
