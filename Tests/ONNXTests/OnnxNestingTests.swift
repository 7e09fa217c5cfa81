// SECURITY.md 25 on the ONNX reader: recursion past a depth limit and length fields
// claiming more bytes than remain are refused before protobuf-c (which recurses
// without a limit) ever sees the bytes.

import Foundation
import Formats
@testable import ONNX
import XCTest

/// A protobuf varint.
func varint(_ v: Int) -> [UInt8] {
    var v = UInt64(v), out: [UInt8] = []
    repeat { out.append(UInt8(v & 0x7f) | (v >= 0x80 ? 0x80 : 0)); v >>= 7 } while v > 0
    return out
}

/// A length-delimited protobuf field.
func field(_ number: Int, _ payload: [UInt8]) -> [UInt8] { varint(number << 3 | 2) + varint(payload.count) + payload }

final class OnnxNestingTests: XCTestCase {
    /// ModelProto { ir_version 8, graph { node { attribute { g { node { ... } } } } } } with `levels` subgraphs.
    func nestedModel(levels: Int) -> [UInt8] {
        var graph: [UInt8] = field(2, Array("g".utf8))                    // GraphProto.name
        for _ in 0 ..< levels {
            let attribute = field(1, Array("body".utf8)) + field(6, graph)   // AttributeProto { name, g }
            let node = field(4, Array("If".utf8)) + field(5, attribute)      // NodeProto { op_type, attribute }
            graph = field(1, node)                                           // GraphProto { node }
        }
        return [0x08, 0x08] + field(7, graph)
    }

    func testDeeplyNestedSubgraphsAreRefusedBeforeUnpacking() throws {
        // 30 000 subgraph levels (90 000 messages deep): enough to overflow protobuf-c's recursion.
        let bomb = nestedModel(levels: 30_000)
        for parse in [{ try bomb.withUnsafeBytes { _ = try OnnxModel.parse($0, file: "bomb.onnx") } },
                      { try bomb.withUnsafeBytes { _ = try OnnxExternalData.inline($0, modelPath: "bomb.onnx") } }] {
            XCTAssertThrowsError(try parse()) { e in
                XCTAssertTrue("\(e)".contains("nested deeper than 64"), "\(e)")
            }
        }
    }

    func testModeratelyNestedSubgraphsPass() throws {
        let m = try nestedModel(levels: 15).withUnsafeBytes { try OnnxModel.parse($0, file: "ok.onnx") }
        XCTAssertEqual(m.irVersion, 8)
        XCTAssertEqual(m.nodes.first?.opType, "If")
        XCTAssertThrowsError(try nestedModel(levels: 25).withUnsafeBytes { try OnnxModel.parse($0, file: "deep.onnx") })
    }

    func testLengthPastTheEnclosingMessageIsRefused() throws {
        // graph { node (claims 100 bytes, the graph holds 3) }
        let bad: [UInt8] = [0x08, 0x08] + varint(7 << 3 | 2) + varint(3) + varint(1 << 3 | 2) + varint(100) + [0]
        XCTAssertThrowsError(try bad.withUnsafeBytes { try OnnxModel.parse($0, file: "bad.onnx") }) { e in
            XCTAssertTrue("\(e)".contains("claims 100 bytes"), "\(e)")
        }
        // A deep TypeProto chain (sequence of sequence of ...) through a graph input.
        var type: [UInt8] = field(1, [0x08, 0x01])                             // TypeProto { tensor_type { elem_type 1 } }
        for _ in 0 ..< 100 { type = field(4, field(1, type)) }                  // TypeProto { sequence_type { elem_type } }
        let model = [0x08, 0x08] + field(7, field(11, field(1, Array("x".utf8)) + field(2, type)))
        XCTAssertThrowsError(try model.withUnsafeBytes { try OnnxModel.parse($0, file: "types.onnx") }) { e in
            XCTAssertTrue("\(e)".contains("nested deeper"), "\(e)")
        }
    }

    func testRealModelsPassTheCheck() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        for f in ["fixtures/onnx/tiny_slowfast_8x8.onnx", "fixtures/onnx/tiny_resnet50_tv.onnx", "fixtures/onnx/tiny_resnet2d_external.onnx"] {
            let data = try Data(contentsOf: root.appendingPathComponent(f))
            XCTAssertNoThrow(try data.withUnsafeBytes { try OnnxNesting.check($0, file: f) }, f)
        }
    }
}

final class OnnxNestingLimitTests: XCTestCase {
    /// Model -> graph -> value_info -> type, then `sequences` x (Sequence -> TypeProto); with a
    /// subgraph (node -> attribute -> graph) in front when `subgraph`.
    func typeChain(sequences: Int, subgraph: Bool) -> [UInt8] {
        var type: [UInt8] = field(1, [0x08, 0x01])
        for _ in 0 ..< sequences { type = field(4, field(1, type)) }
        var graph = field(11, field(1, Array("x".utf8)) + field(2, type))
        if subgraph { graph = field(1, field(4, Array("If".utf8)) + field(5, field(1, Array("b".utf8)) + field(6, graph))) }
        return [0x08, 0x08] + field(7, graph)
    }

    func testNestingLimitIsExactly64Messages() throws {
        // 4 + 2 x 30 = 64 messages deep: accepted by the check.
        XCTAssertNoThrow(try typeChain(sequences: 30, subgraph: false).withUnsafeBytes { try OnnxNesting.check($0, file: "64.onnx") })
        // 7 + 2 x 29 = 65: refused.
        XCTAssertThrowsError(try typeChain(sequences: 29, subgraph: true).withUnsafeBytes { try OnnxNesting.check($0, file: "65.onnx") }) {
            XCTAssertTrue("\($0)".contains("nested deeper than 64"), "\($0)")
        }
    }
}
