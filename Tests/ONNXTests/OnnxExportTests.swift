// `sfnet export --to onnx` (issue 5, part 2): the tiny fixtures converted, exported,
// and parsed back with protobuf-c (unpack): inputs, outputs, op counts, the wiring
// of every block, initializer names and bytes equal to the native tensors, BN
// folding, and the refusals. onnxruntime parity lives in scripts/interop_onnx.py.

import Families
import CONNX
import Convert
import Foundation
import Formats
@testable import ONNX
import XCTest

final class OnnxExportTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("fixtures")

    func tempDir() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sfnet-onnx-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        return dir
    }

    /// Converts a fixture to a native file (with the reference's arch when given) and returns its path.
    func native(_ fixture: String, in dir: URL, arch: ArchConfig? = nil) throws -> String {
        let out = dir.appendingPathComponent(URL(fileURLWithPath: fixture).deletingPathExtension().lastPathComponent + ".safetensors").path
        _ = try ConvertPipeline.run(ConvertRequest(input: Self.fixtures.appendingPathComponent(fixture).path, output: out,
                                                   options: ConvertOptions(arch: arch)))
        return out
    }

    func referenceArch(_ name: String) throws -> ArchConfig {
        let ck = try CheckpointReader.read(path: Self.fixtures.appendingPathComponent("reference/\(name)").path)
        return try ArchConfig.fromJSON(XCTUnwrap(ck.metadataValue("sfnet.arch")))
    }

    func counts(_ m: OnnxModel) -> [String: Int] {
        m.nodes.reduce(into: [:]) { $0[$1.opType, default: 0] += 1 }
    }

    func testTinySlowFastExportParsesBackWithEveryTensorBitExact() throws {
        let dir = try tempDir()
        let w = try native("torch/tiny_pyslowfast.pyth", in: dir, arch: referenceArch("tiny_slowfast_8x8_ref.safetensors"))
        let out = dir.appendingPathComponent("model.onnx").path
        let s = try OnnxExporter.export(OnnxExportRequest(input: w, output: out))
        let m = try OnnxModel.read(path: out)
        XCTAssertEqual(s.nodes, m.nodes.count)
        XCTAssertEqual(m.irVersion, 8)
        XCTAssertEqual(m.opset, 17)
        XCTAssertEqual(m.producerName, "sfnet")
        XCTAssertEqual(m.inputs.map(\.name), ["slow", "fast"])
        XCTAssertEqual(m.inputs[0].dims, [.param("N"), .value(3), .value(2), .value(32), .value(32)])
        XCTAssertEqual(m.inputs[1].dims, [.param("N"), .value(3), .value(8), .value(32), .value(32)])
        XCTAssertEqual(m.outputs.map(\.name), ["logits", "probabilities"])
        XCTAssertEqual(m.outputs[0].dims, [.param("N"), .value(5)])
        XCTAssertEqual(m.outputs[0].elemType, 1)

        let arch = try ArchConfig.fromJSON(XCTUnwrap(m.metadata.first { $0.key == "sfnet.arch" }?.value))
        let expected = arch.expectedParameters().filter { $0.dtype.isFloatingPoint }
        let convs = expected.filter { $0.shape.count == 5 }.count
        let bns = expected.filter { $0.name.hasSuffix(".running_var") }.count
        let blocks = arch.stageDepths.reduce(0, +) * 2
        // Relu after every stem, a, b, fusion and block; Add per block; branch1 in block 0 of each stage and pathway.
        XCTAssertEqual(convs, 2 + blocks * 3 + 8 + 4)
        XCTAssertEqual(counts(m), [
            "Conv": convs, "BatchNormalization": bns, "Relu": 2 + blocks * 3 + 4, "MaxPool": 2, "Concat": 5,
            "Add": blocks, "AveragePool": 2, "Flatten": 1, "Gemm": 1, "Softmax": 1,
        ])

        // Initializers: the native tensors, same names, same float32 bytes, nothing else.
        let ck = try CheckpointReader.read(path: w)
        XCTAssertEqual(m.initializers.map(\.name).sorted(), expected.map(\.name).sorted())
        for i in m.initializers {
            let t = try XCTUnwrap(ck.tensors[i.name], i.name)
            XCTAssertEqual(i.dataType, OnnxInitializer.float, i.name)
            XCTAssertEqual(i.dims, t.shape, i.name)
            XCTAssertEqual(i.rawData.array, t.data.array, i.name)
        }

        // Wiring: stem, fusion concat slow-first, block with projection shortcut, head.
        let byName = Dictionary(uniqueKeysWithValues: m.nodes.map { ($0.name, $0) })
        let stem = try XCTUnwrap(byName["s1.pathway1_stem.conv"])
        XCTAssertEqual(stem.inputs, ["fast", "s1.pathway1_stem.conv.weight"])
        XCTAssertEqual(stem.attribute("kernel_shape"), .ints([5, 7, 7]))
        XCTAssertEqual(stem.attribute("strides"), .ints([1, 2, 2]))
        XCTAssertEqual(stem.attribute("pads"), .ints([2, 3, 3, 2, 3, 3]))
        XCTAssertEqual(byName["s1.pathway1_stem.bn"]?.attribute("epsilon"), .float(1e-5))
        XCTAssertEqual(byName["s1.pathway0_stem.pool"]?.attribute("kernel_shape"), .ints([1, 3, 3]))
        let fuse = try XCTUnwrap(byName["s1_fuse.conv_f2s"])
        XCTAssertEqual(fuse.attribute("strides"), .ints([4, 1, 1]))
        XCTAssertEqual(fuse.attribute("pads"), .ints([3, 0, 0, 3, 0, 0]))
        XCTAssertEqual(byName["s1_fuse.concat"]?.inputs, ["s1.pathway0_stem.pool", "s1_fuse.conv_f2s.relu"])
        XCTAssertEqual(byName["s2.pathway0_res0.branch2.a"]?.inputs.first, "s1_fuse")
        XCTAssertEqual(byName["s2.pathway0_res0.branch1"]?.inputs.first, "s1_fuse")
        XCTAssertEqual(byName["s2.pathway0_res0.add"]?.inputs, ["s2.pathway0_res0.branch1_bn", "s2.pathway0_res0.branch2.c_bn"])
        XCTAssertEqual(byName["s2.pathway0_res1.add"]?.inputs, ["s2.pathway0_res0", "s2.pathway0_res1.branch2.c_bn"])
        XCTAssertEqual(byName["s3.pathway0_res0.branch2.b"]?.attribute("strides"), .ints([1, 2, 2]))
        XCTAssertEqual(byName["s4.pathway0_res0.branch2.a"]?.attribute("kernel_shape"), .ints([3, 1, 1]))
        XCTAssertEqual(byName["head.pathway0_avgpool"]?.attribute("kernel_shape"), .ints([2, 1, 1]))
        XCTAssertEqual(byName["head.pathway1_avgpool"]?.attribute("kernel_shape"), .ints([8, 1, 1]))
        XCTAssertEqual(byName["head.concat"]?.inputs, ["head.pool.pathway0", "head.pool.pathway1"])
        XCTAssertEqual(byName["head.projection"]?.inputs, ["head.features", "head.projection.weight", "head.projection.bias"])
        XCTAssertEqual(byName["head.projection"]?.outputs, ["logits"])
        XCTAssertEqual(byName["head.projection"]?.attribute("transB"), .int(1))
        // Topological: every node input is a graph input, an initializer or an earlier output.
        var known = Set(m.inputs.map(\.name) + m.initializers.map(\.name))
        for n in m.nodes {
            for i in n.inputs { XCTAssertTrue(known.contains(i), "\(n.name) reads \(i) before it exists") }
            known.formUnion(n.outputs)
        }
    }

    func testRawProtobufCUnpackSeesTheSameModel() throws {
        let dir = try tempDir()
        let w = try native("reference/tiny_slow_only.pyth", in: dir)
        let out = dir.appendingPathComponent("slow.onnx").path
        _ = try OnnxExporter.export(OnnxExportRequest(input: w, output: out, batch: 3))
        let data = try Data(contentsOf: URL(fileURLWithPath: out))
        try data.withUnsafeBytes { raw in
            let p = try XCTUnwrap(onnx__model_proto__unpack(nil, raw.count, raw.baseAddress!.assumingMemoryBound(to: UInt8.self)))
            defer { onnx__model_proto__free_unpacked(p, nil) }
            let g = try XCTUnwrap(p.pointee.graph)
            XCTAssertEqual(p.pointee.ir_version, 8)
            XCTAssertEqual(p.pointee.opset_import[0]!.pointee.version, 17)
            XCTAssertEqual(String(cString: g.pointee.input[0]!.pointee.name), "x")
            let batch = g.pointee.input[0]!.pointee.type.pointee.tensor_type.pointee.shape.pointee.dim[0]!.pointee
            XCTAssertEqual(batch.value_case, ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE)
            XCTAssertEqual(batch.dim_value, 3)
            XCTAssertEqual(String(cString: g.pointee.node[0]!.pointee.op_type), "Conv")
            let t = g.pointee.initializer[0]!.pointee
            XCTAssertEqual(String(cString: t.name), "s1.pathway0_stem.conv.weight")
            XCTAssertEqual(t.has_raw_data, 1)
            XCTAssertEqual(t.raw_data.len, 4 * 3 * 1 * 7 * 7 * 4)
        }
        let m = try OnnxModel.read(path: out)
        XCTAssertEqual(m.inputs[0].dims.first, .value(3))
        XCTAssertNil(m.nodes.first { $0.opType == "Concat" }, "no fusion in Slow-only")
    }

    func testFoldedBNMatchesTheFormulaAndRemovesEveryBatchNorm() throws {
        let dir = try tempDir()
        let w = try native("torch/tiny_pyslowfast.pyth", in: dir)
        let out = dir.appendingPathComponent("folded.onnx").path
        _ = try OnnxExporter.export(OnnxExportRequest(input: w, output: out, opset: 18, foldBN: true))
        let m = try OnnxModel.read(path: out)
        XCTAssertEqual(m.opset, 18)
        XCTAssertNil(counts(m)["BatchNormalization"])
        let conv = try XCTUnwrap(m.nodes.first { $0.name == "s2.pathway1_res0.branch2.a" })
        XCTAssertEqual(conv.inputs.count, 3)
        let ck = try CheckpointReader.read(path: w).tensors
        let module = "s2.pathway1_res0.branch2.a", bn = module + "_bn"
        let w0 = ck[module + ".weight"]!.floats(), gamma = ck[bn + ".weight"]!.floats(), beta = ck[bn + ".bias"]!.floats()
        let mean = ck[bn + ".running_mean"]!.floats(), variance = ck[bn + ".running_var"]!.floats()
        let fw = try XCTUnwrap(m.initializer(module + ".weight")).rawData.raw.bindMemory(to: Float.self)
        let fb = try XCTUnwrap(m.initializer(module + ".bias")).rawData.raw.bindMemory(to: Float.self)
        let per = w0.count / gamma.count
        for o in 0..<gamma.count {
            let scale = Double(gamma[o]) / (Double(variance[o]) + 1e-5).squareRoot()
            XCTAssertEqual(fb[o], Float(Double(beta[o]) - Double(mean[o]) * scale), accuracy: 1e-6)
            for j in 0..<per { XCTAssertEqual(fw[o * per + j], Float(Double(w0[o * per + j]) * scale), accuracy: 1e-6) }
        }
        // No BN tensor left; the projection is unchanged.
        XCTAssertFalse(m.initializers.contains { $0.name.contains("_bn.") || $0.name.hasSuffix(".bn.weight") })
        XCTAssertEqual(m.initializer("head.projection.weight")?.rawData.array, ck["head.projection.weight"]!.data.array)
    }

    func testResNet2DTakesFourDimensionalInputAndUnsqueezes() throws {
        let dir = try tempDir()
        let w = try native("reference/tiny_resnet2d.pyth", in: dir, arch: referenceArch("tiny_resnet2d_ref.safetensors"))
        let out = dir.appendingPathComponent("r2d.onnx").path
        _ = try OnnxExporter.export(OnnxExportRequest(input: w, output: out))
        let m = try OnnxModel.read(path: out)
        XCTAssertEqual(m.inputs.map(\.name), ["x"])
        XCTAssertEqual(m.inputs[0].dims, [.param("N"), .value(3), .value(32), .value(32)])
        XCTAssertEqual(m.nodes.first?.opType, "Unsqueeze")
        XCTAssertEqual(m.initializer("x.unsqueeze_axes")?.dataType, OnnxInitializer.int64)
    }

    func testLargeTrainCropProjectsPerGridPositionAndAverages() throws {
        // crop 240: res5 is 8x8, the head's kernel 7x7 -> a 2x2 grid.
        let dir = try tempDir()
        var arch = try referenceArch("tiny_slow_only_ref.safetensors")
        arch.trainCrop = 240
        let w = try native("reference/tiny_slow_only.pyth", in: dir, arch: arch)
        for opset in [17, 18] {
            let out = dir.appendingPathComponent("grid\(opset).onnx").path
            _ = try OnnxExporter.export(OnnxExportRequest(input: w, output: out, opset: opset))
            let m = try OnnxModel.read(path: out)
            XCTAssertNil(counts(m)["Gemm"])
            XCTAssertEqual(counts(m)["ReduceMean"], 2)
            XCTAssertEqual(m.nodes.last?.outputs, ["probabilities"])
            let mean = try XCTUnwrap(m.nodes.first { $0.name == "head.mean" })
            XCTAssertEqual(mean.inputs.count, opset >= 18 ? 2 : 1)
        }
    }

    func testRefusalsWriteNothing() throws {
        let dir = try tempDir()
        let w = try native("reference/tiny_slow_only.pyth", in: dir)
        let out = dir.appendingPathComponent("m.onnx").path
        XCTAssertThrowsError(try OnnxExporter.export(OnnxExportRequest(input: w, output: out, opset: 12)))
        XCTAssertThrowsError(try OnnxExporter.export(OnnxExportRequest(input: w, output: out, batch: 0)))
        XCTAssertThrowsError(try OnnxExporter.export(OnnxExportRequest(input: w, output: dir.appendingPathComponent("no/m.onnx").path)))
        XCTAssertThrowsError(try OnnxExporter.export(OnnxExportRequest(input: w, output: w, force: true)))
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
        // Not a native file.
        XCTAssertThrowsError(try OnnxExporter.export(OnnxExportRequest(
            input: Self.fixtures.appendingPathComponent("reference/tiny_slow_only.pyth").path, output: out)))
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
        // Existing output: refused without force, replaced with it.
        try Data("old".utf8).write(to: URL(fileURLWithPath: out))
        XCTAssertThrowsError(try OnnxExporter.export(OnnxExportRequest(input: w, output: out)))
        XCTAssertEqual(try String(contentsOfFile: out, encoding: .utf8), "old")
        _ = try OnnxExporter.export(OnnxExportRequest(input: w, output: out, force: true))
        XCTAssertGreaterThan(try OnnxModel.read(path: out).nodes.count, 100)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.contains(".sfnet-tmp-") }
        XCTAssertEqual(leftovers, [])
    }

    func testSerializeParseRoundTripOfAHandBuiltModel() throws {
        var m = OnnxModel(irVersion: 8, opset: 17, producerVersion: "t", graphName: "g")
        m.inputs = [OnnxValueInfo(name: "a", dims: [.param("N"), .value(2)])]
        m.outputs = [OnnxValueInfo(name: "b", dims: [.param("N"), .value(2)])]
        m.initializers = [.floats("w", dims: [2], [1.5, -2]), .int64s("axes", [1, 2])]
        m.nodes = [OnnxNode("Mul", name: "mul", inputs: ["a", "w"], outputs: ["b"],
                            attributes: [("i", .int(-3)), ("is", .ints([1, 2])), ("f", .float(0.25))])]
        m.metadata = [("k", "v")]
        let back = try m.serialized().withUnsafeBytes { try OnnxModel.parse($0) }
        XCTAssertEqual(back.inputs, m.inputs)
        XCTAssertEqual(back.outputs, m.outputs)
        XCTAssertEqual(back.nodes.first?.attributes.map(\.value), [.int(-3), .ints([1, 2]), .float(0.25)])
        XCTAssertEqual(back.initializer("w")?.rawData.array, m.initializer("w")?.rawData.array)
        XCTAssertEqual(back.initializer("axes")?.dims, [2])
        XCTAssertEqual(back.metadata.first?.value, "v")
        XCTAssertThrowsError(try [UInt8]([0xff, 0xff, 0xff]).withUnsafeBytes { try OnnxModel.parse($0) })
    }

    /// The full SlowFast R50 8x8 with seeded random weights: export time and size. Runs only with
    /// SFNET_ONNX_FULL=DIR (it writes DIR/full_r50.safetensors and DIR/full_r50.onnx for the interop script).
    func testFullR50Export() throws {
        guard let keep = ProcessInfo.processInfo.environment["SFNET_ONNX_FULL"] else {
            throw XCTSkip("set SFNET_ONNX_FULL=DIR to export the full SlowFast R50 (138 MB)")
        }
        let arch = try XCTUnwrap(ArchConfig.preset(named: "slowfast-r50-8x8"))
        var state: UInt64 = 0x9E3779B97F4A7C15
        func next() -> Float {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: state >> 11) % 2_000_001 - 1_000_000) / 1_000_000
        }
        var items: [SafetensorsWriter.Item] = []
        for e in arch.expectedParameters() where e.dtype.isFloatingPoint {
            let count = e.shape.reduce(1, *)
            let fanIn = e.shape.count == 5 ? e.shape[1...].reduce(1, *) : e.shape.count == 2 ? e.shape[1] : 1
            var v = [Float](repeating: 0, count: count)
            for i in 0..<count {
                if e.name.hasSuffix(".running_var") { v[i] = 0.5 + abs(next()) }
                else if e.name.hasSuffix("bn.weight") || e.name.hasSuffix("_bn.weight") { v[i] = 0.8 + 0.2 * next() }
                else { v[i] = next() * (3 / Float(fanIn)).squareRoot() }
            }
            items.append(SafetensorsWriter.Item(name: e.name, tensor: Tensor(dtype: .f32, shape: e.shape,
                                                                              data: v.withUnsafeBytes { OwnedBuffer(copying: $0).bytes })))
        }
        let native = keep + "/full_r50.safetensors", out = keep + "/full_r50.onnx"
        try SafetensorsWriter.write(items, metadata: [("sfnet.format", "1"), ("sfnet.arch", try arch.jsonString()), ("sfnet.naming", "pyslowfast")],
                                    to: native, overwrite: true)
        let start = Date()
        let s = try OnnxExporter.export(OnnxExportRequest(input: native, output: out, force: true))
        print("full R50 ONNX export: \(String(format: "%.3f", Date().timeIntervalSince(start))) s, \(s.bytesWritten) bytes, \(s.nodes) nodes")
        let m = try OnnxModel.read(path: out)
        XCTAssertEqual(m.initializers.count, 552)
        XCTAssertEqual(m.initializers.reduce(0) { $0 + $1.rawData.count }, arch.stateElementCount * 4)
    }
}
