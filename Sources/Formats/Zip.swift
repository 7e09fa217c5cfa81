// A strict zip reader (APPNOTE 6.3): end of central directory, zip64 records,
// central directory cross-checked against each local header, stored entries
// handed out as slices of the mapped file, deflated ones inflated by zlib with
// the declared size as a hard cap, CRC-32 checked. SECURITY.md 14-19.

import CDeflate
import CZlib
import Foundation

public struct ZipEntry: Sendable {
    public let name: String
    public let method: Int
    public let crc32: UInt32
    public let compressedSize: Int
    public let uncompressedSize: Int
    public let headerOffset: Int
    public let dataOffset: Int
}

public final class ZipArchive: @unchecked Sendable {
    public static let maxEntries = 100_000
    /// Largest deflate expansion possible (deflate's theoretical maximum is about 1032:1).
    /// Refused above this: real checkpoints are stored or compress modestly; 10 MB of zeros reaches 1028:1.
    public static let maxRatio = 1000

    public let bytes: Bytes
    public private(set) var entries: [ZipEntry] = []
    private var byName: [String: Int] = [:]

    public static func looksLikeZip(_ b: Bytes) -> Bool {
        b.count >= 4 && b.raw.loadUnaligned(as: UInt32.self) == UInt32(0x04034b50).littleEndian
    }

    public init(_ bytes: Bytes) throws {
        self.bytes = bytes
        try parse()
    }

    public func entry(named name: String) -> ZipEntry? { byName[name].map { entries[$0] } }

    // MARK: little-endian field access with bounds checks

    private func u16(_ o: Int) throws -> Int {
        guard o >= 0, o + 2 <= bytes.count else { throw FormatError.malformed("zip structure at offset \(o) lies beyond the end of the file") }
        return Int(UInt16(littleEndian: bytes.raw.loadUnaligned(fromByteOffset: o, as: UInt16.self)))
    }
    private func u32(_ o: Int) throws -> Int {
        guard o >= 0, o + 4 <= bytes.count else { throw FormatError.malformed("zip structure at offset \(o) lies beyond the end of the file") }
        return Int(UInt32(littleEndian: bytes.raw.loadUnaligned(fromByteOffset: o, as: UInt32.self)))
    }
    private func u64(_ o: Int) throws -> Int {
        guard o >= 0, o + 8 <= bytes.count else { throw FormatError.malformed("zip structure at offset \(o) lies beyond the end of the file") }
        let v = UInt64(littleEndian: bytes.raw.loadUnaligned(fromByteOffset: o, as: UInt64.self))
        guard v <= UInt64(Int.max / 2) else { throw FormatError.malformed("zip64 value \(v) at offset \(o) lies beyond the end of the file") }
        return Int(v)
    }

    // MARK: parsing

    private func parse() throws {
        let n = bytes.count
        guard n >= 22 else { throw FormatError.malformed("too small to be a zip archive (\(n) bytes)") }
        var eocd = -1
        var i = n - 22
        let lowest = max(0, n - 22 - 0xFFFF)
        let raw = bytes.raw
        while i >= lowest {
            if raw[i] == 0x50, raw[i + 1] == 0x4b, raw[i + 2] == 0x05, raw[i + 3] == 0x06 { eocd = i; break }
            i -= 1
        }
        guard eocd >= 0 else { throw FormatError.malformed("no end-of-central-directory record: not a zip archive or truncated") }

        var count = try u16(eocd + 10)
        let countDisk = try u16(eocd + 8)
        var cdSize = try u32(eocd + 12)
        var cdOffset = try u32(eocd + 16)
        var cdLimit = eocd

        // zip64: a locator just before the EOCD names the zip64 EOCD record.
        if eocd >= 20, try u32(eocd - 20) == 0x07064b50 {
            let recordOffset = try u64(eocd - 20 + 8)
            guard recordOffset + 56 <= eocd - 20, try u32(recordOffset) == 0x06064b50 else {
                throw FormatError.malformed("inconsistent zip64 records: locator points at offset \(recordOffset), which holds no zip64 end record", at: "offset \(eocd - 20)")
            }
            let rawCount = UInt64(try u32(recordOffset + 32)) | UInt64(try u32(recordOffset + 36)) << 32
            if rawCount > UInt64(Self.maxEntries) { throw FormatError.limit("too many entries: \(rawCount) (the limit is \(Self.maxEntries))", at: "offset \(recordOffset)") }
            let c64 = try u64(recordOffset + 32)
            let cDisk64 = try u64(recordOffset + 24)
            let size64 = try u64(recordOffset + 40)
            let off64 = try u64(recordOffset + 48)
            if c64 != cDisk64 { throw FormatError.malformed("inconsistent zip64 records: \(cDisk64) entries on this disk but \(c64) in total", at: "offset \(recordOffset)") }
            if (count != 0xFFFF && count != c64) || (cdSize != 0xFFFFFFFF && cdSize != size64) || (cdOffset != 0xFFFFFFFF && cdOffset != off64) {
                throw FormatError.malformed("inconsistent zip64 records: the zip64 end record disagrees with the end of central directory", at: "offset \(recordOffset)")
            }
            count = c64; cdSize = size64; cdOffset = off64
            cdLimit = recordOffset
        } else if count == 0xFFFF || cdSize == 0xFFFFFFFF || cdOffset == 0xFFFFFFFF {
            throw FormatError.malformed("inconsistent zip64 records: end of central directory asks for zip64 but there is no zip64 locator", at: "offset \(eocd)")
        } else if count != countDisk {
            throw FormatError.malformed("multi-disk zip archives are not supported", at: "offset \(eocd)")
        }
        if count > Self.maxEntries { throw FormatError.limit("too many entries: \(count) (the limit is \(Self.maxEntries))", at: "offset \(eocd)") }
        guard cdOffset <= cdLimit, cdSize <= cdLimit - cdOffset else {
            throw FormatError.malformed("central directory (offset \(cdOffset), \(cdSize) bytes) lies beyond the end of the file or overlaps the end records")
        }
        guard count * 46 <= cdSize else { throw FormatError.malformed("central directory of \(cdSize) bytes cannot hold \(count) entries") }

        var p = cdOffset
        let cdEnd = cdOffset + cdSize
        entries.reserveCapacity(count)
        for index in 0 ..< count {
            guard p + 46 <= cdEnd, try u32(p) == 0x02014b50 else {
                throw FormatError.malformed("central directory entry \(index) is corrupt", at: "offset \(p)")
            }
            let flags = try u16(p + 8)
            let method = try u16(p + 10)
            let crc = UInt32(try u32(p + 16))
            var csize = try u32(p + 20)
            var usize = try u32(p + 24)
            let nameLen = try u16(p + 28)
            let extraLen = try u16(p + 30)
            let commentLen = try u16(p + 32)
            var headerOffset = try u32(p + 42)
            let next = p + 46 + nameLen + extraLen + commentLen
            guard next <= cdEnd else { throw FormatError.malformed("central directory entry \(index) runs past the directory", at: "offset \(p)") }
            let nameBytes = bytes.slice(p + 46, nameLen)
            guard let name = String(validating: nameBytes.raw, as: UTF8.self) else {
                throw FormatError.malformed("entry name is not valid UTF-8", at: "central directory offset \(p)")
            }
            let loc = "entry '\(name)'"
            if flags & 1 != 0 || flags & 0x40 != 0 { throw FormatError(.unsupported, "encrypted zip entries are not supported", at: loc) }
            if method != 0 && method != 8 { throw FormatError(.unsupported, "unsupported compression method \(method) (only stored and deflate)", at: loc) }
            try Self.checkName(name, at: loc)
            if byName[name] != nil { throw FormatError.malformed("duplicate entry name", at: loc) }

            // zip64 extended information replaces the saturated fields, in order.
            var e = p + 46 + nameLen
            let extraEnd = e + extraLen
            while e + 4 <= extraEnd {
                let tag = try u16(e), len = try u16(e + 2)
                guard e + 4 + len <= extraEnd else { throw FormatError.malformed("extra field runs past its entry", at: loc) }
                if tag == 1 {
                    var f = e + 4
                    func field() throws -> Int {
                        guard f + 8 <= e + 4 + len else { throw FormatError.malformed("inconsistent zip64 records: zip64 extra field too short", at: loc) }
                        defer { f += 8 }
                        return try u64(f)
                    }
                    if usize == 0xFFFFFFFF { usize = try field() }
                    if csize == 0xFFFFFFFF { csize = try field() }
                    if headerOffset == 0xFFFFFFFF { headerOffset = try field() }
                }
                e += 4 + len
            }
            if usize == 0xFFFFFFFF || csize == 0xFFFFFFFF || headerOffset == 0xFFFFFFFF {
                // A saturated field must be replaced by the zip64 extra field (APPNOTE 4.5.3).
                throw FormatError.malformed("inconsistent zip64 records: a size or offset is 0xFFFFFFFF but the entry has no zip64 extra field for it", at: loc)
            }

            // The local header must agree with the central directory.
            guard headerOffset + 30 <= cdOffset else { throw FormatError.malformed("local header at offset \(headerOffset) lies beyond the entries (central directory starts at \(cdOffset))", at: loc) }
            guard try u32(headerOffset) == 0x04034b50 else { throw FormatError.malformed("no local header at offset \(headerOffset)", at: loc) }
            let lMethod = try u16(headerOffset + 8)
            let lFlags = try u16(headerOffset + 6)
            let lNameLen = try u16(headerOffset + 26)
            let lExtraLen = try u16(headerOffset + 28)
            guard headerOffset + 30 + lNameLen <= bytes.count,
                  bytes.raw[(headerOffset + 30) ..< (headerOffset + 30 + lNameLen)].elementsEqual(nameBytes.raw) else {
                throw FormatError.malformed("local header name disagrees with the central directory", at: loc)
            }
            if lMethod != method { throw FormatError.malformed("local header compression method \(lMethod) disagrees with the central directory's \(method)", at: loc) }
            if lFlags & 1 != 0 { throw FormatError(.unsupported, "encrypted zip entries are not supported", at: loc) }
            if lFlags & 8 == 0 {
                var lc = try u32(headerOffset + 18), lu = try u32(headerOffset + 22)
                let lcrc = UInt32(try u32(headerOffset + 14))
                if lc == 0xFFFFFFFF || lu == 0xFFFFFFFF {
                    var x = headerOffset + 30 + lNameLen
                    let xEnd = x + lExtraLen
                    while x + 4 <= xEnd {
                        let tag = try u16(x), len = try u16(x + 2)
                        if tag == 1 && len >= 16 { lu = try u64(x + 4); lc = try u64(x + 12) }
                        x += 4 + len
                    }
                }
                if lc != csize || lu != usize || lcrc != crc {
                    throw FormatError.malformed("local header sizes/CRC (\(lc), \(lu)) disagree with the central directory (\(csize), \(usize))", at: loc)
                }
            }
            let dataOffset = headerOffset + 30 + lNameLen + lExtraLen
            guard dataOffset <= bytes.count, csize <= bytes.count - dataOffset else {
                throw FormatError.malformed("entry data (\(csize) bytes at offset \(dataOffset)) lies beyond the end of the file", at: loc)
            }
            guard dataOffset <= cdOffset, csize <= cdOffset - dataOffset else {
                throw FormatError.malformed("entry data (\(csize) bytes at offset \(dataOffset)) overlaps the central directory at offset \(cdOffset)", at: loc)
            }
            if method == 0 && csize != usize { throw FormatError.malformed("stored entry with compressed size \(csize) != size \(usize)", at: loc) }
            // Exact: `usize / csize > maxRatio` would let 1000.9:1 through. csize is within the file, so no overflow.
            if method == 8 && usize > 0 && usize > csize * Self.maxRatio {
                throw FormatError.limit("absurd compression ratio: \(csize) bytes declared to inflate to \(usize) (the limit is \(Self.maxRatio):1)", at: loc)
            }
            byName[name] = entries.count
            entries.append(ZipEntry(name: name, method: method, crc32: crc, compressedSize: csize, uncompressedSize: usize,
                                    headerOffset: headerOffset, dataOffset: dataOffset))
            p = next
        }

        // No two entries may share bytes (overlapping entries are the zip-bomb trick).
        let sorted = entries.sorted { $0.headerOffset < $1.headerOffset }
        for k in 1 ..< max(sorted.count, 1) {
            let a = sorted[k - 1], b = sorted[k]
            if a.dataOffset + a.compressedSize > b.headerOffset {
                throw FormatError.malformed("entries '\(a.name)' and '\(b.name)' overlap")
            }
        }
    }

    static func checkName(_ name: String, at loc: String) throws {
        let parts = name.split(separator: "/", omittingEmptySubsequences: false)
        if name.isEmpty || name.hasPrefix("/") || name.contains("\\") || name.contains("\0")
            || parts.contains("..") || (name.count >= 2 && name.dropFirst().first == ":") {
            throw FormatError.malformed("unsafe entry name", at: loc)
        }
    }

    // MARK: reading entries

    /// The entry's bytes: a slice of the file when stored, an inflated copy when deflated.
    /// The CRC is verified unless `verifyCRC` is false (callers that checksum later).
    public func read(_ e: ZipEntry, verifyCRC: Bool = true) throws -> Bytes {
        let loc = "entry '\(e.name)'"
        let out: Bytes
        if e.method == 0 {
            out = bytes.slice(e.dataOffset, e.compressedSize)
        } else {
            out = try inflate(e, at: loc)
        }
        if verifyCRC { try checkCRC(out, e) }
        return out
    }

    public func checkCRC(_ data: Bytes, _ e: ZipEntry) throws {
        let actual = Self.crc32(data.raw)
        if actual != e.crc32 {
            throw FormatError.malformed(String(format: "CRC mismatch: computed %08x, the archive says %08x", actual, e.crc32), at: "entry '\(e.name)'")
        }
    }

    public static func crc32(_ raw: UnsafeRawBufferPointer) -> UInt32 {
        guard let base = raw.baseAddress, raw.count > 0 else { return 0 }
        return libdeflate_crc32(0, base, raw.count)
    }

    /// zlib counts in `uInt` (32 bits): entries of 4 GiB or more are fed and drained in windows of
    /// at most this many bytes (a plain `uInt(size)` would trap on them). Tests lower it.
    var inflateWindow = Int(UInt32.max)

    private func inflate(_ e: ZipEntry, at loc: String) throws -> Bytes {
        let out = OwnedBuffer(count: e.uncompressedSize)
        var stream = z_stream()
        guard inflateInit2_(&stream, -15, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw FormatError(.io, "zlib inflateInit failed", at: loc)
        }
        defer { inflateEnd(&stream) }
        let src = bytes.raw.baseAddress!.advanced(by: e.dataOffset)
        var inLeft = e.compressedSize, outLeft = e.uncompressedSize
        func refill() {
            if stream.avail_in == 0 && inLeft > 0 {
                let n = min(inLeft, inflateWindow)
                stream.next_in = UnsafeMutablePointer(mutating: (src + (e.compressedSize - inLeft)).assumingMemoryBound(to: Bytef.self))
                stream.avail_in = uInt(n)
                inLeft -= n
            }
            if stream.avail_out == 0 && outLeft > 0 {
                let n = min(outLeft, inflateWindow)
                stream.next_out = (out.pointer + (e.uncompressedSize - outLeft)).assumingMemoryBound(to: Bytef.self)
                stream.avail_out = uInt(n)
                outLeft -= n
            }
        }
        refill()
        var scratch = [UInt8](repeating: 0, count: 1)
        while true {
            let r = CZlib.inflate(&stream, Z_NO_FLUSH)
            if r == Z_STREAM_END { break }
            if r == Z_OK || r == Z_BUF_ERROR, (stream.avail_in == 0 && inLeft > 0) || (stream.avail_out == 0 && outLeft > 0) {
                refill()
                continue
            }
            if r == Z_BUF_ERROR || (r == Z_OK && stream.avail_out == 0) {
                if stream.avail_out == 0 {
                    // Output is full; any further byte means the entry is larger than declared.
                    let more = scratch.withUnsafeMutableBufferPointer { sp -> Int32 in
                        stream.next_out = sp.baseAddress
                        stream.avail_out = 1
                        return CZlib.inflate(&stream, Z_NO_FLUSH)
                    }
                    if stream.avail_out == 0 { throw FormatError.malformed("entry inflates to more bytes (larger than declared \(e.uncompressedSize))", at: loc) }
                    if more == Z_STREAM_END { break }
                    throw FormatError.malformed("deflate stream truncated", at: loc)
                }
                if stream.avail_in == 0 { throw FormatError.malformed("deflate stream truncated", at: loc) }
                continue
            }
            if r != Z_OK { throw FormatError.malformed("corrupt deflate data (zlib error \(r))", at: loc) }
        }
        if Int(stream.total_out) != e.uncompressedSize {
            throw FormatError.malformed("entry inflates to \(stream.total_out) bytes, smaller than declared \(e.uncompressedSize)", at: loc)
        }
        return out.bytes
    }
}
