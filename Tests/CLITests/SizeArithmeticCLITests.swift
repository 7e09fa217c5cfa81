// Crafted files whose sizes overflow, through the real binary (issue 18 item 0): exit 1
// with a message naming the file and what was expected, never a trap (132/134/139).

import Foundation
@testable import Formats
import ONNX
import XCTest

final class SizeArithmeticCLITests: XCTestCase {
    func assertRefused(_ bytes: [UInt8], name: String, args: [String] = [], expect: String,
                       file: StaticString = #filePath, line: UInt = #line) throws {
        let dir = try CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let input = dir.appendingPathComponent(name).path
        try Data(bytes).write(to: URL(fileURLWithPath: input))
        let out = dir.appendingPathComponent("out.safetensors").path
        let r = try CLI.run(["convert", input, "-o", out] + args)
        XCTAssertFalse(r.signaled, "\(name): killed by a signal: \(r.stderr)", file: file, line: line)
        XCTAssertEqual(r.status, 1, "\(name): \(r.stderr)", file: file, line: line)
        XCTAssertTrue(r.stderr.contains(name) && r.stderr.contains(expect), "\(name): \(r.stderr)", file: file, line: line)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out), file: file, line: line)
    }

    func testSafetensorsShapeWhoseNonZeroDimsOverflow() throws {
        for shape in ["[0,4294967296,4294967296]", "[0,2147483648,1073741824]", "[4294967296,4294967296]"] {
            let header = Array("{\"x\":{\"dtype\":\"F32\",\"shape\":\(shape),\"data_offsets\":[0,0]}}".utf8)
            let bytes = (0 ..< 8).map { UInt8((header.count >> (8 * $0)) & 0xFF) } + header
            try assertRefused(bytes, name: "overflow.safetensors", expect: "overflows")
        }
    }

    func testNpyShapeWhoseNonZeroDimsOverflow() throws {
        var header = Array("{'descr': '<f4', 'fortran_order': True, 'shape': (0, 4294967296, 4294967296), }".utf8)
        while (10 + header.count + 1) % 64 != 0 { header.append(0x20) }
        header.append(0x0A)
        let bytes = [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(header.count & 0xFF), UInt8(header.count >> 8)] + header
        try assertRefused(bytes, name: "overflow.npy", expect: "overflows")
    }

    func testOnnxInitializerWhoseDimsOverflow() throws {
        for dims in [[1 << 32, 1 << 32, 1, 1], [0, 1 << 39, 1 << 39, 1, 1]] {
            var m = OnnxModel(irVersion: 8, opset: 17, graphName: "g")
            m.inputs = [OnnxValueInfo(name: "x", dims: [.value(1), .value(3), .value(1), .value(8), .value(8)])]
            var w = OnnxInitializer.floats("w0", dims: [1], [0])
            w.dims = dims
            w.rawData = Bytes.copying([])
            m.initializers = [w]
            m.nodes = [OnnxNode("Conv", name: "c0", inputs: ["x", "w0"], outputs: ["y"])]
            try assertRefused(try m.serialized(), name: "overflow.onnx", args: ["--from", "onnx"], expect: "more than Int.max")
        }
    }
}
