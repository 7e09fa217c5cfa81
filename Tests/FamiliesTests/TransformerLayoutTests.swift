// The transformer families' layout against what transformers itself wrote: every tensor of the committed
// tiny Hugging Face folders (fixtures/transformers, made by transformers 5.25's save_pretrained) is in the
// layout with its shape (under the in-memory names), nothing more or less; the presets' parameter counts
// are those of the full-size models transformers builds (generate_transformers.py --full: 22,033,936,
// 86,534,800 and 121,566,352, counted by `sfnet convert` on them); configs round-trip through sfnet.arch.

import Families
import Formats
import Foundation
import XCTest

final class TransformerLayoutTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static func fixture(_ p: String) -> String { root.appendingPathComponent("fixtures/" + p).path }

    /// transformers 5.25 writes the attention's q/v biases under their older on-disk names.
    static func inMemoryName(_ name: String) -> String {
        name.replacingOccurrences(of: ".attention.attention.q_bias", with: ".attention.attention.query.bias")
            .replacingOccurrences(of: ".attention.attention.v_bias", with: ".attention.attention.value.bias")
    }

    func testTheLayoutIsWhatTransformersWrote() throws {
        let cases: [(String, ArchConfig)] = [
            ("tiny_videomae", ArchConfig(transformer: .videoMAE(hidden: 24, layers: 2, heads: 2, intermediate: 48, patch: 8), family: .videomae,
                                         numClasses: 5, numFrames: 4, trainCrop: 32)),
            ("tiny_videomae_cls", ArchConfig(transformer: .videoMAE(hidden: 24, layers: 2, heads: 2, intermediate: 48, patch: 8, eps: 1e-6,
                                                                    meanPooling: false), family: .videomae, numClasses: 5, numFrames: 4, trainCrop: 32)),
            ("tiny_timesformer", ArchConfig(transformer: .timeSformer(hidden: 24, layers: 2, heads: 2, intermediate: 48, patch: 8),
                                            family: .timesformer, numClasses: 5, numFrames: 4, trainCrop: 32)),
        ]
        for (folder, arch) in cases {
            try arch.validate()
            let file = try CheckpointReader.read(path: Self.fixture("transformers/\(folder)/model.safetensors"))
            var written: [String: [Int]] = [:]
            for (name, t) in file.tensors.ordered { written[Self.inMemoryName(name)] = t.shape }
            var expected: [String: [Int]] = [:]
            for spec in arch.parameterSpecs { expected[spec.name] = spec.shape }
            XCTAssertEqual(Set(written.keys), Set(expected.keys), folder)
            for (name, shape) in expected { XCTAssertEqual(written[name], shape, "\(folder) \(name)") }
            XCTAssertEqual(arch.canonicalNaming, "huggingface")
            // sfnet.arch round trip, no CNN fields in it.
            let json = try arch.jsonString()
            XCTAssertFalse(json.contains("stage_depths"), json)
            XCTAssertEqual(try ArchConfig.fromJSON(json), arch)
        }
    }

    func testPresetParameterCountsAreTransformers() throws {
        for (preset, count) in [("videomae-s", 22_033_936), ("videomae-b", 86_534_800), ("timesformer-b", 121_566_352)] {
            let a = try ArchConfig.requirePreset(preset)
            XCTAssertEqual(a.parameterCount, count, preset)
            XCTAssertEqual(a.matchingPresetName, preset)
        }
    }

    func testRolesAndDepths() throws {
        let a = try ArchConfig.requirePreset("timesformer-b")
        let layout = TransformerLayout(arch: a)
        let roles = Dictionary(uniqueKeysWithValues: a.parameterSpecs.map { ($0.name, $0.role) })
        XCTAssertEqual(roles["timesformer.embeddings.cls_token"], .embedding)
        XCTAssertEqual(roles["timesformer.embeddings.time_embeddings"], .embedding)
        XCTAssertEqual(roles["timesformer.encoder.layer.3.temporal_layernorm.weight"], .normScale)
        XCTAssertEqual(roles["classifier.weight"], .linearWeight)
        XCTAssertEqual(layout.depth(of: "timesformer.embeddings.patch_embeddings.projection.weight"), 0)
        XCTAssertEqual(layout.depth(of: "timesformer.encoder.layer.11.output.dense.weight"), 12)
        XCTAssertEqual(layout.depth(of: "classifier.bias"), 13)
        XCTAssertEqual(layout.depth(of: "timesformer.layernorm.weight"), 13)
    }

    func testSinusoidTableIsTransformers() throws {
        // videomae_sinusoid_tables.json: SHA-256 of transformers' get_sinusoid_encoding_table as float32 little-endian bytes.
        let data = try Data(contentsOf: URL(fileURLWithPath: Self.fixture("transformers/videomae_sinusoid_tables.json")))
        let json = try data.withUnsafeBytes { try JSONParser.parse($0) }
        guard case .array(let tables)? = json["tables"] else { return XCTFail("no tables in the JSON") }
        var checked = 0
        for t in tables {
            guard let n = t["n_position"]?.intValue, let d = t["d_hid"]?.intValue, let want = t["sha256"]?.stringValue else { continue }
            let table = TransformerLayout.sinusoidTable(tokens: n, width: d)
            XCTAssertEqual(table.withUnsafeBytes { SHA256.hex($0) }, want, "\(n)x\(d)")
            checked += 1
        }
        XCTAssertGreaterThan(checked, 0, "the JSON named no table")
    }

    func testInvalidTransformerConfigsAreRefused() {
        var bad = ArchConfig(transformer: .videoMAE(hidden: 24, layers: 2, heads: 5, intermediate: 48, patch: 8), family: .videomae,
                             numClasses: 5, numFrames: 4, trainCrop: 32)
        XCTAssertThrowsError(try bad.validate()) { XCTAssertTrue("\($0)".contains("num_attention_heads"), "\($0)") }
        bad = ArchConfig(transformer: .timeSformer(hidden: 24, layers: 2, heads: 2, intermediate: 48, patch: 8), family: .timesformer,
                         numClasses: 5, numFrames: 4, trainCrop: 30)
        XCTAssertThrowsError(try bad.validate()) { XCTAssertTrue("\($0)".contains("patch_size"), "\($0)") }
    }
}
