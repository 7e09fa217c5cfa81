// safetensors (huggingface/safetensors format spec): an 8-byte little-endian
// header length, a JSON header, then the tensors' bytes back to back with no
// holes. The reader hands out slices of the mapped file (no copy); every
// offset is checked as the reference implementation's `validate` does.
// SECURITY.md 21-22.

import Foundation

public enum Safetensors {
    public static let maxHeaderBytes = 100_000_000

    public static func looksLikeSafetensors(_ b: Bytes) -> Bool {
        guard b.count >= 10 else { return false }
        let n = UInt64(littleEndian: b.raw.loadUnaligned(as: UInt64.self))
        return n >= 2 && n <= UInt64(b.count - 8) && b.raw[8] == UInt8(ascii: "{")
    }

    public static func read(_ bytes: Bytes) throws -> Checkpoint {
        guard bytes.count >= 8 else { throw FormatError.malformed("header length field truncated: the file has \(bytes.count) bytes") }
        let n64 = UInt64(littleEndian: bytes.raw.loadUnaligned(as: UInt64.self))
        guard n64 >= 2 else { throw FormatError.malformed("header length \(n64) is too small (at least 2 for '{}')", at: "offset 0") }
        guard n64 <= UInt64(maxHeaderBytes) else { throw FormatError.limit("header length \(n64) exceeds the 100 MB limit", at: "offset 0") }
        let n = Int(n64)
        guard n <= bytes.count - 8 else { throw FormatError.malformed("header length \(n) reaches beyond the end of the file (\(bytes.count) bytes)", at: "offset 0") }
        let headerBytes = UnsafeRawBufferPointer(rebasing: bytes.raw[8 ..< 8 + n])
        guard String(validating: headerBytes, as: UTF8.self) != nil else { throw FormatError.malformed("header is not valid UTF-8", at: "offset 8") }
        let header: JSONValue
        do { header = try JSONParser.parse(headerBytes) } catch let f as JSONParser.Failure {
            if f.message.hasPrefix("duplicate key") { throw FormatError.malformed("header has a \(f.message)", at: "header byte \(f.offset)") }
            throw FormatError.malformed("header is not valid JSON: \(f.message)", at: "header byte \(f.offset)")
        }
        guard case .object(let entries) = header else { throw FormatError.malformed("header JSON is not an object") }

        let dataStart = 8 + n
        let buffer = bytes.slice(dataStart, bytes.count - dataStart)
        var ckpt = Checkpoint(format: .safetensors)
        struct Span { let name: String; let begin: Int; let end: Int }
        var spans: [Span] = []
        var tensors: [(String, DType, [Int], Int, Int)] = []
        for (name, v) in entries {
            if name == "__metadata__" {
                guard case .object(let kv) = v else { throw FormatError.malformed("__metadata__ must be an object of strings", at: "key '__metadata__'") }
                for (k, x) in kv {
                    guard case .string(let s) = x else { throw FormatError.malformed("__metadata__ value for '\(k)' is not a string", at: "key '__metadata__'") }
                    ckpt.metadata.append((k, s))
                }
                continue
            }
            let at = "key '\(name)'"
            guard case .object = v, let dt = v["dtype"]?.stringValue else { throw FormatError.malformed("tensor entry has no dtype string", at: at) }
            guard let dtype = DType(rawValue: dt) else { throw FormatError(.unsupported, "unknown dtype '\(dt.prefix(20))'", at: at) }
            guard case .array(let dims)? = v["shape"] else { throw FormatError.malformed("tensor entry has no shape array", at: at) }
            let shape = try dims.map { d -> Int in
                guard let i = d.intValue, i >= 0 else { throw FormatError.malformed("shape must hold non-negative integers", at: at) }
                return i
            }
            guard case .array(let offs)? = v["data_offsets"], offs.count == 2, let b = offs[0].intValue, let e = offs[1].intValue, b >= 0, e >= 0 else {
                throw FormatError.malformed("data_offsets must be two non-negative integers", at: at)
            }
            guard b <= e else { throw FormatError.malformed("data_offsets [\(b), \(e)] are out of order", at: at) }
            let nbytes: Int
            do { nbytes = try Checked.product(shape, elementSize: dtype.size, "tensor bytes") } catch {
                throw FormatError.malformed("shape \(Tensor.shapeString(shape)) x \(dtype.shortName) overflows", at: at)
            }
            guard e - b == nbytes else {
                throw FormatError.malformed("data_offsets [\(b), \(e)] hold \(e - b) bytes, which does not match shape \(Tensor.shapeString(shape)) x \(dtype.shortName) = \(nbytes)", at: at)
            }
            guard e <= buffer.count else {
                throw FormatError.malformed("data_offsets [\(b), \(e)] reach beyond the data buffer of \(buffer.count) bytes", at: at)
            }
            spans.append(Span(name: name, begin: b, end: e))
            tensors.append((name, dtype, shape, b, e))
        }
        // The spec: tensors tile the buffer exactly, no holes, no overlaps.
        var cursor = 0
        for s in spans.sorted(by: { ($0.begin, $0.end) < ($1.begin, $1.end) }) {
            if s.begin < cursor { throw FormatError.malformed("offsets of '\(s.name)' overlap the previous tensor (begin \(s.begin) < \(cursor))") }
            if s.begin > cursor { throw FormatError.malformed("offsets leave a hole of \(s.begin - cursor) bytes before '\(s.name)'") }
            cursor = s.end
        }
        if cursor != buffer.count { throw FormatError.malformed("offsets leave \(buffer.count - cursor) bytes after the last tensor unused") }
        for (name, dtype, shape, b, e) in tensors {
            ckpt.tensors.set(name, Tensor(dtype: dtype, shape: shape, data: buffer.slice(b, e - b)))
        }
        ckpt.metadata.append(("data offset", String(dataStart)))
        return ckpt
    }
}

/// Streams tensors into a safetensors file, atomically.
public enum SafetensorsWriter {
    public struct Item {
        public let name: String
        public let tensor: Tensor
        /// Written as this dtype (floating tensors are cast chunk by chunk while writing).
        public let dtype: DType
        public init(name: String, tensor: Tensor, dtype: DType? = nil) {
            self.name = name
            self.tensor = tensor
            self.dtype = (dtype != nil && tensor.dtype.isFloatingPoint && dtype!.isFloatingPoint) ? dtype! : tensor.dtype
        }
    }

    /// The header bytes (padded with spaces so the data starts on a 64-byte boundary)
    /// and the order in which tensors are laid out: by element size, largest first,
    /// so every tensor starts at a multiple of its element size.
    public static func layout(_ items: [Item], metadata: [(String, String)]) -> (header: [UInt8], order: [Int]) {
        let order = items.indices.sorted { (items[$0].dtype.size, -$0) > (items[$1].dtype.size, -$1) }
        var offsets = [Int](repeating: 0, count: items.count)
        var cursor = 0
        for i in order {
            offsets[i] = cursor
            cursor += items[i].tensor.numel * items[i].dtype.size
        }
        var kv: [(String, JSONValue)] = []
        if !metadata.isEmpty { kv.append(("__metadata__", .object(metadata.map { ($0.0, .string($0.1)) }))) }
        for (i, it) in items.enumerated() {
            let nbytes = it.tensor.numel * it.dtype.size
            kv.append((it.name, .object([
                ("dtype", .string(it.dtype.rawValue)),
                ("shape", .array(it.tensor.shape.map { .int($0) })),
                ("data_offsets", .array([.int(offsets[i]), .int(offsets[i] + nbytes)])),
            ])))
        }
        var header = Array(JSONValue.object(kv).serialized.utf8)
        let pad = (64 - (8 + header.count) % 64) % 64
        header.append(contentsOf: [UInt8](repeating: 0x20, count: pad))
        return (header, order)
    }

    /// Writes `items` to `path` atomically (temp file, fsync, rename, fsync directory).
    /// `progress(bytesDone, bytesTotal)` is called as tensors are written; `beforeEach(item)` just
    /// before an item's bytes are written (e.g. to verify them); `finish(output, header)` after the
    /// last byte, before the file is synced and published (e.g. to patch fixed-size header fields).
    /// Any error from either leaves no file behind.
    public static func write(_ items: [Item], metadata: [(String, String)], to path: String, overwrite: Bool,
                             progress: ((Int, Int) -> Void)? = nil,
                             beforeEach: ((Item) throws -> Void)? = nil,
                             finish: ((AtomicFile.Output, [UInt8]) throws -> Void)? = nil) throws {
        var seen = Set<String>()
        for it in items where !seen.insert(it.name).inserted { throw FormatError.malformed("duplicate tensor name '\(it.name)'") }
        let (header, order) = layout(items, metadata: metadata)
        let total = items.reduce(0) { $0 + $1.tensor.numel * $1.dtype.size }
        try AtomicFile.write(to: path, overwrite: overwrite) { out in
            var len = UInt64(header.count).littleEndian
            try withUnsafeBytes(of: &len) { try out.write($0) }
            try header.withUnsafeBytes { try out.write($0) }
            var done = 0
            let chunkElements = 1 << 20
            var scratch: OwnedBuffer?
            for i in order {
                let it = items[i]
                try beforeEach?(it)
                if it.dtype == it.tensor.dtype {
                    try out.write(it.tensor.data)
                } else {
                    let n = it.tensor.numel
                    let buf = scratch ?? OwnedBuffer(count: chunkElements * 8)
                    scratch = buf
                    var start = 0
                    while start < n {
                        let m = min(chunkElements, n - start)
                        DTypeCast.convert(it.tensor.data.raw.baseAddress! + start * it.tensor.dtype.size, from: it.tensor.dtype,
                                          buf.pointer, to: it.dtype, count: m)
                        try out.write(UnsafeRawBufferPointer(start: buf.pointer, count: m * it.dtype.size))
                        start += m
                    }
                }
                if !AtomicFile.Output.kernelCopy { it.tensor.data.releasePages() }
                done += it.tensor.numel * it.dtype.size
                progress?(done, total)
            }
            try finish?(out, header)
        }
    }
}
