// Hand-built graphs for the X3D walk and the importer's guards around it: a grouped conv that is not channel-wise
// is refused by name, a squeeze-excitation gate that does not scale b's output is refused, and a cycle of
// parameter-free ops (a hostile graph) ends in an error instead of a hang.

import Formats
import XCTest
@testable import ONNX

final class OnnxImportX3DTests: XCTestCase {
    func f(_ n: String, _ d: [Int], _ base: Float) -> OnnxInitializer {
        .floats(n, dims: d, (0..<d.reduce(1, *)).map { base + Float($0) * 0.01 })
    }

    /// Stem (conv_xy, channel-wise conv), one block with squeeze-excitation and Swish, conv_5, pool, lin_5, Gemm.
    func tinyX3D(gateInput: String = "b", groupB: Int = 4) -> OnnxModel {
        var m = OnnxModel(irVersion: 8, opset: 17, graphName: "g")
        m.inputs = [OnnxValueInfo(name: "x", dims: [.value(1), .value(3), .value(4), .value(32), .value(32)])]
        m.initializers = [f("wxy", [2, 3, 1, 3, 3], 0), f("wt", [2, 1, 5, 1, 1], 1), f("bt", [2], 2),
                          f("wa", [4, 2, 1, 1, 1], 3), f("ba", [4], 4), f("wb", [4, 4 / groupB, 3, 3, 3], 5), f("bb", [4], 6),
                          f("w1", [8, 4, 1, 1, 1], 7), f("b1", [8], 8), f("w2", [4, 8, 1, 1, 1], 9), f("b2", [4], 10),
                          f("wc", [2, 4, 1, 1, 1], 11), f("bc", [2], 12), f("ws", [2, 2, 1, 1, 1], 13),
                          f("w5", [4, 2, 1, 1, 1], 14), f("b5", [4], 15), f("wl", [6, 4, 1, 1, 1], 16), f("wh", [5, 6], 17), f("bh", [5], 18)]
        m.nodes = [
            OnnxNode("Conv", name: "xy", inputs: ["x", "wxy"], outputs: ["xy"]),
            OnnxNode("Conv", name: "t", inputs: ["xy", "wt", "bt"], outputs: ["t"], attributes: [("group", .int(2))]),
            OnnxNode("Relu", name: "rt", inputs: ["t"], outputs: ["rt"]),
            OnnxNode("Conv", name: "a", inputs: ["rt", "wa", "ba"], outputs: ["a"]),
            OnnxNode("Relu", name: "ra", inputs: ["a"], outputs: ["ra"]),
            OnnxNode("Conv", name: "b", inputs: ["ra", "wb", "bb"], outputs: ["b"], attributes: [("group", .int(groupB))]),
            OnnxNode("ReduceMean", name: "sp", inputs: ["b"], outputs: ["sp"]),
            OnnxNode("Conv", name: "fc1", inputs: ["sp", "w1", "b1"], outputs: ["fc1"]),
            OnnxNode("Relu", name: "r1", inputs: ["fc1"], outputs: ["r1"]),
            OnnxNode("Conv", name: "fc2", inputs: ["r1", "w2", "b2"], outputs: ["fc2"]),
            OnnxNode("Sigmoid", name: "sg", inputs: ["fc2"], outputs: ["sg"]),
            OnnxNode("Mul", name: "se", inputs: [gateInput, "sg"], outputs: ["se"]),
            OnnxNode("Sigmoid", name: "ss", inputs: ["se"], outputs: ["ss"]),
            OnnxNode("Mul", name: "sw", inputs: ["se", "ss"], outputs: ["sw"]),
            OnnxNode("Conv", name: "c", inputs: ["sw", "wc", "bc"], outputs: ["c"]),
            OnnxNode("Conv", name: "s", inputs: ["rt", "ws"], outputs: ["s"], attributes: [("strides", .ints([1, 2, 2]))]),
            OnnxNode("Add", name: "add", inputs: ["s", "c"], outputs: ["sum"]),
            OnnxNode("Relu", name: "r", inputs: ["sum"], outputs: ["r"]),
            OnnxNode("Conv", name: "c5", inputs: ["r", "w5", "b5"], outputs: ["c5"]),
            OnnxNode("Relu", name: "r5", inputs: ["c5"], outputs: ["r5"]),
            OnnxNode("AveragePool", name: "pool", inputs: ["r5"], outputs: ["pool"]),
            OnnxNode("Conv", name: "lin5", inputs: ["pool", "wl"], outputs: ["lin5"]),
            OnnxNode("Relu", name: "rl", inputs: ["lin5"], outputs: ["rl"]),
            OnnxNode("Flatten", name: "fl", inputs: ["rl"], outputs: ["fl"]),
            OnnxNode("Gemm", name: "fc", inputs: ["fl", "wh", "bh"], outputs: ["y"], attributes: [("transB", .int(1))]),
        ]
        return m
    }

    func testTheX3DWalkNamesEveryTensorFromTheGraph() throws {
        let ck = try OnnxImport.importModel(tinyX3D())
        XCTAssertEqual(ck.metadataValue("onnx.family"), "x3d")
        XCTAssertEqual(ck.metadataValue("onnx.x3d_inner"), "swish")
        XCTAssertEqual(ck.metadataValue("onnx.stage_depths"), "1")
        XCTAssertEqual(ck.tensors["s1.pathway0_stem.conv_xy.weight"]?.shape, [2, 3, 1, 3, 3])
        XCTAssertNil(ck.tensors["s1.pathway0_stem.conv_xy.bias"])
        XCTAssertEqual(ck.tensors["s1.pathway0_stem.bn.bias"]?.floats(), [2, 2.01])  // folded: an identity BN carrying the bias
        XCTAssertEqual(ck.tensors["s2.pathway0_res0.branch2.se.fc1.bias"]?.floats().first, 8)
        XCTAssertEqual(ck.tensors["s2.pathway0_res0.branch2.b.weight"]?.shape, [4, 1, 3, 3, 3])
        XCTAssertEqual(ck.tensors["s2.pathway0_res0.branch1_bn.bias"]?.floats(), [0, 0])  // shortcut without BN or bias
        XCTAssertEqual(ck.tensors["head.conv_5_bn.bias"]?.shape, [4])
        XCTAssertEqual(ck.tensors["head.lin_5.weight"]?.shape, [6, 4, 1, 1, 1])
        XCTAssertNil(ck.tensors["head.lin_5_bn.weight"])
        XCTAssertEqual(ck.tensors["head.projection.weight"]?.shape, [5, 6])
    }

    func testGroupedConvsOtherThanChannelWiseAndAStrayGateAreRefused() {
        XCTAssertThrowsError(try OnnxImport.importModel(tinyX3D(groupB: 2))) { error in
            XCTAssertTrue("\(error)".contains("conv 'b' has group 2") && "\(error)".contains("channel-wise"), "\(error)")
        }
        XCTAssertThrowsError(try OnnxImport.importModel(tinyX3D(gateInput: "sp"))) { error in
            XCTAssertTrue("\(error)".contains("s2.pathway0_res0: the squeeze-excitation gate does not scale b's output"), "\(error)")
        }
    }

    /// Concat(x, r) -> c, Relu(c) -> r: every value produced once, but following the data flow never ends.
    func testACycleOfParameterFreeOpsEndsInAnError() {
        var m = OnnxModel(irVersion: 8, opset: 17, graphName: "g")
        m.inputs = [OnnxValueInfo(name: "x", dims: [.value(1), .value(3), .value(1), .value(8), .value(8)])]
        m.nodes = [
            OnnxNode("Concat", name: "cat", inputs: ["x", "r"], outputs: ["c"], attributes: [("axis", .int(1))]),
            OnnxNode("Relu", name: "relu", inputs: ["c"], outputs: ["r"]),
        ]
        XCTAssertThrowsError(try OnnxImport.importModel(m))
    }
}
