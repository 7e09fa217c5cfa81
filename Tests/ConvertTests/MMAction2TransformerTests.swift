// mmaction2's VideoMAE and TimeSformer checkpoints (fixtures/transformers/generate_mmaction2.py: the tiny
// transformers models in mmaction2's layout, names read from its source) convert to exactly the tensors of the
// Hugging Face folders they were written from: the fused qkv split, nn.MultiheadAttention's in_proj kept as
// qkv, mmcv's FFN layers, cls_head.fc_cls; the sinusoid buffer checked and left out; mmaction2's eps (1e-6
// everywhere) in the architecture; layer scale, a learned position table and the non-divided TimeSformers refused.

import Families
import Foundation
import XCTest
import Formats
@testable import Convert

final class MMAction2TransformerTests: XCTestCase {
    static func path(_ name: String) -> String { TransformerConvertTests.path(name) }

    func folder(_ name: String) throws -> ConversionResult {
        let contents = try HuggingFaceFolder.read(folder: Self.path(name))
        var o = ConvertOptions()
        o.hfConfig = contents.config
        return try convertTensors(contents.checkpoint, options: o)
    }

    func checkpoint(_ name: String) throws -> Checkpoint { try CheckpointReader.read(path: Self.path(name)) }

    func assertSameTensors(_ a: ConversionResult, _ b: ConversionResult, _ label: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.tensors.names, b.tensors.names, label, file: file, line: line)
        for (name, t) in a.tensors.ordered {
            guard let u = b.tensors[name] else { continue }
            XCTAssertEqual([t.dtype.shortName] + t.shape.map(String.init), [u.dtype.shortName] + u.shape.map(String.init), "\(label) \(name)", file: file, line: line)
            XCTAssertEqual(t.data.array, u.data.array, "\(label) \(name): bytes differ", file: file, line: line)
        }
    }

    func testVideoMAEInMMAction2LayoutConvertsToTheFolderTensors() throws {
        let hf = try folder("tiny_videomae")
        let ck = try checkpoint("tiny_videomae_mmaction2.pth")
        XCTAssertEqual(ck.containerKey, "state_dict")
        let mm = try convertTensors(ck, options: ConvertOptions())
        XCTAssertEqual(mm.naming, .mmaction2VideoMAE)
        assertSameTensors(hf, mm, "tiny_videomae_mmaction2.pth")
        XCTAssertEqual(mm.report.first { $0.name == "videomae.encoder.layer.1.attention.attention.key.weight" }?.action,
                       "split from backbone.blocks.1.attn.qkv.weight (rows of key)")
        XCTAssertEqual(mm.report.first { $0.name == "videomae.encoder.layer.0.intermediate.dense.weight" }?.action,
                       "renamed from backbone.blocks.0.mlp.layers.0.0.weight")
        XCTAssertEqual(mm.report.first { $0.name == "classifier.bias" }?.action, "renamed from cls_head.fc_cls.bias")
        // The position buffer: the fixed table, left out (sfnet computes it), said why.
        let pos = try XCTUnwrap(mm.dropped.first { $0.name == "backbone.pos_embed" })
        XCTAssertTrue(pos.reason.hasPrefix("the fixed sinusoid table (32 tokens)"), pos.reason)
        // mmaction2's network: LayerNorm eps 1e-6 in the blocks and in fc_norm (transformers' folder: 1e-12 and 1e-5).
        let t = try XCTUnwrap(mm.arch.transformer)
        XCTAssertEqual([t.layerNormEps, t.fcNormEps], [1e-6, 1e-6])
        XCTAssertTrue(t.meanPooling && t.qkvBias)
        // With the heads given (the tensors cannot show them), the architecture is the folder's but for the eps.
        var o = ConvertOptions()
        o.arch = hf.arch
        assertSameTensors(hf, try convertTensors(ck, options: o), "with the folder's architecture")
    }

    func testTimeSformerInMMAction2LayoutConvertsToTheFolderTensors() throws {
        let hf = try folder("tiny_timesformer")
        let ck = try checkpoint("tiny_timesformer_mmaction2.pth")
        let mm = try convertTensors(ck, options: ConvertOptions())
        XCTAssertEqual(mm.naming, .mmaction2TimeSformer)
        assertSameTensors(hf, mm, "tiny_timesformer_mmaction2.pth")
        XCTAssertEqual(mm.report.first { $0.name == "timesformer.encoder.layer.0.temporal_attention.attention.qkv.weight" }?.action,
                       "renamed from backbone.transformer_layers.layers.0.attentions.0.attn.in_proj_weight")
        XCTAssertEqual(mm.report.first { $0.name == "timesformer.encoder.layer.1.layernorm_after.bias" }?.action,
                       "renamed from backbone.transformer_layers.layers.1.ffns.0.norm.bias")
        XCTAssertEqual([mm.arch.numFrames, mm.arch.trainCrop], [4, 32], "from the time and position tables")
        XCTAssertEqual(mm.arch.transformer?.layerNormEps, 1e-6)
        XCTAssertTrue(mm.dropped.isEmpty, "\(mm.dropped)")
    }

    func testTheKeyMapsNameEveryModule() {
        XCTAssertEqual(Naming.mmaction2VideoMAE.canonicalName("backbone.norm.weight").name, "videomae.layernorm.weight", "no mean pooling: norm, token 0")
        XCTAssertEqual(Naming.mmaction2VideoMAE.canonicalName("backbone.blocks.11.attn.q_bias").name, "videomae.encoder.layer.11.attention.attention.query.bias")
        XCTAssertEqual(Naming.mmaction2TimeSformer.canonicalName("backbone.transformer_layers.layers.3.attentions.1.attn.out_proj.weight").name,
                       "timesformer.encoder.layer.3.attention.output.dense.weight")
        XCTAssertEqual(Naming.mmaction2TimeSformer.canonicalName("backbone.transformer_layers.layers.3.attentions.0.temporal_fc.bias").name,
                       "timesformer.encoder.layer.3.temporal_dense.bias")
        XCTAssertEqual(TransformerConvert.detectNaming(["backbone.blocks.0.attn.qkv.weight", "backbone.blocks.0.mlp.layers.0.0.weight"]), .mmaction2VideoMAE)
        XCTAssertEqual(TransformerConvert.detectNaming(["backbone.cls_token", "backbone.transformer_layers.layers.0.attentions.0.attn.in_proj_weight"]),
                       .mmaction2TimeSformer)
        // mmaction2's MViT (blocks with mlp.fc1) and its CNNs are not these.
        XCTAssertNil(TransformerConvert.detectNaming(["backbone.patch_embed.projection.weight", "backbone.blocks.0.attn.qkv.weight", "backbone.blocks.0.mlp.fc1.weight"]))
        XCTAssertNil(TransformerConvert.detectNaming(["backbone.conv1.conv.weight", "cls_head.fc_cls.weight"]))
    }

    func testWhatSfnetsNetworksDoNotComputeIsRefused() throws {
        func refused(_ ck: Checkpoint, _ phrase: String, file: StaticString = #filePath, line: UInt = #line) {
            XCTAssertThrowsError(try convertTensors(ck, options: ConvertOptions()), file: file, line: line) { e in
                XCTAssertTrue("\(e)".contains(phrase), "expected '\(phrase)' in: \(e)", file: file, line: line)
            }
        }
        // A learned position table (use_learnable_pos_emb): not the fixed sinusoid.
        var ck = try checkpoint("tiny_videomae_mmaction2.pth")
        let pos = try XCTUnwrap(ck.tensors["backbone.pos_embed"])
        var values = pos.floats()
        values[7 * 24 + 2] += 0.02
        ck.tensors.set("backbone.pos_embed", Tensor(dtype: .f32, shape: pos.shape, data: values.withUnsafeBytes { OwnedBuffer(copying: $0).bytes }))
        refused(ck, "backbone.pos_embed is not the fixed sinusoid table (row 7, column 2")
        // Layer scale (init_values > 0).
        ck = try checkpoint("tiny_videomae_mmaction2.pth")
        ck.tensors.set("backbone.blocks.1.gamma_1", Tensor(dtype: .f32, shape: [24], data: [Float](repeating: 0.1, count: 24).withUnsafeBytes { OwnedBuffer(copying: $0).bytes }))
        refused(ck, "backbone.blocks.1.gamma_1: layer scale")
        // A TimeSformer with separate norms (space_only / joint_space_time).
        ck = try checkpoint("tiny_timesformer_mmaction2.pth")
        ck.tensors.set("backbone.transformer_layers.layers.0.norms.0.weight", try XCTUnwrap(ck.tensors["backbone.norm.weight"]))
        refused(ck, "divided_space_time")
        // A missing tensor is named, strictly.
        ck = try checkpoint("tiny_timesformer_mmaction2.pth")
        ck.tensors.remove("backbone.transformer_layers.layers.1.attentions.0.temporal_fc.weight")
        refused(ck, "timesformer.encoder.layer.1.temporal_dense.weight")
    }
}
