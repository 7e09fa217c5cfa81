// ONNX import of VideoMAE and TimeSformer (issue 16, item 1): torch.onnx.export's graphs of the tiny models made
// by transformers (opset 17 static, opset 14 with decomposed LayerNorms, no constant folding, a dynamic batch)
// convert to exactly the tensors their Hugging Face folders convert to, with the architecture read from the graph,
// and pass verify against transformers' references; sfnet's own export reads back bit for bit; and graphs that
// compute something else (another attention scale, a learned position table, a mask on the scores, another
// activation or token regrouping), or are broken (truncated, a missing initializer, a cycle, a stray weight),
// are refused with an error naming what is wrong.

import Convert
import Families
import Formats
import Foundation
import Verify
import XCTest
@testable import ONNX

final class OnnxImportTransformerTests: XCTestCase {
    static let fixtures = OnnxImportTests.fixtures.appendingPathComponent("transformers")
    func fixture(_ rel: String) -> String { Self.fixtures.appendingPathComponent(rel).path }

    func tempDir() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sfnet-onnx-tf-import-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        return dir
    }

    func model(_ name: String) throws -> OnnxModel {
        let data = try Data(contentsOf: URL(fileURLWithPath: fixture(name)))
        return try data.withUnsafeBytes { try OnnxModel.parse($0, file: name) }
    }

    /// Converts `onnx` and the folder it was exported from; the same tensors (names, dtypes, bytes) and the same
    /// architecture, and the ONNX conversion passes verify against the folder's reference.
    func assertSameAsFolder(_ onnx: String, folder: String, reference: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let dir = try tempDir()
        let fromOnnx = dir.appendingPathComponent("onnx.safetensors").path, fromFolder = dir.appendingPathComponent("folder.safetensors").path
        let summary = try OnnxImport.convert(ConvertRequest(input: fixture(onnx), output: fromOnnx))
        _ = try ConvertPipeline.run(ConvertRequest(input: fixture(folder), output: fromFolder))
        XCTAssertEqual(summary.result.counts.initialized, 0, onnx, file: file, line: line)
        XCTAssertEqual(summary.result.naming, .huggingface, file: file, line: line)
        XCTAssertTrue(summary.result.notes.contains { $0.hasPrefix("architecture from the graph:") }, "\(summary.result.notes)", file: file, line: line)
        let a = try CheckpointReader.read(path: fromOnnx), b = try CheckpointReader.read(path: fromFolder)
        XCTAssertEqual(a.tensors.names, b.tensors.names, onnx, file: file, line: line)
        for name in b.tensors.names {
            guard let x = a.tensors[name], let y = b.tensors[name] else { continue }
            XCTAssertEqual(x.dtype, y.dtype, name, file: file, line: line)
            XCTAssertEqual(x.shape, y.shape, name, file: file, line: line)
            XCTAssertEqual(x.data.array, y.data.array, "\(onnx): \(name) differs from the folder's", file: file, line: line)
        }
        XCTAssertEqual(try ArchConfig.fromJSON(XCTUnwrap(a.metadataValue("sfnet.arch"))), try ArchConfig.fromJSON(XCTUnwrap(b.metadataValue("sfnet.arch"))),
                       "\(onnx): the graph's architecture", file: file, line: line)
        let report = try Verifier.run(weights: fromOnnx, reference: fixture(reference))
        for c in report.comparisons where !c.passed { XCTFail("\(onnx): \(c)", file: file, line: line) }
        XCTAssertTrue(report.passed, onnx, file: file, line: line)
    }

    func testTorchExportsOfVideoMAEConvertToTheFolderTensorsAndVerify() throws {
        try assertSameAsFolder("tiny_videomae.onnx", folder: "tiny_videomae", reference: "tiny_videomae_ref.safetensors")
        try assertSameAsFolder("tiny_videomae_opset14.onnx", folder: "tiny_videomae", reference: "tiny_videomae_ref.safetensors")
        try assertSameAsFolder("tiny_videomae_cls_nofold.onnx", folder: "tiny_videomae_cls", reference: "tiny_videomae_cls_ref.safetensors")
        try assertSameAsFolder("tiny_videomae_opset20.onnx", folder: "tiny_videomae", reference: "tiny_videomae_ref.safetensors")
    }

    /// Constant nodes' tensors and string attributes (opset 20's Gelu approximate) survive OnnxModel's write and parse.
    func testConstantTensorsAndStringAttributesRoundTrip() throws {
        let m = try model("tiny_videomae_opset20.onnx")
        let gelu = try XCTUnwrap(m.nodes.first { $0.opType == "Gelu" })
        XCTAssertEqual(gelu.stringAttributes.map(\.name), ["approximate"])
        XCTAssertEqual(gelu.stringAttributes.first?.value, "none")
        let back = try m.serialized().withUnsafeBytes { try OnnxModel.parse($0) }
        for (a, b) in zip(m.nodes, back.nodes) {
            XCTAssertEqual(a.tensorValue?.rawData.array, b.tensorValue?.rawData.array, a.name)
            XCTAssertEqual(a.tensorValue?.dims, b.tensorValue?.dims, a.name)
            XCTAssertEqual(a.stringAttributes.map { "\($0.name)=\($0.value)" }, b.stringAttributes.map { "\($0.name)=\($0.value)" }, a.name)
        }
        let x = try OnnxImport.importModel(m), y = try OnnxImport.importModel(back)
        XCTAssertEqual(x.tensors.names, y.tensors.names)
        for name in x.tensors.names { XCTAssertEqual(x.tensors[name]!.data.array, y.tensors[name]?.data.array, name) }
    }

    func testTorchExportsOfTimeSformerConvertToTheFolderTensorsAndVerify() throws {
        try assertSameAsFolder("tiny_timesformer.onnx", folder: "tiny_timesformer", reference: "tiny_timesformer_ref.safetensors")
        try assertSameAsFolder("tiny_timesformer_dynamic.onnx", folder: "tiny_timesformer", reference: "tiny_timesformer_ref.safetensors")
    }

    /// What the graph says about the network: heads from the head split, eps from the LayerNorms (both generations of
    /// the op), pooling, fused or separate projections; each tensor's origin in the notes.
    func testTheArchitectureComesFromTheGraph() throws {
        let v = try OnnxImport.importModel(try model("tiny_videomae.onnx"), file: "v.onnx")
        let vArch = try ArchConfig.fromJSON(XCTUnwrap(v.metadataValue("onnx.arch")))
        let vt = try XCTUnwrap(vArch.transformer)
        XCTAssertEqual([vArch.numFrames, vArch.trainCrop, vArch.numClasses, vt.hiddenSize, vt.layers, vt.heads, vt.intermediateSize, vt.patchSize, vt.tubeletSize],
                       [4, 32, 5, 24, 2, 2, 48, 8, 2])
        XCTAssertEqual(vt.layerNormEps, 1e-12)
        XCTAssertEqual(vt.fcNormEps, 1e-5)
        XCTAssertTrue(vt.meanPooling && vt.qkvBias)
        XCTAssertEqual(v.metadataValue("onnx.attention"), "separate q/k/v")
        XCTAssertEqual(v.notes["videomae.encoder.layer.0.attention.attention.key.weight"]?.contains("transposed to [out, in]"), true)
        XCTAssertNil(v.tensors["videomae.encoder.layer.0.attention.attention.key.bias"])

        let c = try OnnxImport.importModel(try model("tiny_videomae_cls_nofold.onnx"), file: "c.onnx")
        let ct = try XCTUnwrap(ArchConfig.fromJSON(XCTUnwrap(c.metadataValue("onnx.arch"))).transformer)
        XCTAssertEqual(ct.layerNormEps, 1e-6)
        XCTAssertFalse(ct.meanPooling)
        XCTAssertEqual(c.notes["videomae.encoder.layer.1.output.dense.weight"]?.contains("behind a Transpose"), true)

        let t = try OnnxImport.importModel(try model("tiny_timesformer_dynamic.onnx"), file: "t.onnx")
        let tArch = try ArchConfig.fromJSON(XCTUnwrap(t.metadataValue("onnx.arch")))
        XCTAssertEqual(tArch.model, .timesformer)
        XCTAssertEqual([tArch.numFrames, tArch.trainCrop, tArch.transformer!.heads, tArch.transformer!.tubeletSize], [4, 32, 2, 1])
        XCTAssertEqual(tArch.transformer!.layerNormEps, 1e-6)
        XCTAssertEqual(t.metadataValue("onnx.attention"), "fused qkv")
        XCTAssertEqual(t.tensors["timesformer.encoder.layer.1.temporal_attention.attention.qkv.weight"]?.shape, [72, 24])
        XCTAssertEqual(t.tensors["timesformer.embeddings.time_embeddings"]?.shape, [1, 4, 24])
    }

    /// sfnet's own export (Gemm per linear on token rows, Split of the fused qkv, the sinusoid table as an initializer,
    /// opset 17 and 18, a dynamic batch, external data) reads back to the native tensors bit for bit.
    func testSfnetsOwnExportReadsBackBitExact() throws {
        let dir = try tempDir()
        for (folder, opset, external) in [("tiny_videomae", 17, false), ("tiny_videomae_cls", 18, true), ("tiny_timesformer", 18, false)] {
            let native = dir.appendingPathComponent(folder + ".safetensors").path
            _ = try ConvertPipeline.run(ConvertRequest(input: fixture(folder), output: native))
            let onnx = dir.appendingPathComponent("\(folder)_\(opset).onnx").path, back = dir.appendingPathComponent("\(folder)_\(opset).back.safetensors").path
            _ = try OnnxExporter.export(OnnxExportRequest(input: native, output: onnx, opset: opset, externalData: external))
            _ = try OnnxImport.convert(ConvertRequest(input: onnx, output: back))
            let a = try CheckpointReader.read(path: native), b = try CheckpointReader.read(path: back)
            XCTAssertEqual(a.tensors.names, b.tensors.names, folder)
            for name in a.tensors.names { XCTAssertEqual(a.tensors[name]!.data.array, b.tensors[name]?.data.array, "\(folder) opset \(opset): \(name)") }
            XCTAssertEqual(a.metadataValue("sfnet.arch"), b.metadataValue("sfnet.arch"), folder)
        }
    }

    // MARK: Refusals

    func assertRefused(_ m: OnnxModel, _ phrase: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try OnnxImport.importModel(m, file: "bad.onnx"), file: file, line: line) { e in
            guard let f = e as? FormatError else { return XCTFail("untyped error \(e)", file: file, line: line) }
            XCTAssertTrue(f.description.contains(phrase), "expected '\(phrase)' in: \(f.description)", file: file, line: line)
            XCTAssertTrue(f.description.contains("bad.onnx"), f.description, file: file, line: line)
        }
    }

    func index(_ m: OnnxModel, _ op: String, _ nth: Int = 0) -> Int { m.nodes.indices.filter { m.nodes[$0].opType == op }[nth] }

    func testTruncatedFilesAndGraphsAreRefused() throws {
        let bytes = try Array(Data(contentsOf: URL(fileURLWithPath: fixture("tiny_timesformer.onnx"))))
        for cut in [10, 1000, bytes.count / 3, bytes.count / 2, bytes.count - 7] {
            XCTAssertThrowsError(try Array(bytes[..<cut]).withUnsafeBytes { try OnnxImport.read(bytes: $0, modelPath: "cut.onnx") }) { e in
                XCTAssertTrue(e is FormatError, "cut at \(cut): \(e)")
            }
        }
        // The graph cut after the last layer: no classifier; cut inside a layer: an attention without its output projection.
        var m = try model("tiny_videomae.onnx")
        m.nodes.removeLast()
        assertRefused(m, "linear layers, expected the classifier")
        m = try model("tiny_videomae.onnx")
        m.nodes.removeSubrange(index(m, "MatMul", 5) ..< m.nodes.count)
        assertRefused(m, "output projection")
    }

    func testMissingInitializerAndCycleAreRefused() throws {
        var m = try model("tiny_timesformer.onnx")
        m.initializers.removeAll { $0.name == "net.timesformer.encoder.layer.1.temporal_layernorm.weight" }
        assertRefused(m, "reads 'net.timesformer.encoder.layer.1.temporal_layernorm.weight' before any node produces it")
        // A node that reads a later node's output (a cycle, or an unsorted graph).
        m = try model("tiny_videomae.onnx")
        let sm = index(m, "Softmax", 1)
        m.nodes[index(m, "MatMul", 0)].inputs[0] = m.nodes[sm].outputs[0]
        assertRefused(m, "before any node produces it")
        // A stray weight that no block uses.
        m = try model("tiny_videomae.onnx")
        m.initializers.append(.floats("stray", dims: [4, 4], [Float](repeating: 0.5, count: 16)))
        assertRefused(m, "initializer 'stray' [4, 4] is not part of any block")
    }

    func testGraphsThatComputeSomethingElseAreRefused() throws {
        // An attention scale other than head_dim^-0.5 (the q factor of torch's decomposed SDPA changed).
        var m = try model("tiny_videomae.onnx")
        let mul = index(m, "Mul", 0)
        let scaleName = m.nodes[mul].inputs[1]
        let k = try XCTUnwrap(m.nodes.firstIndex { $0.outputs == [scaleName] })
        m.nodes[k].tensorValue = .floats("", dims: [], [0.5])
        assertRefused(m, "sfnet's attention computes head_dim^-0.5")

        // A position table that is not the fixed sinusoid (a learned pos_embed).
        m = try model("tiny_videomae.onnx")
        let table = try XCTUnwrap(m.nodes.firstIndex { $0.opType == "Constant" && $0.tensorValue?.dims == [1, 32, 24] })
        var values = try XCTUnwrap(m.nodes[table].tensorValue).rawData.array.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        values[5 * 24 + 3] += 0.01
        m.nodes[table].tensorValue = .floats("", dims: [1, 32, 24], values)
        assertRefused(m, "not VideoMAE's fixed sinusoid table (row 5, column 3")

        // A mask added to the scores.
        m = try model("tiny_timesformer.onnx")
        let s = index(m, "Softmax", 0)
        let scores = m.nodes[s].inputs[0]
        m.initializers.append(.floats("mask", dims: [1, 1, 4, 4], [Float](repeating: 0, count: 16)))
        m.nodes.insert(OnnxNode("Add", name: "mask_add", inputs: [scores, "mask"], outputs: ["masked"]), at: s)
        m.nodes[s + 1].inputs[0] = "masked"
        assertRefused(m, "not the q k^T MatMul")

        // Another activation in the MLP (Erf swapped for Tanh is neither GELU form).
        m = try model("tiny_videomae.onnx")
        m.nodes[index(m, "Erf", 1)].opType = "Tanh"
        assertRefused(m, "neither GELU form")

        // Another divided space-time regrouping (the spatial attention's frames built along another axis order).
        m = try model("tiny_timesformer.onnx")
        let t = try XCTUnwrap(m.nodes.firstIndex { if case .ints([0, 3, 1, 2, 4])? = $0.attribute("perm") { return true }; return false })
        m.nodes[t].attributes = [("perm", .ints([0, 3, 2, 1, 4]))]
        assertRefused(m, "regrouping")

        // A second Conv makes it no transformer graph sfnet knows: the CNN walk refuses it, by name.
        m = try model("tiny_videomae.onnx")
        m.nodes.insert(OnnxNode("Conv", name: "extra", inputs: ["input", "net.videomae.embeddings.patch_embeddings.projection.weight"], outputs: ["extra"]), at: 0)
        XCTAssertThrowsError(try OnnxImport.importModel(m, file: "bad.onnx")) { XCTAssertTrue($0 is FormatError, "\($0)") }
    }

    /// A refused graph writes nothing through the CLI's library call either.
    func testRefusedConversionWritesNothing() throws {
        let dir = try tempDir()
        var m = try model("tiny_videomae.onnx")
        m.nodes[index(m, "Erf", 0)].opType = "Tanh"
        let bad = dir.appendingPathComponent("bad.onnx").path, out = dir.appendingPathComponent("out.safetensors").path
        try Data(m.serialized()).write(to: URL(fileURLWithPath: bad))
        XCTAssertThrowsError(try OnnxImport.convert(ConvertRequest(input: bad, output: out)))
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["bad.onnx"])
    }
}
