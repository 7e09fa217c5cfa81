// Errors of the Convert module: values with context, each message saying what was
// expected, what was found, and a hint where one helps.

import Foundation
import Formats

/// One tensor that does not fit the model in a strict conversion.
public struct TensorMismatch: Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable { case missing, unused, misshaped, wrongDType }
    public var kind: Kind
    /// Canonical name (for unused tensors: the name after mapping).
    public var name: String
    /// The name in the source file when it differs from `name`.
    public var sourceName: String?
    public var fileShape: [Int]?
    public var modelShape: [Int]?
    public var fileDType: String?

    public var description: String {
        let from = sourceName.map { " (file name \($0))" } ?? ""
        let file = fileShape.map(Tensor.shapeString) ?? "?"
        let model = modelShape.map(Tensor.shapeString) ?? "?"
        switch kind {
        case .missing: return "\(name): missing from file, model expects \(model)"
        case .unused: return "\(name)\(from): file has \(file), model has no such tensor"
        case .misshaped: return "\(name)\(from): file has \(file), model expects \(model)"
        case .wrongDType: return "\(name)\(from): file has \(fileDType ?? "?") \(file), model expects a floating-point tensor \(model)"
        }
    }
}

public enum ConvertError: Error, CustomStringConvertible, LocalizedError {
    /// The checkpoint holds no tensors.
    case noTensors
    /// No naming table explains the keys (or two explain them equally well).
    case namingUndetected(scores: [(naming: Naming, score: Double)], sampleKey: String)
    /// Two source keys map to the same canonical key.
    case duplicateKey(canonical: String, sources: [String])
    /// The architecture cannot be derived from the tensor shapes.
    case archUndetectable(String)
    /// A config that cannot describe a network.
    case invalidConfig([String])
    case unknownPreset(String, known: [String])
    /// Strict check failed: the offenders shown (at most 10), their total, the config, a hint.
    case mismatch(offenders: [TensorMismatch], total: Int, config: String, hint: String?)

    public var description: String {
        switch self {
        case .noTensors:
            return "the checkpoint holds no tensors"
        case let .namingUndetected(scores, sample):
            let list = scores.map { "\($0.naming.rawValue) \(String(format: "%.2f", $0.score))" }.joined(separator: ", ")
            return "cannot tell which naming scheme the tensor names follow (fraction of keys each scheme maps to a SlowFast key: \(list)); "
                + "sample key '\(sample)'. Pass --naming \(Naming.allCases.map(\.rawValue).joined(separator: "|"))."
        case let .duplicateKey(canonical, sources):
            return "tensors \(sources.map { "'\($0)'" }.joined(separator: " and ")) both map to '\(canonical)'"
        case let .archUndetectable(reason):
            return "cannot derive the architecture from the tensor shapes: \(reason). Pass --arch <preset or JSON>."
        case let .invalidConfig(problems):
            return "invalid architecture config: " + problems.joined(separator: "; ")
        case let .unknownPreset(name, known):
            return "unknown architecture preset '\(name)'; known: \(known.joined(separator: ", "))"
        case let .mismatch(offenders, total, config, hint):
            var lines = ["\(total) tensor\(total == 1 ? "" : "s") do\(total == 1 ? "es" : "") not fit the model (\(config)):"]
            lines += offenders.map { "  " + $0.description }
            if total > offenders.count { lines.append("  ... and \(total - offenders.count) more") }
            if let hint { lines.append("hint: " + hint) }
            lines.append("--allow-partial initializes missing or mis-shaped tensors fresh and drops unused ones.")
            return lines.joined(separator: "\n")
        }
    }

    public var errorDescription: String? { description }
}
