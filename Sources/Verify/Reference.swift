// A reference fixture: a safetensors file of inputs and the outputs PyTorch
// computed for them (`input.slow`/`input.fast` or `input.x`, `output.logits`,
// optional `activation.<stage>.<pathway>` and `activation.head.pool`).

import Convert
import Formats
import Foundation
import SlowFastNet

public struct Reference {
    public var path: String
    public var sha256: String
    /// One input per pathway, slow first.
    public var inputs: [FloatTensor]
    /// Expected outputs in execution order: activations first (stage order), then `output.logits`.
    public var expected: [(name: String, value: FloatTensor)]
    /// The architecture the reference was made with (`sfnet.arch`), if recorded.
    public var arch: ArchConfig?
    /// Who made it (`sfnet.reference`).
    public var producedBy: String?

    public static func load(path: String) throws -> Reference {
        let ck = try CheckpointReader.read(path: path)
        guard ck.format == .safetensors else {
            throw VerifyError.badReference(path, "a reference must be a safetensors file, this is \(ck.format.rawValue)")
        }
        func floatTensor(_ name: String) throws -> FloatTensor {
            let t = ck.tensors[name]!
            guard t.dtype.isFloatingPoint else { throw VerifyError.badReference(path, "\(name) has dtype \(t.dtype.shortName), expected floating point") }
            return floatTensorCopy(t)
        }
        var inputs: [FloatTensor] = []
        if ck.tensors["input.slow"] != nil || ck.tensors["input.fast"] != nil {
            guard ck.tensors["input.slow"] != nil, ck.tensors["input.fast"] != nil else {
                throw VerifyError.badReference(path, "has only one of input.slow / input.fast")
            }
            inputs = [try floatTensor("input.slow"), try floatTensor("input.fast")]
        } else if ck.tensors["input.x"] != nil {
            inputs = [try floatTensor("input.x")]
        } else {
            throw VerifyError.badReference(path, "holds no input.slow/input.fast or input.x")
        }
        guard ck.tensors["output.logits"] != nil else { throw VerifyError.badReference(path, "holds no output.logits") }
        var expected: [(String, FloatTensor)] = []
        let stageOrder = ["s1", "s2", "s3", "s4", "s5"].flatMap { s in (0 ..< 2).map { "activation.\(s).pathway\($0)" } } + ["activation.head.pool"]
        for name in stageOrder where ck.tensors[name] != nil { expected.append((name, try floatTensor(name))) }
        let unknown = ck.tensors.names.filter { !$0.hasPrefix("input.") && $0 != "output.logits" && !stageOrder.contains($0) }
        if !unknown.isEmpty { throw VerifyError.badReference(path, "unknown entries \(unknown.prefix(5).joined(separator: ", ")) (expected input.*, output.logits, activation.sN.pathwayP, activation.head.pool)") }
        expected.append(("output.logits", try floatTensor("output.logits")))
        var arch: ArchConfig?
        if let a = ck.metadataValue("sfnet.arch") {
            do { arch = try ArchConfig.fromJSON(a) } catch { throw VerifyError.badReference(path, "sfnet.arch is not a valid architecture: \(error)") }
        }
        return Reference(path: path, sha256: try SHA256.hex(file: path), inputs: inputs, expected: expected,
                         arch: arch, producedBy: ck.metadataValue("sfnet.reference"))
    }
}

/// A float32 copy of any floating-point tensor (alignment-safe).
func floatTensorCopy(_ t: Tensor) -> FloatTensor {
    let f = DTypeCast.cast(t, to: .f32)
    let out = FloatTensor(uninitialized: f.shape)
    withExtendedLifetime(f.data.owner) {
        if f.byteCount > 0, let src = f.data.raw.baseAddress {
            UnsafeMutableRawPointer(out.pointer).copyMemory(from: src, byteCount: f.byteCount)
        }
    }
    return out
}

public enum VerifyError: Error, CustomStringConvertible, LocalizedError {
    case badReference(String, String)
    case weights(String, String)

    public var description: String {
        switch self {
        case .badReference(let p, let m): return "\(p): \(m)"
        case .weights(let p, let m): return "\(p): \(m)"
        }
    }
    public var errorDescription: String? { description }
}
