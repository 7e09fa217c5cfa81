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
                XCTAssertTrue("\(e)".contains("'w0'") && "\(e)".contains("more than Int.max"), "\(e)")
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

    /// `OnnxLimits.maxDim` (LIMITS.md): a dim of 2^40 - 1 passes the dim check (and is refused for the bytes
    /// it lacks); 2^40 is refused by the dim check itself, before any size arithmetic.
    func testInitializerDimLimitIsExactly2Pow40() {
        XCTAssertEqual(OnnxLimits.maxDim, 1 << 40)
        XCTAssertThrowsError(try OnnxImport.importModel(Self.model(weightDims: [OnnxLimits.maxDim - 1, 1, 1, 1]))) { e in
            XCTAssertTrue("\(e)".contains("need \(4 * (OnnxLimits.maxDim - 1))"), "\(e)")
            XCTAssertFalse("\(e)".contains("below 2^40"), "\(e)")
        }
        for dims in [[OnnxLimits.maxDim, 1, 1, 1], [1, 3, 1, OnnxLimits.maxDim], [-1, 3, 1, 1]] {
            XCTAssertThrowsError(try OnnxImport.importModel(Self.model(weightDims: dims)), "\(dims)") { e in
                XCTAssertTrue("\(e)".contains("'w0' has dims \(dims) (each dim must be below 2^40)"), "\(e)")
            }
        }
    }

    /// A parameter with a zero dim is refused after the size check (0 bytes match), whatever its other dims.
    func testEmptyParameterIsRefused() {
        for dims in [[0, 3, 1, 1], [1 << 32, 3, 1, 0]] {
            XCTAssertThrowsError(try OnnxImport.importModel(Self.model(weightDims: dims)), "\(dims)") { e in
                XCTAssertTrue("\(e)".contains("'w0' is empty (dims \(dims))"), "\(e)")
            }
        }
        // One element is not empty: the size check passes and the walk goes on (and refuses the graph later).
        XCTAssertThrowsError(try OnnxImport.importModel(Self.model(weightDims: [1, 1, 1, 1], bytes: 4))) { e in
            XCTAssertFalse("\(e)".contains("is empty"), "\(e)")
        }
    }

    /// `OnnxLimits.maxPositionRows` (LIMITS.md): VideoMAE's position table is compared with the sinusoid up
    /// to 2^20 rows (at the limit a zero table is refused as not the sinusoid); 2^20 + 1 rows are refused first.
    func testPositionTableRowLimitIsExactly2Pow20() {
        let g = OnnxTransformerWalk(model: OnnxModel(irVersion: 8, opset: 17, graphName: "g"), producer: [:], consumers: [:],
                                    inits: [:], alias: [:], file: "t.onnx")
        for (rows, phrase) in [(OnnxLimits.maxPositionRows, "is not VideoMAE's fixed sinusoid table"),
                               (OnnxLimits.maxPositionRows + 1, "the position table has \(OnnxLimits.maxPositionRows + 1) rows (the limit is 1048576)")] {
            let table = Tensor(dtype: .f32, shape: [1, rows, 1], data: Bytes.copying([UInt8](repeating: 0, count: 4 * rows)))
            XCTAssertThrowsError(try OnnxImport.checkSinusoid(table, rows: rows, width: 1, name: "pos", g), "\(rows)") { e in
                XCTAssertTrue("\(e)".contains(phrase), "\(e)")
            }
        }
    }
}
