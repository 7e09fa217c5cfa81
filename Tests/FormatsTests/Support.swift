// Shared helpers for the Formats tests: fixture paths, manifest loading, byte comparison.

import Foundation
import XCTest
@testable import Formats

enum Fixtures {
    static let root: URL = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let dir = root.appendingPathComponent("fixtures")

    static func path(_ relative: String) -> String { dir.appendingPathComponent(relative).path }

    static func json(_ relative: String) throws -> JSONValue {
        let data = try Data(contentsOf: dir.appendingPathComponent(relative))
        return try data.withUnsafeBytes { try JSONParser.parse($0) }
    }

    static func manifest() throws -> [JSONValue] {
        guard case .array(let xs) = try json("manifest.json") else { throw XCTSkip("manifest.json is not a list") }
        return xs
    }

    static func tempDir() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("sfnet-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }
}

/// Asserts two tensors have the same dtype, shape and bytes; reports the first differing byte.
func assertSameTensor(_ a: Tensor, _ b: Tensor, _ name: String, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.dtype, b.dtype, "\(name): dtype", file: file, line: line)
    XCTAssertEqual(a.shape, b.shape, "\(name): shape", file: file, line: line)
    guard a.byteCount == b.byteCount else {
        XCTFail("\(name): \(a.byteCount) bytes vs \(b.byteCount)", file: file, line: line)
        return
    }
    if let i = zip(a.data.raw, b.data.raw).enumerated().first(where: { $0.element.0 != $0.element.1 })?.offset {
        XCTFail("\(name): bytes differ first at byte \(i) (element \(i / max(a.dtype.size, 1)))", file: file, line: line)
    }
}

/// Builds pickle byte streams opcode by opcode.
struct PickleBuilder {
    var bytes: [UInt8] = []
    mutating func op(_ b: UInt8) { bytes.append(b) }
    mutating func raw(_ xs: [UInt8]) { bytes += xs }
    mutating func proto(_ p: UInt8) { bytes += [0x80, p] }
    mutating func shortUnicode(_ s: String) { let u = Array(s.utf8); bytes += [0x8C, UInt8(u.count)] + u }
    mutating func binUnicode(_ s: String) { let u = Array(s.utf8); bytes.append(0x58); bytes += le32(u.count) + u }
    mutating func binint1(_ v: UInt8) { bytes += [0x4B, v] }
    mutating func global(_ m: String, _ n: String) { bytes += [0x63] + Array((m + "\n" + n + "\n").utf8) }
    mutating func stop() { bytes.append(0x2E) }
    func le32(_ n: Int) -> [UInt8] { (0 ..< 4).map { UInt8((n >> (8 * $0)) & 0xFF) } }
    var data: Bytes { Bytes.copying(bytes) }
}
