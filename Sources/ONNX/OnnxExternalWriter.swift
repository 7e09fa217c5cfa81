// `sfnet export --to onnx --external-data`: initializers of 1 KiB and more moved to
// one data file beside the model (onnx's convert_model_to_external_data threshold),
// each at a 4096-byte aligned offset so readers can map them. The file is named
// after the model and its content (`model.onnx.<12 hex of SHA-256>.data`): a new
// export never overwrites the data an existing model still points at, so a crash
// between the two atomic renames leaves the old pair or the new pair, never a mix.

import Foundation
import Formats

enum OnnxExternalWriter {
    static let alignment = 4096
    static let threshold = 1024

    /// Lays out the large initializers, writes the data file atomically, and marks
    /// those initializers external. Returns the data file's path and size.
    static func write(_ model: inout OnnxModel, beside modelPath: String) throws -> (path: String, bytes: Int) {
        var offset = 0
        var placed: [(index: Int, offset: Int)] = []
        for (i, t) in model.initializers.enumerated() where t.rawData.count >= threshold {
            offset = (offset + alignment - 1) / alignment * alignment
            placed.append((i, offset))
            offset += t.rawData.count
        }
        let total = offset
        // The name depends on the content: hash exactly the bytes the file will hold.
        let sha = SHA256()
        var written = 0
        func emit(_ body: (UnsafeRawBufferPointer) throws -> Void) rethrows {
            let zeros = [UInt8](repeating: 0, count: alignment)
            for p in placed {
                if p.offset > written {
                    try zeros.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[0 ..< (p.offset - written)])) }
                }
                let raw = model.initializers[p.index].rawData.raw
                try body(raw)
                written = p.offset + raw.count
            }
        }
        emit { sha.update($0) }
        let name = URL(fileURLWithPath: modelPath).lastPathComponent + "." + sha.finalize().prefix(12) + ".data"
        let path = URL(fileURLWithPath: modelPath).deletingLastPathComponent().appendingPathComponent(name).path
        written = 0
        // Same name means same bytes: replacing an identical file is harmless.
        try AtomicFile.write(to: path, overwrite: true) { out in try emit { try out.write($0) } }
        for p in placed {
            model.initializers[p.index].external = OnnxExternalLocation(
                location: name, offset: p.offset, length: model.initializers[p.index].rawData.count)
        }
        return (path, total)
    }

    /// After the new model is in place: removes earlier `<model>.<12 hex>.data` siblings
    /// (data of models this path held before), and nothing else.
    static func removeStaleDataFiles(beside modelPath: String, keeping kept: String) {
        let url = URL(fileURLWithPath: modelPath)
        let dir = url.deletingLastPathComponent().path
        let prefix = url.lastPathComponent + "."
        let keptName = URL(fileURLWithPath: kept).lastPathComponent
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return }
        for n in names where n != keptName && n.hasPrefix(prefix) && n.hasSuffix(".data") {
            let middle = n.dropFirst(prefix.count).dropLast(".data".count)
            guard middle.count == 12, middle.allSatisfy({ $0.isHexDigit && !$0.isUppercase }) else { continue }
            try? FileManager.default.removeItem(atPath: dir + "/" + n)
        }
    }
}
