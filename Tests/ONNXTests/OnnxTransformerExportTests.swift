// `sfnet export --to onnx` of VideoMAE and TimeSformer (issue 16, part 4): the tiny folders made by
// transformers converted, exported and parsed back: input and outputs, op counts per layer, every
// weight an initializer under its canonical name with the native bytes, the sinusoid table's bytes,
// the eps and scale constants, topological order, opset 18's ReduceMean, the refusals. onnxruntime
// against transformers' logits lives in scripts/interop_onnx.py.

import Families
import Convert
import Foundation
import Formats
@testable import ONNX
import XCTest

final class OnnxTransformerExportTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("fixtures/transformers")

    func tempDir() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sfnet-onnx-tf-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        return dir
    }

    func native(_ folder: String, in dir: URL) throws -> String {
        let out = dir.appendingPathComponent(folder + ".safetensors").path
        _ = try ConvertPipeline.run(ConvertRequest(input: Self.fixtures.appendingPathComponent(folder).path, output: out, options: ConvertOptions()))
        return out
    }

    func counts(_ m: OnnxModel) -> [String: Int] { m.nodes.reduce(into: [:]) { $0[$1.opType, default: 0] += 1 } }

    /// Every weight under its canonical name with the native bytes; the rest sfnet's constants (and the table).
    func assertInitializers(_ m: OnnxModel, native: String, extra: Set<String>, file: StaticString = #filePath, line: UInt = #line) throws {
        let ck = try CheckpointReader.read(path: native)
        let names = Set(m.initializers.map(\.name))
        XCTAssertEqual(names.count, m.initializers.count, "unique initializer names", file: file, line: line)
        XCTAssertTrue(Set(ck.tensors.names).isSubset(of: names), "missing weights: \(Set(ck.tensors.names).subtracting(names))", file: file, line: line)
        for name in ck.tensors.names {
            let i = try XCTUnwrap(m.initializer(name), name, file: file, line: line)
            XCTAssertEqual(i.dims, ck.tensors[name]!.shape, name, file: file, line: line)
            XCTAssertEqual(i.rawData.array, ck.tensors[name]!.data.array, name, file: file, line: line)
        }
        let others = names.subtracting(ck.tensors.names)
        XCTAssertEqual(others.filter { !$0.hasPrefix("sfnet.") }, extra, file: file, line: line)
    }

    func assertTopological(_ m: OnnxModel, file: StaticString = #filePath, line: UInt = #line) {
        var known = Set(m.inputs.map(\.name) + m.initializers.map(\.name))
        var produced = Set<String>()
        for n in m.nodes {
            for i in n.inputs { XCTAssertTrue(known.contains(i), "\(n.name) reads \(i) before it exists", file: file, line: line) }
            for o in n.outputs { XCTAssertTrue(produced.insert(o).inserted, "\(o) produced twice", file: file, line: line) }
            known.formUnion(n.outputs)
        }
        XCTAssertTrue(known.contains("logits") && known.contains("probabilities"), file: file, line: line)
    }

    func floatValue(_ m: OnnxModel, _ name: String) throws -> Float {
        let i = try XCTUnwrap(m.initializer(name), name)
        return i.rawData.raw.load(as: Float.self)
    }

    func testVideoMAEGraphHasTheSinusoidTableAndEveryWeightBitExact() throws {
        let dir = try tempDir()
        let w = try native("tiny_videomae", in: dir)
        let out = dir.appendingPathComponent("vm.onnx").path
        let s = try OnnxExporter.export(OnnxExportRequest(input: w, output: out))
        let m = try OnnxModel.read(path: out)
        XCTAssertEqual(s.nodes, m.nodes.count)
        XCTAssertEqual(m.opset, 17)
        XCTAssertEqual(m.inputs.map(\.name), ["input"])
        XCTAssertEqual(m.inputs[0].dims, [.param("N"), .value(3), .value(4), .value(32), .value(32)])
        XCTAssertEqual(m.outputs.map(\.name), ["logits", "probabilities"])
        XCTAssertEqual(m.outputs[0].dims, [.param("N"), .value(5)])
        XCTAssertTrue(s.notes.contains { $0.contains("(N, 3, T, H, W)") }, "\(s.notes)")
        // Per layer: 2 LayerNormalization, q k v / output / fc1 / fc2 Gemms, QK^T and PV MatMuls, Softmax, one Erf GELU.
        let c = counts(m)
        XCTAssertEqual(c["LayerNormalization"], 2 * 2 + 1)
        XCTAssertEqual(c["Gemm"], 6 * 2 + 1)
        XCTAssertEqual(c["MatMul"], 2 * 2)
        XCTAssertEqual(c["Softmax"], 2 + 1)
        XCTAssertEqual(c["Erf"], 2)
        XCTAssertEqual(c["Conv"], 1)
        XCTAssertEqual(c["ReduceMean"], 1)
        XCTAssertNil(c["Gather"], "mean pooling, no first token")
        try assertInitializers(m, native: w, extra: ["videomae.embeddings.position_embeddings"])
        // The fixed table: TransformerLayout's sinusoid (transformers' get_sinusoid_encoding_table, checked by its tests).
        let table = try XCTUnwrap(m.initializer("videomae.embeddings.position_embeddings"))
        XCTAssertEqual(table.dims, [1, 32, 24])
        XCTAssertEqual(table.rawData.array, TransformerLayout.sinusoidTable(tokens: 32, width: 24).withUnsafeBytes { Array($0) })
        let byName = Dictionary(uniqueKeysWithValues: m.nodes.map { ($0.name, $0) })
        let conv = try XCTUnwrap(byName["videomae.embeddings.patch_embeddings.projection"])
        XCTAssertEqual(conv.inputs.first, "input")
        XCTAssertEqual(conv.attribute("kernel_shape"), .ints([2, 8, 8]))
        XCTAssertEqual(conv.attribute("strides"), .ints([2, 8, 8]))
        XCTAssertEqual(byName["videomae.encoder.layer.1.layernorm_before"]?.attribute("epsilon"), .float(Float(1e-12)))
        XCTAssertEqual(byName["fc_norm"]?.attribute("epsilon"), .float(Float(1e-5)))
        let key = try XCTUnwrap(byName["videomae.encoder.layer.0.attention.attention.key"])
        XCTAssertEqual(key.inputs.count, 2, "key has no bias")
        XCTAssertEqual(byName["videomae.encoder.layer.0.attention.attention.query"]?.inputs.count, 3)
        XCTAssertEqual(byName["classifier"]?.outputs, ["logits"])
        XCTAssertEqual(try floatValue(m, "sfnet.const.attention_scale"), Float(1 / 12.0.squareRoot()))
        assertTopological(m)
    }

    func testVideoMAEFirstTokenVariantGathersToken0AfterTheFinalLayerNorm() throws {
        let dir = try tempDir()
        let w = try native("tiny_videomae_cls", in: dir)
        let out = dir.appendingPathComponent("vmc.onnx").path
        _ = try OnnxExporter.export(OnnxExportRequest(input: w, output: out, opset: 18, batch: 3))
        let m = try OnnxModel.read(path: out)
        XCTAssertEqual(m.inputs[0].dims.first, .value(3))
        XCTAssertEqual(counts(m)["Gather"], 1)
        XCTAssertNil(counts(m)["ReduceMean"])
        let byName = Dictionary(uniqueKeysWithValues: m.nodes.map { ($0.name, $0) })
        XCTAssertEqual(byName["videomae.layernorm"]?.inputs.first, "videomae.pool.first_token")
        XCTAssertEqual(byName["videomae.layernorm"]?.attribute("epsilon"), .float(Float(1e-6)))
        try assertInitializers(m, native: w, extra: ["videomae.embeddings.position_embeddings"])
        assertTopological(m)
    }

    func testTimeSformerGraphDividesSpaceAndTime() throws {
        let dir = try tempDir()
        let w = try native("tiny_timesformer", in: dir)
        let out = dir.appendingPathComponent("ts.onnx").path
        _ = try OnnxExporter.export(OnnxExportRequest(input: w, output: out, opset: 18))
        let m = try OnnxModel.read(path: out)
        let c = counts(m)
        // Per layer: temporal and spatial attention (LayerNorm, fused qkv Gemm + Split, Softmax each), temporal
        // output + temporal_dense, spatial output, the MLP; the class token's frame outputs averaged (ReduceMean).
        XCTAssertEqual(c["LayerNormalization"], 3 * 2 + 1)
        XCTAssertEqual(c["Gemm"], 7 * 2 + 1)
        XCTAssertEqual(c["Split"], 2 * 2)
        XCTAssertEqual(c["Softmax"], 2 * 2 + 1)
        XCTAssertEqual(c["ReduceMean"], 2)
        XCTAssertEqual(c["Conv"], 1)
        XCTAssertEqual(c["Gather"], 1)
        for n in m.nodes where n.opType == "ReduceMean" {
            XCTAssertEqual(n.inputs.count, 2, "opset 18: axes is an input")
            XCTAssertEqual(m.initializer(n.inputs[1])?.rawData.raw.load(as: Int64.self), 1)
        }
        try assertInitializers(m, native: w, extra: [])
        let byName = Dictionary(uniqueKeysWithValues: m.nodes.map { ($0.name, $0) })
        XCTAssertEqual(byName["timesformer.embeddings.frames_first"]?.attribute("perm"), .ints([0, 2, 1, 3, 4]))
        XCTAssertEqual(byName["timesformer.embeddings.patch_embeddings.projection"]?.attribute("kernel_shape"), .ints([8, 8]))
        XCTAssertEqual(byName["timesformer.encoder.layer.0.temporal_layernorm"]?.attribute("epsilon"), .float(Float(1e-6)))
        XCTAssertEqual(byName["timesformer.encoder.layer.0.temporal_dense"]?.inputs.first, "timesformer.encoder.layer.0.temporal_attention.output.dense")
        XCTAssertEqual(byName["timesformer.layernorm"]?.inputs.first, "timesformer.pool.cls_token")
        assertTopological(m)
    }

    func testRefusalsWriteNothing() throws {
        let dir = try tempDir()
        let w = try native("tiny_videomae", in: dir)
        let out = dir.appendingPathComponent("x.onnx").path
        XCTAssertThrowsError(try OnnxExporter.export(OnnxExportRequest(input: w, output: out, opset: 16))) {
            XCTAssertTrue("\($0)".contains("needs opset 17 or later (LayerNormalization)"), "\($0)")
        }
        XCTAssertThrowsError(try OnnxExporter.export(OnnxExportRequest(input: w, output: out, foldBN: true))) {
            XCTAssertTrue("\($0)".contains("no BatchNormalization"), "\($0)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
    }
}
