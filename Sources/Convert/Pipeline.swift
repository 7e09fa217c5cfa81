// The `convert` job as a library call: read any supported file, map it to
// canonical weights, write the native file atomically with its provenance
// and per-tensor report. The CLI only parses arguments and prints.

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
    public static func run(_ req: ConvertRequest, progress: ((String, Int, Int) -> Void)? = nil) throws -> ConvertSummary {
        let start = Date()
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
        DispatchQueue.global().async(group: group) {
            do { digest.value = .success(try SHA256.hex(file: req.input)) } catch { digest.value = .failure(error) }
        }
        let checkpoint: Checkpoint
        do {
            checkpoint = try CheckpointReader.read(path: req.input, as: req.from)
        } catch {
            group.wait()
            throw error
        }
        progress?("read", checkpoint.tensors.count, checkpoint.tensors.count)
        let result = try convertTensors(checkpoint, options: req.options)
        group.wait()
        let sha = try digest.value!.get()

        let fileSize = (try? FileManager.default.attributesOfItem(atPath: req.input)[.size] as? Int) ?? 0
        let source: JSONValue = .object([
            ("file", .string(URL(fileURLWithPath: req.input).lastPathComponent)),
            ("bytes", .int(fileSize)),
            ("sha256", .string(sha)),
            ("format", .string(checkpoint.format.rawValue)),
            ("container", checkpoint.containerKey.map { .string($0) } ?? .null),
            ("stripped_prefix", checkpoint.strippedPrefix.map { .string($0) } ?? .null),
            ("naming", .string(result.naming.rawValue)),
            ("other_entries", .object(checkpoint.otherEntries.map { ($0.key, .string($0.summary)) })),
            ("aliases", .array(checkpoint.aliases.map { .array($0.map { .string($0) }) })),
            ("tool", .string("sfnet \(sfnetVersion)")),
        ])
        let metadata: [(String, String)] = [
            ("sfnet.format", "1"),
            ("sfnet.arch", try result.arch.jsonString()),
            ("sfnet.naming", "pyslowfast"),
            ("sfnet.source", source.serialized),
            ("sfnet.report", try result.reportJSON()),
        ]
        let items = result.tensors.ordered.map { SafetensorsWriter.Item(name: $0.name, tensor: $0.tensor) }
        try SafetensorsWriter.write(items, metadata: metadata, to: output, overwrite: req.force) { done, total in
            progress?("write", done, total)
        }
        let written = (try? FileManager.default.attributesOfItem(atPath: output)[.size] as? Int) ?? 0
        return ConvertSummary(output: output, sourceFormat: checkpoint.format, sourceSHA256: sha, result: result,
                              checkpoint: checkpoint, bytesWritten: written, seconds: Date().timeIntervalSince(start))
    }
}

final class DigestBox: @unchecked Sendable {
    var value: Result<String, Error>?
}
