// PyTorch zip checkpoints as torch.save (torch 2.x, PyTorchStreamWriter) lays
// them out: `<prefix>/data.pkl` (pickle protocol 2), `.format_version`,
// `.storage_alignment`, `byteorder`, one stored entry per storage at
// `<prefix>/data/<key>` whose bytes start on a 64-byte boundary (padded with
// an "FB" extra field, as torch does), `version`, `.data/serialization_id`,
// the central directory and, always, the zip64 end records. Storage bytes are
// streamed from their source (a mapped file is copied by the kernel), and the
// file is published atomically.

import Foundation

public enum TorchWriter {
    public static let alignment = 64

    /// Storages for a set of tensors: one storage per distinct tensor buffer (tensors
    /// over the very same bytes share one storage, so aliasing survives), keys "0", "1", ...
    public struct Storages {
        public private(set) var items: [(storage: PickleWriter.Storage, data: Bytes)] = []
        private var byBuffer: [BufferKey: PickleWriter.Storage] = [:]

        struct BufferKey: Hashable { let address: Int; let count: Int; let dtype: DType }

        public init() {}

        /// The pickle value of `tensor`, a contiguous view on its storage.
        public mutating func value(_ tensor: Tensor) throws -> PickleWriter.Value {
            guard PickleWriter.storageClass(tensor.dtype) != nil else {
                throw FormatError(.unsupported, "torch has no storage class for dtype \(tensor.dtype.shortName)")
            }
            let expected = try Checked.mul(tensor.numel, tensor.dtype.size, "tensor bytes")
            guard tensor.byteCount == expected else {
                throw FormatError.malformed("tensor of shape \(Tensor.shapeString(tensor.shape)) x \(tensor.dtype.shortName) holds \(tensor.byteCount) bytes, expected \(expected)")
            }
            let key = BufferKey(address: Int(bitPattern: tensor.data.raw.baseAddress), count: tensor.byteCount, dtype: tensor.dtype)
            let storage: PickleWriter.Storage
            if tensor.byteCount > 0, let s = byBuffer[key] {
                storage = s
            } else {
                storage = PickleWriter.Storage(key: String(items.count), dtype: tensor.dtype, numel: tensor.numel)
                items.append((storage, tensor.data))
                if tensor.byteCount > 0 { byBuffer[key] = storage }
            }
            return .tensor(storage, shape: tensor.shape)
        }
    }

    /// The archive prefix torch uses for `path`: the file name without its extension.
    public static func prefix(for path: String) -> String {
        let stem = URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent
        let safe = !stem.isEmpty && !stem.hasPrefix(".") && !stem.contains("/") && !stem.contains("\\") && stem != ".."
        return safe ? stem : "archive"
    }

    /// Writes `root` (whose tensors name the storages in `storages`) to `path` atomically.
    /// Refuses an existing `path` unless `overwrite`.
    public static func write(_ root: PickleWriter.Value, storages: Storages, to path: String, overwrite: Bool,
                             prefix: String? = nil) throws {
        try write(root, storages: storages, to: path, overwrite: overwrite, prefix: prefix, zip64Threshold: ZipWriter.max32)
    }

    /// `zip64Threshold`: sizes and offsets from this value up get zip64 fields (tests lower it).
    static func write(_ root: PickleWriter.Value, storages: Storages, to path: String, overwrite: Bool,
                      prefix: String?, zip64Threshold: Int) throws {
        let pkl = try PickleWriter.serialize(root)
        let prefix = prefix ?? Self.prefix(for: path)
        try ZipArchive.checkName(prefix + "/data.pkl", at: "archive prefix '\(prefix)'")
        var seen = Set<String>()
        for (s, _) in storages.items where !seen.insert(s.key).inserted {
            throw FormatError.malformed("duplicate storage key '\(s.key)'")
        }
        let serialID = (0 ..< 40).map { _ in String(Int.random(in: 0 ... 9)) }.joined()
        try AtomicFile.write(to: path, overwrite: overwrite) { out in
            var zip = ZipWriter(out: out)
            zip.zip64Threshold = zip64Threshold
            try zip.add(prefix + "/data.pkl", Bytes.copying(pkl))
            try zip.add(prefix + "/.format_version", Bytes.copying(Array("1".utf8)))
            try zip.add(prefix + "/.storage_alignment", Bytes.copying(Array(String(alignment).utf8)))
            try zip.add(prefix + "/byteorder", Bytes.copying(Array("little".utf8)))
            for (s, data) in storages.items {
                try zip.add(prefix + "/data/" + s.key, data)
            }
            try zip.add(prefix + "/version", Bytes.copying(Array("3\n".utf8)))
            try zip.add(prefix + "/.data/serialization_id", Bytes.copying(Array(serialID.utf8)))
            try zip.finish()
        }
    }
}

/// A zip writer for stored (uncompressed) entries with 64-byte aligned data.
struct ZipWriter {
    let out: AtomicFile.Output
    struct Record { let name: [UInt8]; let crc: UInt32; let size: Int; let offset: Int }
    var records: [Record] = []
    var zip64Threshold = max32

    init(out: AtomicFile.Output) { self.out = out }

    static let max32 = 0xFFFF_FFFF

    func bytes(_ b: [UInt8]) throws { try b.withUnsafeBytes { try out.write($0) } }

    mutating func add(_ name: String, _ data: Bytes) throws {
        let nameBytes = Array(name.utf8)
        guard nameBytes.count <= 0xFFFF else { throw FormatError.malformed("zip entry name too long", at: "entry '\(name)'") }
        let crc = withExtendedLifetime(data) { ZipArchive.crc32(data.raw) }
        let size = data.count
        let offset = out.written
        let zip64 = size >= zip64Threshold
        var h = Le()
        h.u32(0x04034b50)
        h.u16(zip64 ? 45 : 20)      // version needed
        h.u16(0x0800)               // names are UTF-8
        h.u16(0)                    // stored
        h.u16(0); h.u16(0x21)       // time, date: 1980-01-01 00:00
        h.u32(crc)
        h.u32(zip64 ? Self.max32 : size)
        h.u32(zip64 ? Self.max32 : size)
        h.u16(nameBytes.count)
        var extra = Le()
        if zip64 { extra.u16(1); extra.u16(16); extra.u64(size); extra.u64(size) }
        // Pad with an "FB" field so the data starts on a 64-byte boundary (torch's layout).
        let before = offset + 30 + nameBytes.count + extra.b.count
        let pad = (TorchWriter.alignment - (before + 4) % TorchWriter.alignment) % TorchWriter.alignment
        extra.u16(0x4246); extra.u16(pad)
        extra.b += [UInt8](repeating: 0x5A, count: pad)
        h.u16(extra.b.count)
        try bytes(h.b + nameBytes + extra.b)
        precondition(out.written % TorchWriter.alignment == 0)
        try out.write(data)
        records.append(Record(name: nameBytes, crc: crc, size: size, offset: offset))
    }

    mutating func finish() throws {
        let cdOffset = out.written
        var cd = Le()
        for r in records {
            let bigSize = r.size >= zip64Threshold, bigOffset = r.offset >= zip64Threshold
            var extra = Le()
            if bigSize || bigOffset {
                extra.u16(1)
                extra.u16((bigSize ? 16 : 0) + (bigOffset ? 8 : 0))
                if bigSize { extra.u64(r.size); extra.u64(r.size) }
                if bigOffset { extra.u64(r.offset) }
            }
            cd.u32(0x02014b50)
            cd.u16(0x031E)                          // made by: Unix, 3.0
            cd.u16(bigSize || bigOffset ? 45 : 20)
            cd.u16(0x0800); cd.u16(0)
            cd.u16(0); cd.u16(0x21)
            cd.u32(r.crc)
            cd.u32(bigSize ? Self.max32 : r.size)
            cd.u32(bigSize ? Self.max32 : r.size)
            cd.u16(r.name.count); cd.u16(extra.b.count); cd.u16(0)
            cd.u16(0); cd.u16(0); cd.u32(0)         // disk, internal, external attributes
            cd.u32(bigOffset ? Self.max32 : r.offset)
            cd.b += r.name + extra.b
        }
        try bytes(cd.b)
        let cdSize = cd.b.count
        let zip64Offset = out.written
        var end = Le()
        // zip64 end of central directory record and locator (torch always writes them).
        end.u32(0x06064b50); end.u64(44); end.u16(0x031E); end.u16(45); end.u32(0); end.u32(0)
        end.u64(records.count); end.u64(records.count); end.u64(cdSize); end.u64(cdOffset)
        end.u32(0x07064b50); end.u32(0); end.u64(zip64Offset); end.u32(1)
        // end of central directory
        let count16 = min(records.count, 0xFFFF)
        end.u32(0x06054b50); end.u16(0); end.u16(0); end.u16(count16); end.u16(count16)
        end.u32(min(cdSize, Self.max32)); end.u32(min(cdOffset, Self.max32)); end.u16(0)
        try bytes(end.b)
    }
}

/// Little-endian field builder.
struct Le {
    var b: [UInt8] = []
    mutating func u16(_ v: Int) { b += [UInt8(v & 0xFF), UInt8((v >> 8) & 0xFF)] }
    mutating func u32(_ v: Int) { for i in 0 ..< 4 { b.append(UInt8((v >> (8 * i)) & 0xFF)) } }
    mutating func u32(_ v: UInt32) { u32(Int(v)) }
    mutating func u64(_ v: Int) { for i in 0 ..< 8 { b.append(UInt8((v >> (8 * i)) & 0xFF)) } }
}
