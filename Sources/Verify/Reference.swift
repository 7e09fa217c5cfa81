// A reference fixture: a safetensors file of inputs and the outputs PyTorch
// computed for them: `input.slow`/`input.fast` or `input.x`, plus any non-empty
// subset of `output.logits`, `activation.<stage>.<pathway>` and
// `activation.head.pool`, in float32, float16/bfloat16 or float64 (kept as
// float64 and compared in double precision). `sfnet.arch` is optional: the
// weights carry one (see Verifier.resolveArch).

import Families
import Convert
import Formats
import Foundation
import Networks

/// One output a reference expects: a float32 copy for every consumer, and the float64
/// values themselves when the reference stores float64 (compared without rounding).
public struct ExpectedOutput {
    public var name: String
    public var value: FloatTensor
    public var float64: [Double]?
    /// The dtype the reference stores it in.
    public var dtype: DType

    public init(name: String, tensor t: Formats.Tensor) {
        (self.name, value, dtype) = (name, floatTensorCopy(t), t.dtype)
        if t.dtype == .f64 { float64 = float64Values(t) }
    }

    public init(name: String, value: FloatTensor) {
        (self.name, self.value, dtype) = (name, value, .f32)
    }

    /// The expected values in double precision (float64 ones as stored).
    public var doubles: [Double] { float64 ?? value.values.map(Double.init) }
}

public struct Reference {
    public var path: String
    public var sha256: String
    /// One input per pathway, slow first.
    public var inputs: [FloatTensor]
    /// Expected outputs in execution order: activations first (stage order), then `output.logits` if present.
    public var expected: [ExpectedOutput]
    /// The architecture the reference was made with (`sfnet.arch`), if recorded.
    public var arch: ArchConfig?
    /// Who made it (`sfnet.reference`).
    public var producedBy: String?
    /// A boring-video reference (`sfnet.boring_video` {"frames": T}): the inputs are one image
    /// (`input.image`) repeated over T slow frames (and alpha*T fast ones), and the expected
    /// `activation.s5.pathway0` is the 2D network's res5 output for that image, to be matched
    /// by every frame (center inflation) or by the frames whose temporal receptive field stays
    /// inside the clip (mean inflation). Nil for ordinary references.
    public var boringVideoFrames: Int?

    /// The outputs an inference reference may hold, in execution order.
    static let outputNames = ["s1", "s2", "s3", "s4", "s5"].flatMap { s in (0 ..< 2).map { "activation.\(s).pathway\($0)" } }
        + ["activation.head.pool", "output.logits"]
    /// A transformer's outputs: the embedded tokens, each layer's tokens, what the classifier reads, the logits.
    static func transformerOutputNames(layers: Int) -> [String] {
        ["activation.embeddings"] + (0 ..< layers).map { "activation.layer.\($0)" } + ["activation.pooled", "output.logits"]
    }
    static let acceptedNames = "input.slow + input.fast or input.x, and at least one of output.logits, activation.sN.pathwayP "
        + "(N 1-5, P 0-1), activation.head.pool (a train step adds target + output.loss or grad_output.logits, and grad.*)"

    /// Loads a reference. `arch` is the architecture the check runs (the reference's or the
    /// weights'); a boring-video reference needs it to build the clip, others ignore it.
    public static func load(path: String, arch resolved: ArchConfig? = nil) throws -> Reference {
        let ck = try CheckpointReader.read(path: path)
        guard ck.format == .safetensors else {
            throw VerifyError.badReference(path, "a reference must be a safetensors file, this is \(ck.format.rawValue)")
        }
        func checkFloat(_ name: String) throws -> Formats.Tensor {
            let t = ck.tensors[name]!
            guard t.dtype.isFloatingPoint else { throw VerifyError.badReference(path, "\(name) has dtype \(t.dtype.shortName), expected floating point") }
            return t
        }
        let arch: ArchConfig?
        do { arch = try NativeMetadata.architecture(in: ck) } catch {
            throw VerifyError.badReference(path, "\(NativeMetadata.archKey) is not a valid architecture: \(error)")
        }
        if let boring = ck.metadataValue("sfnet.boring_video") {
            return try loadBoringVideo(ck, path: path, spec: boring, arch: arch, resolved: resolved ?? arch)
        }
        var inputs: [FloatTensor] = []
        if ck.tensors["input.slow"] != nil || ck.tensors["input.fast"] != nil {
            guard ck.tensors["input.slow"] != nil, ck.tensors["input.fast"] != nil else {
                throw VerifyError.badReference(path, "has only one of input.slow / input.fast")
            }
            inputs = [floatTensorCopy(try checkFloat("input.slow")), floatTensorCopy(try checkFloat("input.fast"))]
        } else if ck.tensors["input.x"] != nil {
            inputs = [floatTensorCopy(try checkFloat("input.x"))]
        } else {
            throw VerifyError.badReference(path, "holds no input.slow/input.fast or input.x (expected \(acceptedNames))")
        }
        let inputNames: Set<String> = ["input.slow", "input.fast", "input.x"]
        let outputNames = (resolved ?? arch).flatMap { $0.transformer }.map { Self.transformerOutputNames(layers: $0.layers) } ?? Self.outputNames
        let unknown = ck.tensors.names.filter { !inputNames.contains($0) && !outputNames.contains($0) }
        if !unknown.isEmpty {
            let hint = unknown.contains("input.image") ? "; input.image needs sfnet.boring_video metadata" : ""
            throw VerifyError.badReference(path, "unknown entries \(unknown.prefix(5).joined(separator: ", ")) (expected \(acceptedNames))\(hint)")
        }
        let expected = try outputNames.filter { ck.tensors[$0] != nil }.map { ExpectedOutput(name: $0, tensor: try checkFloat($0)) }
        if expected.isEmpty {
            throw VerifyError.badReference(path, "holds inputs but no output to compare (expected \(acceptedNames))")
        }
        return Reference(path: path, sha256: try SHA256.hex(file: path), inputs: inputs, expected: expected,
                         arch: arch, producedBy: ck.metadataValue("sfnet.reference"))
    }

    /// The dtypes the expected outputs are stored in ("float32", "float64", "float16, float32").
    public var dtypeDescription: String { Reference.describe(expected.map(\.dtype)) }

    static func describe(_ dtypes: [DType]) -> String {
        let names: [DType: String] = [.f64: "float64", .f32: "float32", .f16: "float16", .bf16: "bfloat16"]
        return Set(dtypes).map { names[$0] ?? $0.shortName }.sorted().joined(separator: ", ")
    }
}

extension Reference {
    static let maxBoringFrames = 1024

    /// `input.image` [N, 3, H, W] repeated in time; `activation.s5.pathway0` [N, C, 1, h, w] kept as one frame.
    static func loadBoringVideo(_ ck: Checkpoint, path: String, spec: String, arch own: ArchConfig?, resolved: ArchConfig?) throws -> Reference {
        guard let json = try? JSONParser.parse(spec), let frames = json["frames"]?.intValue, (1 ... maxBoringFrames).contains(frames) else {
            throw VerifyError.badReference(path, "sfnet.boring_video must be {\"frames\": T} with 1 <= T <= \(maxBoringFrames), is \(spec.prefix(80))")
        }
        guard let arch = resolved, arch.model != .resnet else {
            throw VerifyError.badReference(path, resolved == nil
                ? "a boring-video reference needs the 3D target's architecture: sfnet.arch in the reference or the weights"
                : "a boring-video reference checks a 3D network (slowfast or slow), the architecture is a 2D resnet")
        }
        let names = Set(ck.tensors.names)
        guard names == ["input.image", "activation.s5.pathway0"] else {
            throw VerifyError.badReference(path, "a boring-video reference holds exactly input.image and activation.s5.pathway0, has \(names.sorted().joined(separator: ", "))")
        }
        for n in names where !ck.tensors[n]!.dtype.isFloatingPoint {
            throw VerifyError.badReference(path, "\(n) has dtype \(ck.tensors[n]!.dtype.shortName), expected floating point")
        }
        let image = floatTensorCopy(ck.tensors["input.image"]!)
        let expected = ExpectedOutput(name: "activation.s5.pathway0", tensor: ck.tensors["activation.s5.pathway0"]!)
        let res5 = expected.value
        guard image.shape.count == 4, image.shape[1] == 3, res5.shape.count == 5, res5.shape[2] == 1, res5.shape[0] == image.shape[0] else {
            throw VerifyError.badReference(path, "input.image must be [N, 3, H, W] and activation.s5.pathway0 [N, C, 1, h, w]; are \(image.shape) and \(res5.shape)")
        }
        func clip(_ t: Int) -> FloatTensor {
            let (n, c, plane) = (image.shape[0], 3, image.shape[2] * image.shape[3])
            let x = FloatTensor(uninitialized: [n, c, t, image.shape[2], image.shape[3]])
            for b in 0 ..< n { for ch in 0 ..< c { for f in 0 ..< t {
                (x.pointer + ((b * c + ch) * t + f) * plane).update(from: image.pointer + (b * c + ch) * plane, count: plane)
            } } }
            return x
        }
        let inputs = arch.model == .slowfast ? [clip(frames), clip(frames * arch.alpha)] : [clip(frames)]
        return Reference(path: path, sha256: try SHA256.hex(file: path), inputs: inputs, expected: [expected],
                         arch: own, producedBy: ck.metadataValue("sfnet.reference"), boringVideoFrames: frames)
    }
}

/// The values of a float64 tensor (alignment-safe).
func float64Values(_ t: Formats.Tensor) -> [Double] {
    precondition(t.dtype == .f64)
    return withExtendedLifetime(t.data.owner) {
        (0 ..< t.numel).map { Double(bitPattern: UInt64(littleEndian: t.data.raw.loadUnaligned(fromByteOffset: $0 * 8, as: UInt64.self))) }
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
    /// The reference's and the weights' sfnet.arch differ in a field that changes the computation.
    case archMismatch(reference: String, weights: String, String)

    public var description: String {
        switch self {
        case .badReference(let p, let m): return "\(p): \(m)"
        case .weights(let p, let m): return "\(p): \(m)"
        case .archMismatch(let r, let w, let m): return "\(r) vs \(w): \(m)"
        }
    }
    public var errorDescription: String? { description }
}
