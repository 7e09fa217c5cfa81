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
    /// A boring-video reference (`sfnet.boring_video` {"frames": T}): the inputs are one image
    /// (`input.image`) repeated over T slow frames (and alpha*T fast ones), and the expected
    /// `activation.s5.pathway0` is the 2D network's res5 output for that image, to be matched
    /// by every frame (center inflation) or by the frames whose temporal receptive field stays
    /// inside the clip (mean inflation). Nil for ordinary references.
    public var boringVideoFrames: Int?

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
        var arch: ArchConfig?
        if let a = ck.metadataValue("sfnet.arch") {
            do { arch = try ArchConfig.fromJSON(a) } catch { throw VerifyError.badReference(path, "sfnet.arch is not a valid architecture: \(error)") }
        }
        if let boring = ck.metadataValue("sfnet.boring_video") {
            return try loadBoringVideo(ck, path: path, spec: boring, arch: arch)
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
        return Reference(path: path, sha256: try SHA256.hex(file: path), inputs: inputs, expected: expected,
                         arch: arch, producedBy: ck.metadataValue("sfnet.reference"))
    }
}

extension Reference {
    static let maxBoringFrames = 1024

    /// `input.image` [N, 3, H, W] repeated in time; `activation.s5.pathway0` [N, C, 1, h, w] kept as one frame.
    static func loadBoringVideo(_ ck: Checkpoint, path: String, spec: String, arch: ArchConfig?) throws -> Reference {
        guard let json = try? JSONParser.parse(spec), let frames = json["frames"]?.intValue, (1 ... maxBoringFrames).contains(frames) else {
            throw VerifyError.badReference(path, "sfnet.boring_video must be {\"frames\": T} with 1 <= T <= \(maxBoringFrames), is \(spec.prefix(80))")
        }
        guard let arch, arch.model != .resnet else {
            throw VerifyError.badReference(path, "a boring-video reference needs the 3D target's sfnet.arch (slowfast or slow)")
        }
        let names = Set(ck.tensors.names)
        guard names == ["input.image", "activation.s5.pathway0"] else {
            throw VerifyError.badReference(path, "a boring-video reference holds exactly input.image and activation.s5.pathway0, has \(names.sorted().joined(separator: ", "))")
        }
        for n in names where !ck.tensors[n]!.dtype.isFloatingPoint {
            throw VerifyError.badReference(path, "\(n) has dtype \(ck.tensors[n]!.dtype.shortName), expected floating point")
        }
        let image = floatTensorCopy(ck.tensors["input.image"]!)
        let res5 = floatTensorCopy(ck.tensors["activation.s5.pathway0"]!)
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
        return Reference(path: path, sha256: try SHA256.hex(file: path), inputs: inputs, expected: [("activation.s5.pathway0", res5)],
                         arch: arch, producedBy: ck.metadataValue("sfnet.reference"), boringVideoFrames: frames)
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
