// ONNX initializer sizes at the overflow boundary (issue 18 item 0): dims whose product
// wraps, and zero-element dims whose other dims' product would overflow, are refused.

import Formats
import Foundation
@testable import ONNX
import XCTest

final class OnnxSizeTests: XCTestCase {
    /// One Conv whose weight is `dims` with `bytes` of raw data.
    static func model(weightDims dims: [Int], bytes: Int = 0) -> OnnxModel {
        var m = OnnxModel(irVersion: 8, opset: 17, graphName: "g")
        m.inputs = [OnnxValueInfo(name: "x", dims: [.value(1), .value(3), .value(1), .value(8), .value(8)])]
        var w = OnnxInitializer.floats("w0", dims: [1], [0])
        w.dims = dims
        w.rawData = Bytes.copying([UInt8](repeating: 0, count: bytes))
        m.initializers = [w]
        m.nodes = [OnnxNode("Conv", name: "c0", inputs: ["x", "w0"], outputs: ["y"])]
        return m
    }

    func testInitializerDimsThatWrapAreRefused() {
        // [2^32, 2^32] x 4 bytes wrapped to 0 and matched an empty raw_data (the SIGILL of issue 18).
        for dims in [[1 << 32, 1 << 32], [1 << 31, 1 << 30, 1, 1], [0, 1 << 31, 1 << 30, 1, 1], [0, 1 << 39, 1 << 39, 1, 1]] {
            XCTAssertThrowsError(try OnnxImport.importModel(Self.model(weightDims: dims)), "\(dims)") { e in
                XCTAssertTrue("\(e)".contains("initializer 'w0'") && "\(e)".contains("more than Int.max"), "\(e)")
            }
        }
        // One below: 4 x 2^30 x 2^30 = 2^62 bytes fits, so it is refused for its size, not as an overflow.
        XCTAssertThrowsError(try OnnxImport.importModel(Self.model(weightDims: [1 << 30, 1 << 30, 1, 1]))) { e in
            XCTAssertTrue("\(e)".contains("need 4611686018427387904"), "\(e)")
        }
        // Zero elements with the other dims' product in range: the size check passes (0 bytes) and
        // the import refuses it later as a graph problem, without trapping.
        XCTAssertThrowsError(try OnnxImport.importModel(Self.model(weightDims: [0, 1 << 30, 1 << 30, 1, 1]))) { e in
            XCTAssertFalse("\(e)".contains("more than Int.max"), "\(e)")
        }
    }
}
