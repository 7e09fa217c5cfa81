// The `convert` job as a library call: read any supported file, map it to
// canonical weights, write the native file atomically with its provenance
// and per-tensor report. The CLI only parses arguments and prints.

import Families
import Foundation
import Formats

public let sfnetVersion = "0.1.0"

public struct ConvertRequest: Sendable {
    public var input: String
    public var output: String?
    /// Source format; nil = detect from content.
    public var from: SourceFormat?
    public var options: ConvertOptions
    public var force: Bool
    /// Tensors already read by another importer (ONNX); `input` is still the source file
    /// whose name, size and digest go into the provenance.
    public var preloaded: Checkpoint?
    /// Notes from that importer, recorded first in the report.
    public var importNotes: [String] = []

    public init(input: String, output: String? = nil, from: SourceFormat? = nil, options: ConvertOptions = ConvertOptions(), force: Bool = false) {
        self.input = input
        self.output = output
        self.from = from
        self.options = options
        self.force = force
    }
}

public struct ConvertSummary: Sendable {
    public var output: String
    public var sourceFormat: SourceFormat
    public var sourceSHA256: String
    public var result: ConversionResult
    public var checkpoint: Checkpoint
    public var bytesWritten: Int
    public var seconds: Double
}

public enum ConvertPipeline {
    /// `model.pyth` -> `model.safetensors`; a safetensors input gets `.sfnet.safetensors`.
    public static func defaultOutput(for input: String) -> String {
        let url = URL(fileURLWithPath: input)
        let base = url.deletingPathExtension()
        if url.pathExtension == "safetensors" { return base.path + ".sfnet.safetensors" }
        return base.path + ".safetensors"
    }

    /// Stages reported through `progress`: ("read", done, total), ("write", bytes, total).
    public static func run(_ request: ConvertRequest, progress: ((String, Int, Int) -> Void)? = nil) throws -> ConvertSummary {
        let start = Date()
        var req = request
        // A Hugging Face folder: config.json and its weights, read as one source.
        var folderFiles: [String]?
        if req.preloaded == nil, HuggingFaceFolder.looksLikeFolder(req.input) {
            let contents = try HuggingFaceFolder.read(folder: req.input)
            req.preloaded = contents.checkpoint
            req.options.hfConfig = contents.config
            req.importNotes += ["Hugging Face folder: " + contents.files.joined(separator: ", ")] + contents.notes
            folderFiles = contents.files
        }
        let output = req.output ?? defaultOutput(for: req.input)
        if FileManager.default.fileExists(atPath: output) {
            if !req.force { throw FormatError(.io, "output already exists; use --force to replace it", file: output) }
            if URL(fileURLWithPath: output).standardizedFileURL.path == URL(fileURLWithPath: req.input).standardizedFileURL.path {
                throw FormatError(.io, "output is the input file", file: output)
            }
        }
        // The source digest runs on the second core while the main thread reads and checks the file.
        let digest = DigestBox()
        let group = DispatchGroup()
        DispatchQueue.global().async(group: group) { [req, folderFiles] in
            do {
                if let folderFiles {
                    // A folder's digest: SHA-256 of its `sha256sum`-style listing (digest, two spaces, name, newline).
                    let listing = try folderFiles.map { "\(try SHA256.hex(file: req.input + "/" + $0))  \($0)\n" }.joined()
                    digest.value = .success(Array(listing.utf8).withUnsafeBytes { SHA256.hex($0) })
                } else {
                    digest.value = .success(try SHA256.hex(file: req.input))
                }
            } catch { digest.value = .failure(error) }
        }
        // Every way out waits for it: exiting while the digest thread is inside libcrypto
        // crashed the process (exit() tears libcrypto down under it) after a conversion error.
        defer { group.wait() }
        let profile = ProcessInfo.processInfo.environment["SFNET_PROFILE"] != nil
        func mark(_ what: String) { if profile { FileHandle.standardError.write(Data(String(format: "[profile] %-8@ %.3f s\n", what, Date().timeIntervalSince(start)).utf8)) } }
        // CRCs of stored entries are checked as each tensor is written, so the input is read once.
        let checkpoint = try req.preloaded ?? CheckpointReader.read(path: req.input, as: req.from, deferIntegrity: true)
        mark("read")
        progress?("read", checkpoint.tensors.count, checkpoint.tensors.count)
        var result: ConversionResult
        do {
            result = try convertTensors(checkpoint, options: req.options)
        } catch {
            // A corrupt file is reported as corrupt (a CRC mismatch), not by the conversion
            // problem its damage may have caused.
            do { try checkpoint.pendingChecks?.verifyAll() } catch let e as FormatError { throw e.inFile(req.input) }
            throw error
        }
        result.notes.insert(contentsOf: req.importNotes, at: 0)
        mark("convert")
        // The source digest is still being computed: write a fixed-size placeholder now and
        // patch the real digest into the header before the file is synced and published.
        let placeholder = String(repeating: "#", count: 64)

        func size(_ path: String) -> Int { (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0 }
        let fileSize = folderFiles.map { $0.reduce(0) { $0 + size(req.input + "/" + $1) } } ?? size(req.input)
        let source: JSONValue = .object([
            ("file", .string(URL(fileURLWithPath: req.input).lastPathComponent)),
            ("files", folderFiles.map { .array($0.map { .string($0) }) } ?? .null),
            ("bytes", .int(fileSize)),
            ("sha256", .string(placeholder)),
            ("format", .string(checkpoint.format.rawValue)),
            ("container", checkpoint.containerKey.map { .string($0) } ?? .null),
            ("stripped_prefix", checkpoint.strippedPrefix.map { .string($0) } ?? .null),
            ("naming", .string(result.naming.rawValue)),
            ("other_entries", .object(checkpoint.otherEntries.map { ($0.key, .string($0.summary)) })),
            ("aliases", .array(checkpoint.aliases.map { .array($0.map { .string($0) }) })),
            ("tool", .string("sfnet \(sfnetVersion)")),
        ])
        let metadata: [(String, String)] = try NativeMetadata.header(result.arch) + [
            (NativeMetadata.sourceKey, source.serialized),
            ("sfnet.report", try result.reportJSON()),
        ]
        let items = result.tensors.ordered.map { SafetensorsWriter.Item(name: $0.name, tensor: $0.tensor) }
        var sha = ""
        let pending = checkpoint.pendingChecks
        try SafetensorsWriter.write(items, metadata: metadata, to: output, overwrite: req.force, progress: { done, total in
            progress?("write", done, total)
        }, beforeEach: { item in
            do { try pending?.verify(covering: item.tensor.data) } catch let e as FormatError { throw e.inFile(req.input) }
        }, finish: { out, header in
            do { try pending?.verifyAll() } catch let e as FormatError { throw e.inFile(req.input) }
            mark("data")
            // Flush the data while the digest finishes on the other core; the patch below
            // then leaves a single dirty page for the final fsync.
            try out.sync()
            mark("sync")
            group.wait()
            sha = try digest.value!.get()
            mark("sha256")
            guard let at = Self.find(Array(placeholder.utf8), in: header) else {
                throw FormatError(.io, "internal error: digest placeholder missing from the header", file: output)
            }
            try Array(sha.utf8).withUnsafeBytes { try out.patch($0, at: 8 + at) }
        })
        mark("write")
        let written = (try? FileManager.default.attributesOfItem(atPath: output)[.size] as? Int) ?? 0
        return ConvertSummary(output: output, sourceFormat: checkpoint.format, sourceSHA256: sha, result: result,
                              checkpoint: checkpoint, bytesWritten: written, seconds: Date().timeIntervalSince(start))
    }
}

extension ConvertPipeline {
    static func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard needle.count <= haystack.count else { return nil }
        var found: Int?
        for i in 0 ... haystack.count - needle.count where haystack[i] == needle[0] && Array(haystack[i ..< i + needle.count]) == needle {
            if found != nil { return nil } // must be unique
            found = i
        }
        return found
    }
}

final class DigestBox: @unchecked Sendable {
    var value: Result<String, Error>?
}
