// The bodies of sfnet's fuzz targets (issue 8): each takes arbitrary bytes through one
// parser the way sfnet would meet them in a file, and reports whether they were
// accepted or refused with one of sfnet's typed errors. Anything else — a crash, a
// hang, an untyped error — is a bug: the libFuzzer executables in Fuzz/ trap on it,
// and FuzzReplayTests replays every input kept under Fuzz/regressions/ in `make test`.

import Convert
import Foundation
import Formats
import ONNX

public enum FuzzOutcome: Equatable, Sendable {
    case accepted
    /// Refused with a typed sfnet error (its description).
    case refused(String)
    /// An error sfnet should never throw for bad input (not a FormatError/ConvertError).
    case untyped(String)
}

public enum FuzzTargets {
    public typealias Body = @Sendable (UnsafeRawBufferPointer) -> FuzzOutcome

    /// Every target by name (the executable is Fuzz<Name>, the regression folder Fuzz/regressions/<name>).
    public static let all: [(name: String, body: Body)] = [
        ("pickle", pickle), ("zip", zip), ("torch", torch), ("safetensors", safetensors),
        ("npy", npy), ("onnx", onnx), ("onnx-external", onnxExternal), ("caffe2", caffe2),
        // text formats (TextTargets.swift)
        ("json", json), ("hf-config", hfConfig), ("yaml", yaml), ("pyslowfast-config", pyslowfastConfig), ("xlsx", xlsx), ("csv", csv),
        ("frame-list", frameList),
    ]

    public static func body(named name: String) -> Body? { all.first { $0.name == name }?.body }

    static func run(_ f: () throws -> Void) -> FuzzOutcome {
        do {
            try f()
            return .accepted
        } catch let e as FormatError {
            return .refused(e.description)
        } catch let e as ConvertError {
            return .refused(e.description)
        } catch {
            return .untyped("\(type(of: error)): \(error)")
        }
    }

    static func bytes(_ raw: UnsafeRawBufferPointer) -> Bytes { Bytes.copying(Array(raw)) }

    /// The pickle VM alone: load, structure walk, teardown.
    public static let pickle: Body = { raw in
        run {
            let vm = PickleVM(bytes(raw))
            defer { vm.dispose() }
            let root = try vm.load()
            try vm.checkStructure(root)
        }
    }

    /// The zip reader: directory, every entry read with its CRC checked.
    public static let zip: Body = { raw in
        run {
            let z = try ZipArchive(bytes(raw))
            for e in z.entries { _ = try z.read(e) }
        }
    }

    /// A PyTorch checkpoint as a whole (format detected by content: zip, legacy, pickle).
    public static let torch: Body = { raw in
        run { _ = try CheckpointReader.read(bytes: bytes(raw)) }
    }

    public static let safetensors: Body = { raw in
        run { _ = try CheckpointReader.read(bytes: bytes(raw), as: .safetensors) }
    }

    /// .npy, or .npz when the bytes are a zip.
    public static let npy: Body = { raw in
        run {
            let b = bytes(raw)
            _ = try CheckpointReader.read(bytes: b, as: ZipArchive.looksLikeZip(b) ? .npz : .npy)
        }
    }

    /// ModelProto parse (with the nesting check) and the graph-based mapping to canonical names.
    public static let onnx: Body = { raw in
        run { _ = try OnnxImport.importModel(try OnnxModel.parse(raw, file: "fuzz.onnx"), file: "fuzz.onnx") }
    }

    /// External-data resolution: the model sits in a folder with one 64 KiB data file
    /// (`weights.bin`), a subfolder and a symlink pointing out of it.
    public static let onnxExternal: Body = { raw in
        run { _ = try OnnxImport.read(bytes: raw, modelPath: ExternalSandbox.shared.modelPath) }
    }

    /// A Caffe2 / Detectron `.pkl`: read as a pickle, then mapped with the caffe2 key table.
    public static let caffe2: Body = { raw in
        run {
            let ck = try CheckpointReader.read(bytes: bytes(raw), as: .pickle)
            guard ck.tensors.count > 0 else { return }
            _ = try convertTensors(ck, options: ConvertOptions(naming: .caffe2, allowPartial: true))
        }
    }
}

/// The folder the onnx-external target resolves locations in (made once per process).
final class ExternalSandbox: @unchecked Sendable {
    static let shared = ExternalSandbox()
    let modelPath: String

    init() {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sfnet-fuzz-external-\(getpid())")
        try? FileManager.default.createDirectory(at: dir.appendingPathComponent("sub"), withIntermediateDirectories: true)
        var data = [UInt8](repeating: 0, count: 65536)
        for i in data.indices { data[i] = UInt8(truncatingIfNeeded: i &* 2654435761 >> 13) }
        FileManager.default.createFile(atPath: dir.appendingPathComponent("weights.bin").path, contents: Data(data))
        FileManager.default.createFile(atPath: dir.appendingPathComponent("sub/inner.bin").path, contents: Data(data.prefix(1024)))
        try? FileManager.default.createSymbolicLink(atPath: dir.appendingPathComponent("escape.bin").path, withDestinationPath: "/etc/hostname")
        modelPath = dir.appendingPathComponent("model.onnx").path
    }
}
