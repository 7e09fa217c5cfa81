// The `inspect` job as a library call: what a file is, what its container
// holds besides tensors, which naming and architecture its tensors match,
// and a table of tensors (with per-tensor SHA-256 for --json).

import Families
import Foundation
import Formats

public struct InspectReport {
    public var path: String
    public var fileSize: Int
    public var checkpoint: Checkpoint
    /// Detected naming, or why none was found.
    public var naming: Result<Naming, Error>
    /// Architecture: from `sfnet.arch` for native files, else derived from the shapes.
    public var arch: Result<ArchConfig, Error>
    public var archNotes: [String]
    /// A Hugging Face folder's files (config.json first) and what the folder reader noted; empty for a file.
    public var files: [String] = []
    public var folderNotes: [String] = []

    public var isNative: Bool { checkpoint.metadataValue(NativeMetadata.formatKey) != nil }

    /// Learnable parameters (BN running statistics and counters excluded), as PyTorch counts them.
    public var parameterCount: Int {
        checkpoint.tensors.ordered.reduce(0) { $0 + (ArchConfig.isLearnable($1.name) ? $1.tensor.numel : 0) }
    }

    /// Every element of every tensor.
    public var elementCount: Int { checkpoint.tensors.ordered.reduce(0) { $0 + $1.tensor.numel } }

    // MARK: text

    public func text() -> String {
        var lines: [String] = []
        let c = checkpoint
        lines.append("file:       \(path) (\(Self.size(fileSize)))")
        if !files.isEmpty { lines.append("folder:     Hugging Face model folder: " + (files + folderNotes).joined(separator: ", ")) }
        lines.append("format:     \(c.format.rawValue)\(isNative ? " (sfnet native, format \(c.metadataValue(NativeMetadata.formatKey)!))" : "")")
        if let k = c.containerKey { lines.append("container:  {\"\(k)\": <\(c.tensors.count) tensors>, ...}") }
        if let p = c.strippedPrefix { lines.append("prefix:     '\(p)' stripped from every tensor name") }
        for (k, v) in c.metadata where !k.hasPrefix("sfnet.") { lines.append("\(k + ":")\(String(repeating: " ", count: max(1, 11 - k.count)))\(v)") }
        if !c.otherEntries.isEmpty {
            lines.append("other entries:")
            for (k, v) in c.otherEntries { lines.append("  \(k): \(v)") }
        }
        switch naming {
        case .success(let n): lines.append("naming:     \(n.rawValue)")
        case .failure(let e): lines.append("naming:     not recognised (\(e))")
        }
        switch arch {
        case .success(let a):
            let kernels = a.temporalKernels.map { $0.map(String.init).joined(separator: "/") }.joined(separator: " ")
            if a.model == .x3d || a.model.isTransformer {
                lines.append("arch:       \(a.preset ?? "custom") — \(a.summary)")
            } else {
                lines.append("arch:       \(a.preset ?? "custom") — \(a.model.rawValue) R\(a.depth), width \(a.widthPerGroup), alpha \(a.alpha), beta_inv \(a.betaInv), fusion kernel \(a.fusionKernel), temporal kernels \(kernels), \(a.numClasses) classes")
            }
            for n in archNotes { lines.append("            note: \(n)") }
        case .failure(let e): lines.append("arch:       not recognised (\(e))")
        }
        if let s = c.metadataValue("sfnet.source"), let j = try? JSONParser.parse(s) {
            lines.append("source:     \(j["file"]?.stringValue ?? "?") (\(j["format"]?.stringValue ?? "?"), \(j["naming"]?.stringValue ?? "?") naming, sha256 \(j["sha256"]?.stringValue?.prefix(16) ?? "?")...)")
        }
        if let r = c.metadataValue("sfnet.report"), let j = try? JSONParser.parse(r), case .array(let ts)? = j["tensors"] {
            var tally: [String: Int] = [:]
            for t in ts { tally[(t["action"]?.stringValue ?? "?").components(separatedBy: " from ").first!, default: 0] += 1 }
            lines.append("report:     " + tally.sorted { $0.value > $1.value }.map { "\($0.value) \($0.key)" }.joined(separator: ", "))
        }
        if !c.aliases.isEmpty {
            lines.append("shared storages:")
            for g in c.aliases { lines.append("  " + g.joined(separator: ", ")) }
        }
        lines.append("tensors:    \(c.tensors.count), \(elementCount) values (\(parameterCount) learnable parameters), \(Self.size(c.tensors.ordered.reduce(0) { $0 + $1.tensor.byteCount }))")
        let w = min(max(c.tensors.names.map(\.count).max() ?? 4, 4), 60)
        lines.append("  " + "name".padding(toLength: w, withPad: " ", startingAt: 0) + "  dtype  shape                 bytes")
        for (n, t) in c.tensors.ordered {
            let shape = Tensor.shapeString(t.shape)
            var line = "  " + n.padding(toLength: max(w, n.count), withPad: " ", startingAt: 0) + "  " + t.dtype.shortName.padding(toLength: 5, withPad: " ", startingAt: 0)
            line += "  " + shape.padding(toLength: max(20, shape.count), withPad: " ", startingAt: 0) + "  \(t.byteCount)"
            if let note = c.notes[n] { line += "  (\(note))" }
            lines.append(line)
        }
        return lines.joined(separator: "\n")
    }

    static func size(_ n: Int) -> String {
        if n >= 1 << 20 { return String(format: "%.1f MB", Double(n) / 1_048_576) }
        if n >= 1 << 10 { return String(format: "%.1f KB", Double(n) / 1024) }
        return "\(n) bytes"
    }

    // MARK: JSON

    public func json() -> String {
        let c = checkpoint
        var meta: [(String, JSONValue)] = []
        for (k, v) in c.metadata {
            if k.hasPrefix("sfnet."), k != NativeMetadata.formatKey, let j = try? JSONParser.parse(v) { meta.append((k, j)) } else { meta.append((k, .string(v))) }
        }
        var archJSON: JSONValue = .null
        if case .success(let a) = arch, let s = try? a.jsonString(), let j = try? JSONParser.parse(s) { archJSON = j }
        var tensors: [JSONValue] = []
        for (n, t) in c.tensors.ordered {
            var kv: [(String, JSONValue)] = [("name", .string(n)), ("dtype", .string(t.dtype.shortName)),
                                             ("shape", .array(t.shape.map { .int($0) })), ("bytes", .int(t.byteCount)),
                                             ("sha256", .string(SHA256.hex(t.data.raw)))]
            if let note = c.notes[n] { kv.append(("note", .string(note))) }
            tensors.append(.object(kv))
            t.data.releasePages()
        }
        let v: JSONValue = .object([
            ("file", .string(path)),
            ("bytes", .int(fileSize)),
            ("files", files.isEmpty ? .null : .array(files.map { .string($0) })),
            ("format", .string(c.format.rawValue)),
            ("native", .bool(isNative)),
            ("container", c.containerKey.map { .string($0) } ?? .null),
            ("stripped_prefix", c.strippedPrefix.map { .string($0) } ?? .null),
            ("other_entries", .object(c.otherEntries.map { ($0.key, .string($0.summary)) })),
            ("metadata", .object(meta)),
            ("naming", (try? naming.get()).map { .string($0.rawValue) } ?? .null),
            ("naming_error", { if case .failure(let e) = naming { return .string("\(e)") }; return .null }()),
            ("arch", archJSON),
            ("arch_error", { if case .failure(let e) = arch { return .string("\(e)") }; return .null }()),
            ("arch_notes", .array(archNotes.map { .string($0) })),
            ("aliases", .array(c.aliases.map { .array($0.map { .string($0) }) })),
            ("parameters", .int(parameterCount)),
            ("elements", .int(elementCount)),
            ("tensors", .array(tensors)),
        ])
        return v.serialized
    }
}

public enum Inspector {
    /// `path` is a weights file, or a Hugging Face folder (config.json beside its weights) read as one source.
    public static func inspect(path: String, as format: SourceFormat? = nil) throws -> InspectReport {
        var folder: HuggingFaceFolder.Contents?
        if format == nil, HuggingFaceFolder.looksLikeFolder(path) { folder = try HuggingFaceFolder.read(folder: path) }
        let ckpt = try folder?.checkpoint ?? CheckpointReader.read(path: path, as: format)
        func size(_ p: String) -> Int { (try? FileManager.default.attributesOfItem(atPath: p)[.size] as? Int) ?? 0 }
        let fileSize = folder.map { $0.files.reduce(0) { $0 + size(path + "/" + $1) } } ?? size(path)
        var naming: Result<Naming, Error>
        var arch: Result<ArchConfig, Error>
        var notes: [String] = []
        // The video transformers' namings are told by their roots, not by SlowFast's scores.
        let transformerNaming = TransformerConvert.detectNaming(ckpt.tensors.names)
        if let a = ckpt.metadataValue(NativeMetadata.archKey) {
            naming = transformerNaming.map { .success($0) } ?? Result { try Naming.detect(ckpt.tensors.names) }
            arch = Result { try ArchConfig.fromJSON(a) }
        } else if let n = transformerNaming {
            naming = .success(n)
            do {
                if let config = folder?.config {
                    let (a, configNotes) = try TransformerConvert.architecture(fromHFConfig: config)
                    (arch, notes) = (.success(a), configNotes)
                } else {
                    var shapes: [String: [Int]] = [:]
                    for (name, t) in ckpt.tensors.ordered { shapes[n.canonicalName(name).name] = t.shape }
                    let d = try TransformerConvert.architecture(shapes: shapes, family: TransformerConvert.family(n, keys: ckpt.tensors.names),
                                                                naming: n)
                    (arch, notes) = (.success(d.arch), d.notes)
                }
            } catch { arch = .failure(error) }
        } else {
            naming = Result { try Naming.detect(ckpt.tensors.names) }
            if case .success(let n) = naming {
                var shapes: [String: [Int]] = [:]
                for (name, t) in ckpt.tensors.ordered {
                    var shape = t.shape
                    // 2D ImageNet sources: convert gives their 4-D kernels a unit time axis.
                    if n.is2D && shape.count == 4 { shape.insert(1, at: 2) }
                    shapes[n.canonicalName(name).name] = shape
                }
                do {
                    let d = try ArchDetect.detect(shapes: shapes)
                    arch = .success(d.config)
                    notes = d.notes
                } catch { arch = .failure(error) }
            } else {
                arch = .failure(FormatError(.unsupported, "no SlowFast/ResNet naming recognised"))
            }
        }
        var report = InspectReport(path: path, fileSize: fileSize, checkpoint: ckpt, naming: naming, arch: arch, archNotes: notes)
        if let folder { report.files = folder.files; report.folderNotes = folder.notes }
        return report
    }
}
