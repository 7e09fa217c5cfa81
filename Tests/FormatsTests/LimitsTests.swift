// Issue 8, part 5: each documented budget just below (accepted, or refused for another
// reason) and just above (refused with the limit's own message). README's limits table lists them.

import CZlib
import Foundation
import XCTest
@testable import Formats

final class LimitsTests: XCTestCase {
    func load(_ b: PickleBuilder, _ limits: PickleLimits) throws {
        let vm = PickleVM(b.data, limits: limits)
        defer { vm.dispose() }
        let root = try vm.load()
        try vm.checkStructure(root)
    }

    func assertRefused<T>(_ body: @autoclosure () throws -> T, _ phrase: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try body(), file: file, line: line) { XCTAssertTrue("\($0)".contains(phrase), "expected '\(phrase)': \($0)", file: file, line: line) }
    }

    // MARK: pickle

    /// `depth` MARKs, each closed by TUPLE: tuples nested `depth` deep.
    func nestedTuples(_ depth: Int) -> PickleBuilder {
        var b = PickleBuilder(); b.proto(2)
        b.raw([UInt8](repeating: 0x28, count: depth))   // MARK
        b.raw([UInt8](repeating: 0x74, count: depth))   // TUPLE
        b.stop()
        return b
    }

    func testPickleDepthLimit() throws {
        var limits = PickleLimits(); limits.maxDepth = 50
        XCTAssertNoThrow(try load(nestedTuples(50), limits))
        XCTAssertThrowsError(try load(nestedTuples(51), limits)) { XCTAssertTrue("\($0)".contains("depth limit"), "\($0)") }
        // The default (1000) on the same shape.
        XCTAssertNoThrow(try load(nestedTuples(1000), PickleLimits()))
        XCTAssertThrowsError(try load(nestedTuples(1001), PickleLimits())) { XCTAssertTrue("\($0)".contains("depth limit"), "\($0)") }
    }

    func testPickleMarkDepthLimit() throws {
        /// `depth` MARKs closed by POP_MARKs, then NONE: only the mark stack is deep.
        func marks(_ depth: Int) -> PickleBuilder {
            var b = PickleBuilder(); b.proto(2)
            b.raw([UInt8](repeating: 0x28, count: depth))
            b.raw([UInt8](repeating: 0x31, count: depth)); b.op(0x4E); b.stop()
            return b
        }
        var limits = PickleLimits(); limits.maxDepth = 50
        XCTAssertNoThrow(try load(marks(50), limits))
        assertRefused(try load(marks(51), limits), "more than 50 nested MARKs (depth limit)")
    }

    func testPickleTupleDepthLimitWithoutMarks() throws {
        /// EMPTY_TUPLE wrapped `depth - 1` times by TUPLE1: no MARK, so only the tuple check can refuse it.
        func chain(_ depth: Int) -> PickleBuilder {
            var b = PickleBuilder(); b.proto(2); b.op(0x29)
            b.raw([UInt8](repeating: 0x85, count: depth - 1)); b.stop()
            return b
        }
        var limits = PickleLimits(); limits.maxDepth = 50
        XCTAssertNoThrow(try load(chain(50), limits))
        assertRefused(try load(chain(51), limits), "tuple nesting deeper than 50 (depth limit)")
    }

    func testPickleNestedListDepthLimit() throws {
        /// `depth` EMPTY_LISTs, each APPENDed into the one before: the structure walk alone sees the depth.
        func lists(_ depth: Int) -> PickleBuilder {
            var b = PickleBuilder(); b.proto(2)
            b.raw([UInt8](repeating: 0x5D, count: depth))
            b.raw([UInt8](repeating: 0x61, count: depth - 1)); b.stop()
            return b
        }
        var limits = PickleLimits(); limits.maxDepth = 50
        XCTAssertNoThrow(try load(lists(50), limits))
        assertRefused(try load(lists(51), limits), "nests deeper than 50 levels (depth limit)")
    }

    func testPickleMemoLimit() throws {
        func memo(_ n: Int) -> PickleBuilder {
            var b = PickleBuilder(); b.proto(2); b.op(0x4E)      // NONE
            for i in 0 ..< n { b.raw([0x72] + b.le32(i)) }      // LONG_BINPUT i
            b.stop()
            return b
        }
        var limits = PickleLimits(); limits.maxMemo = 100
        XCTAssertNoThrow(try load(memo(100), limits))
        XCTAssertThrowsError(try load(memo(101), limits)) { XCTAssertTrue("\($0)".contains("memo limit"), "\($0)") }
    }

    func testPickleObjectLimitOnCreation() throws {
        /// EMPTY_LIST then `n` x (NONE, APPEND): 1 + n values created, 1 + n visited.
        func objects(_ n: Int) -> PickleBuilder {
            var b = PickleBuilder(); b.proto(2); b.op(0x5D)
            for _ in 0 ..< n { b.raw([0x4E, 0x61]) }
            b.stop()
            return b
        }
        var limits = PickleLimits(); limits.maxObjects = 100
        XCTAssertNoThrow(try load(objects(99), limits))
        assertRefused(try load(objects(100), limits), "pickle creates more than 100 objects (object limit)")
    }

    /// A memo bomb of lists: level i is [level i-1, level i-1] built from two BINGETs, so
    /// `levels` levels create 3 x levels + 2 values but expand to 2^(levels+1) - 1.
    func listBomb(_ levels: Int) -> PickleBuilder {
        var b = PickleBuilder(); b.proto(2)
        b.raw([0x4E, 0x71, 0, 0x30])                                  // NONE, BINPUT 0, POP
        for i in 1 ... levels {
            let prev = UInt8(i - 1)
            b.raw([0x5D, 0x68, prev, 0x61, 0x68, prev, 0x61])        // EMPTY_LIST, (BINGET prev, APPEND) x 2
            b.raw([0x71, UInt8(i), 0x30])                             // BINPUT i, POP
        }
        b.raw([0x68, UInt8(levels)]); b.stop()
        return b
    }

    func testPickleObjectLimitOnExpandedVisits() throws {
        let visits = (1 << 11) - 1                                   // 10 levels
        var limits = PickleLimits(); limits.maxObjects = visits
        XCTAssertNoThrow(try load(listBomb(10), limits))
        limits.maxObjects = visits - 1                               // still far above the 32 values created
        assertRefused(try load(listBomb(10), limits), "pickle structure expands to more than \(visits - 1) objects (object limit")
        // 40 levels (2^41 on expansion) in 330 bytes, default limits: refused, not expanded.
        assertRefused(try load(listBomb(40), PickleLimits()), "expands to more than 4000000 objects")
    }

    /// The same bomb with tuples (TUPLE2 of two BINGETs): the tuple depth check walks
    /// the shared tuples, 2^(levels+1) - 2 levels - 2 of them in all.
    func tupleBomb(_ levels: Int) -> PickleBuilder {
        var b = PickleBuilder(); b.proto(2)
        b.raw([0x4E, 0x71, 0, 0x30])
        for i in 1 ... levels {
            let prev = UInt8(i - 1)
            b.raw([0x68, prev, 0x68, prev, 0x86, 0x71, UInt8(i), 0x30]) // BINGET, BINGET, TUPLE2, BINPUT i, POP
        }
        b.raw([0x68, UInt8(levels)]); b.stop()
        return b
    }

    func testPickleTupleMemoBombIsBoundedByTheObjectLimit() throws {
        func loadOnly(_ b: PickleBuilder, _ limits: PickleLimits) throws {
            let vm = PickleVM(b.data, limits: limits)
            defer { vm.dispose() }
            _ = try vm.load()
        }
        let walked = (1 << 11) - 2 * 10 - 2                          // 10 levels: 2026 tuples walked, 32 values created
        var limits = PickleLimits(); limits.maxObjects = walked
        XCTAssertNoThrow(try loadOnly(tupleBomb(10), limits))
        limits.maxObjects = walked - 1
        assertRefused(try loadOnly(tupleBomb(10), limits), "tuples nest through more than \(walked - 1) shared tuples (object limit")
        // 40 levels with the default limits: refused after 4M steps instead of walking 2^41 tuples (days).
        let start = Date()
        assertRefused(try loadOnly(tupleBomb(40), PickleLimits()), "object limit")
        XCTAssertLessThan(Date().timeIntervalSince(start), 30)
    }

    func testPickleStringLimit() throws {
        func ops(_ s: [UInt8]) -> [(String, [UInt8])] {
            let n = s.count
            return [
                ("SHORT_BINUNICODE", [0x8C, UInt8(n)] + s),
                ("BINUNICODE", [0x58] + PickleBuilder().le32(n) + s),
                ("BINUNICODE8", [0x8D] + PickleBuilder().le32(n) + [0, 0, 0, 0] + s),
                ("SHORT_BINBYTES", [0x43, UInt8(n)] + s),
                ("BINBYTES", [0x42] + PickleBuilder().le32(n) + s),
                ("SHORT_BINSTRING", [0x55, UInt8(n)] + s),
                ("STRING", [0x53] + Array("'".utf8) + s + Array("'\n".utf8)),
                ("UNICODE", [0x56] + s + [0x0A]),
            ]
        }
        var limits = PickleLimits(); limits.maxStringBytes = 16
        for ((name, at), (_, over)) in zip(ops(Array(repeating: 0x61, count: 16)), ops(Array(repeating: 0x61, count: 17))) {
            var a = PickleBuilder(); a.raw(at); a.stop()
            XCTAssertNoThrow(try load(a, limits), name)
            var b = PickleBuilder(); b.raw(over); b.stop()
            assertRefused(try load(b, limits), "object of 17 bytes exceeds the limit of 16")
        }
        // The default (2 GiB): a BINUNICODE claiming exactly 2^31 bytes gets past the limit to the length check.
        let d = PickleLimits().maxStringBytes
        var a = PickleBuilder(); a.raw([0x58] + a.le32(d))
        assertRefused(try load(a, PickleLimits()), "truncated pickle: needs \(d) more bytes")
        var b = PickleBuilder(); b.raw([0x58] + b.le32(d + 1))
        assertRefused(try load(b, PickleLimits()), "object of \(d + 1) bytes exceeds the limit of \(d)")
    }

    func testPickleIntegerLimits() throws {
        // LONG4 of maxLongBytes: past the limit (then truncated); one byte more: the limit.
        let n = PickleLimits.maxLongBytes
        var a = PickleBuilder(); a.raw([0x8B] + a.le32(n))
        assertRefused(try load(a, PickleLimits()), "truncated pickle: needs \(n) more bytes")
        var b = PickleBuilder(); b.raw([0x8B] + b.le32(n + 1))
        assertRefused(try load(b, PickleLimits()), "integer of \(n + 1) bytes exceeds the limit of \(n)")
        // Text LONG (protocol 0) of maxLongDigits digits: converted; one more: the limit.
        let digits = PickleLimits.maxLongDigits
        var c = PickleBuilder(); c.raw([0x4C] + Array((String(repeating: "9", count: digits) + "L\n").utf8)); c.stop()
        let vm = PickleVM(c.data)
        guard case .bigInt(let big) = try vm.load() else { return XCTFail("a \(digits)-digit LONG is not a big integer") }
        XCTAssertGreaterThan(big.count, 1700)                      // 10^4095 needs 1701 bytes
        var d = PickleBuilder(); d.raw([0x4C] + Array(("-" + String(repeating: "9", count: digits + 1) + "L\n").utf8)); d.stop()
        assertRefused(try load(d, PickleLimits()), "LONG of \(digits + 1) digits exceeds the limit of \(digits)")
    }

    // MARK: safetensors, JSON, npy

    func testSafetensorsHeaderLimit() throws {
        func claim(_ n: UInt64) -> Bytes {
            var b = [UInt8](repeating: 0, count: 8)
            for i in 0 ..< 8 { b[i] = UInt8((n >> (8 * UInt64(i))) & 0xFF) }
            return Bytes.copying(b + Array("{}".utf8))
        }
        // At the limit: refused only because the header runs past the file.
        XCTAssertThrowsError(try Safetensors.read(claim(UInt64(Safetensors.maxHeaderBytes)))) { e in
            XCTAssertTrue("\(e)".contains("reaches beyond the end of the file"), "\(e)")
        }
        XCTAssertThrowsError(try Safetensors.read(claim(UInt64(Safetensors.maxHeaderBytes) + 1))) { e in
            XCTAssertTrue("\(e)".contains("exceeds the 100 MB limit"), "\(e)")
        }
    }

    func testJSONNestingLimit() throws {
        func arrays(_ n: Int, inner: String = "") -> String { String(repeating: "[", count: n) + inner + String(repeating: "]", count: n) }
        func objects(_ n: Int) -> String { String(repeating: "{\"a\":", count: n - 1) + "{}" + String(repeating: "}", count: n - 1) }
        for text in [arrays(64), arrays(64, inner: "1"), arrays(62, inner: "{\"k\":[]}"), objects(64)] {
            XCTAssertNoThrow(try JSONParser.parse(text), String(text.prefix(8)))
        }
        for text in [arrays(65), arrays(65, inner: "1"), arrays(64, inner: "{}"), objects(65)] {
            assertRefused(try JSONParser.parse(text), "nesting deeper than 64")
        }
        // Through a safetensors header: 64 levels get past the parser (then no dtype), 65 do not.
        func header(_ json: String) -> Bytes {
            let h = Array(json.utf8)
            return Bytes.copying((0 ..< 8).map { UInt8((h.count >> (8 * $0)) & 0xFF) } + h)
        }
        assertRefused(try Safetensors.read(header(objects(64))), "tensor entry has no dtype string")
        assertRefused(try Safetensors.read(header(objects(65))), "header is not valid JSON: nesting deeper than 64")
    }

    func testNpyHeaderLimit() throws {
        /// A version-2 .npy of two float32s whose header (dict, padding, newline) is `length` bytes.
        func npy(headerLength length: Int) -> Bytes {
            var h = Array("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }".utf8)
            h += [UInt8](repeating: 0x20, count: length - h.count - 1) + [0x0A]
            let prefix: [UInt8] = [0x93] + Array("NUMPY".utf8) + [2, 0] + PickleBuilder().le32(length)
            return Bytes.copying(prefix + h + [0, 0, 0x80, 0x3F, 0, 0, 0, 0x40])
        }
        let (t, _) = try Npy.readArray(npy(headerLength: Npy.maxHeaderBytes))
        XCTAssertEqual(t.shape, [2])
        XCTAssertEqual(t.floats(), [1, 2])
        assertRefused(try Npy.readArray(npy(headerLength: Npy.maxHeaderBytes + 1)), "npy header length \(Npy.maxHeaderBytes + 1) exceeds the 1 MiB limit")
    }

    // MARK: zip

    func le16(_ v: Int) -> [UInt8] { [UInt8(v & 0xFF), UInt8((v >> 8) & 0xFF)] }
    func le32(_ v: Int) -> [UInt8] { (0 ..< 4).map { UInt8((v >> (8 * $0)) & 0xFF) } }
    func le64(_ v: Int) -> [UInt8] { (0 ..< 8).map { UInt8((v >> (8 * $0)) & 0xFF) } }

    /// An end-of-central-directory record: `count` entries, a directory of `count` x 46 bytes at offset 0.
    func eocd(_ count: Int) -> [UInt8] {
        [0x50, 0x4B, 0x05, 0x06, 0, 0, 0, 0] + le16(count) + le16(count) + le32(count * 46) + le32(0) + le16(0)
    }

    func testZipEntryLimitThroughTheEndRecord() throws {
        // 65534 is the most a 16-bit count can say (0xFFFF means "see zip64"), below the limit of
        // 100 000: it passes the count check and fails the next one (no directory of that size).
        XCTAssertLessThan(0xFFFE, ZipArchive.maxEntries)
        assertRefused(try ZipArchive(Bytes.copying(eocd(0xFFFE))), "central directory (offset 0, \(0xFFFE * 46) bytes) lies beyond the end of the file")
        assertRefused(try ZipArchive(Bytes.copying(eocd(0xFFFF))), "asks for zip64 but there is no zip64 locator")
    }

    func testZipEntryLimitThroughZip64() throws {
        /// A zip64 end record claiming `count` entries (directory at offset 0 of count x 46 bytes),
        /// its locator, and an end record whose fields all say "see zip64".
        func zip64(_ count: Int) -> Bytes {
            var record: [UInt8] = [0x50, 0x4B, 0x06, 0x06] + le64(44) + le16(45) + le16(45) + le32(0) + le32(0)
            record += le64(count) + le64(count) + le64(count * 46) + le64(0)
            let locator: [UInt8] = [0x50, 0x4B, 0x06, 0x07] + le32(0) + le64(0) + le32(1)
            let end: [UInt8] = [0x50, 0x4B, 0x05, 0x06, 0, 0, 0, 0] + le16(0xFFFF) + le16(0xFFFF) + le32(-1) + le32(-1) + le16(0)
            return Bytes.copying(record + locator + end)
        }
        let n = ZipArchive.maxEntries
        assertRefused(try ZipArchive(zip64(n)), "central directory (offset 0, \(n * 46) bytes) lies beyond the end of the file")
        assertRefused(try ZipArchive(zip64(n + 1)), "too many entries: \(n + 1) (the limit is \(n))")
    }

    /// Raw deflate (no zlib header) at the best compression.
    func deflate(_ input: [UInt8]) -> [UInt8] {
        var s = z_stream()
        XCTAssertEqual(deflateInit2_(&s, 9, Z_DEFLATED, -15, 9, Z_DEFAULT_STRATEGY, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)), Z_OK)
        defer { deflateEnd(&s) }
        var out = [UInt8](repeating: 0, count: Int(deflateBound(&s, uLong(input.count))))
        input.withUnsafeBufferPointer { ip in
            out.withUnsafeMutableBufferPointer { op in
                s.next_in = UnsafeMutablePointer(mutating: ip.baseAddress)
                s.avail_in = uInt(ip.count)
                s.next_out = op.baseAddress
                s.avail_out = uInt(op.count)
                XCTAssertEqual(CZlib.deflate(&s, Z_FINISH), Z_STREAM_END)
            }
        }
        return Array(out.prefix(Int(s.total_out)))
    }

    /// A one-entry archive with a deflated entry `e`: `zeros` zero bytes deflated, padded with zero bytes
    /// after the end of the deflate stream to `csize` bytes, declared to inflate to `usize`.
    func deflatedZip(zeros: Int, csize: Int, usize: Int) -> Bytes {
        let input = [UInt8](repeating: 0, count: zeros)
        var data = deflate(input)
        XCTAssertLessThanOrEqual(data.count, csize, "zeros do not compress enough for this ratio")
        data += [UInt8](repeating: 0, count: max(0, csize - data.count))
        let crc = Int(input.withUnsafeBytes { ZipArchive.crc32($0) })
        let fields = le16(20) + le16(0) + le16(8) + le16(0) + le16(0x21) + le32(crc) + le32(csize) + le32(usize) + le16(1)
        let local: [UInt8] = [0x50, 0x4B, 0x03, 0x04] + fields + le16(0) + Array("e".utf8)
        let central: [UInt8] = [0x50, 0x4B, 0x01, 0x02] + le16(20) + fields + le16(0) + le16(0) + le16(0) + le16(0) + le32(0) + le32(0) + Array("e".utf8)
        let cdOffset = local.count + data.count
        let end: [UInt8] = [0x50, 0x4B, 0x05, 0x06, 0, 0, 0, 0] + le16(1) + le16(1) + le32(central.count) + le32(cdOffset) + le16(0)
        return Bytes.copying(local + data + central + end)
    }

    func testZipCompressionRatioLimit() throws {
        let r = ZipArchive.maxRatio
        // Exactly 1000:1 (10 MB of zeros in 10 000 bytes): accepted, and reads back with its CRC.
        let atLimit = try ZipArchive(deflatedZip(zeros: 10_000 * r, csize: 10_000, usize: 10_000 * r))
        let data = try atLimit.read(atLimit.entry(named: "e")!)
        XCTAssertEqual(data.count, 10_000 * r)
        XCTAssertTrue(data.raw.allSatisfy { $0 == 0 })
        // One byte more than 1000:1 (a ratio of 1000.0001): refused before anything is inflated.
        assertRefused(try ZipArchive(deflatedZip(zeros: 10_000 * r, csize: 10_000, usize: 10_000 * r + 1)),
                      "absurd compression ratio: 10000 bytes declared to inflate to \(10_000 * r + 1) (the limit is \(r):1)")
        // 1001:1, the declaration honest.
        assertRefused(try ZipArchive(deflatedZip(zeros: 10_000 * (r + 1), csize: 10_000, usize: 10_000 * (r + 1))), "absurd compression ratio")
    }
}
