// Issue 8, part 5: each documented budget just below (accepted, or refused for another
// reason) and just above (refused with the limit's own message).

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

    func testSafetensorsHeaderLimit() throws {
        func claim(_ n: UInt64) -> Bytes {
            var b = [UInt8](repeating: 0, count: 8)
            for i in 0 ..< 8 { b[i] = UInt8((n >> (8 * UInt64(i))) & 0xFF) }
            return Bytes.copying(b + Array("{}".utf8))
        }
        // At the limit: refused only because the header runs past the file.
        XCTAssertThrowsError(try Safetensors.read(claim(UInt64(Safetensors.maxHeaderBytes)))) { e in
            XCTAssertFalse("\(e)".contains("exceeds the 100 MB limit"), "\(e)")
        }
        XCTAssertThrowsError(try Safetensors.read(claim(UInt64(Safetensors.maxHeaderBytes) + 1))) { e in
            XCTAssertTrue("\(e)".contains("exceeds the 100 MB limit"), "\(e)")
        }
    }

    func testZipEntryCountLimit() throws {
        /// An end-of-central-directory record alone, claiming `count` entries.
        func eocd(_ count: Int) -> Bytes {
            var b: [UInt8] = [0x50, 0x4B, 0x05, 0x06, 0, 0, 0, 0]
            let c = min(count, 0xFFFF)
            b += [UInt8(c & 0xFF), UInt8(c >> 8), UInt8(c & 0xFF), UInt8(c >> 8)]
            b += [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
            return Bytes.copying(b)
        }
        // 65535 entries claimed (the 16-bit field's most, below the 100 000 limit): refused, not for the count.
        XCTAssertThrowsError(try ZipArchive(eocd(65535))) { e in XCTAssertFalse("\(e)".contains("too many entries"), "\(e)") }
        XCTAssertLessThan(65535, ZipArchive.maxEntries)
    }
}
