// VideoMAE / TimeSformer conversion on the committed fixtures (fixtures/transformers, made by transformers 5.25
// and the original repositories' layouts): every variant of one network converts to the same canonical tensors;
// config.json is read as data and must agree with the tensors; custom code is noted, never followed; a fresh
// classifier on request; the full-size presets recognised from their shapes and configs (no big files needed).

import Families
import Foundation
import XCTest
import Formats
@testable import Convert

final class TransformerConvertTests: XCTestCase {
    static let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("fixtures/transformers")

    static func path(_ name: String) -> String { dir.appendingPathComponent(name).path }

    /// A Hugging Face folder of the fixtures, converted as `sfnet convert FOLDER` does (config.json as the architecture).
    func convertFolder(_ name: String, config edit: (JSONValue) -> JSONValue = { $0 },
                       options: ConvertOptions = ConvertOptions()) throws -> ConversionResult {
        let contents = try HuggingFaceFolder.read(folder: Self.path(name))
        var o = options
        o.hfConfig = edit(contents.config)
        return try convertTensors(contents.checkpoint, options: o)
    }

    func convertFile(_ name: String, options: ConvertOptions = ConvertOptions()) throws -> ConversionResult {
        try convertTensors(try CheckpointReader.read(path: Self.path(name)), options: options)
    }

    /// config.json with keys replaced (nil removes the key), in place or appended.
    static func edited(_ config: JSONValue, _ changes: [(String, JSONValue?)]) -> JSONValue {
        guard case .object(var kv) = config else { return config }
        for (key, value) in changes {
            if let i = kv.firstIndex(where: { $0.0 == key }) {
                if let value { kv[i].1 = value } else { kv.remove(at: i) }
            } else if let value {
                kv.append((key, value))
            }
        }
        return .object(kv)
    }

    func assertSameTensors(_ a: ConversionResult, _ b: ConversionResult, _ label: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.tensors.names, b.tensors.names, label, file: file, line: line)
        for (name, t) in a.tensors.ordered {
            guard let u = b.tensors[name] else { continue }
            XCTAssertEqual(t.dtype, u.dtype, "\(label) \(name)", file: file, line: line)
            XCTAssertEqual(t.shape, u.shape, "\(label) \(name)", file: file, line: line)
            if let i = zip(t.data.raw, u.data.raw).enumerated().first(where: { $0.element.0 != $0.element.1 })?.offset {
                XCTFail("\(label) \(name): bytes differ first at byte \(i)", file: file, line: line)
            }
        }
    }

    func assertThrows(_ expression: @autoclosure () throws -> Any, _ phrases: [String], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try expression(), file: file, line: line) { error in
            for p in phrases { XCTAssertTrue("\(error)".contains(p), "expected '\(p)' in: \(error)", file: file, line: line) }
        }
    }

    // MARK: Every variant, the same tensors

    func testEveryVideoMAEFolderVariantConvertsToTheSameTensorsAndArchitecture() throws {
        let base = try convertFolder("tiny_videomae")
        XCTAssertEqual(base.naming, .huggingface)
        XCTAssertEqual(base.tensors.count, 36)
        XCTAssertEqual(base.counts.renamed, 4, "the two layers' q_bias and v_bias")
        XCTAssertNotNil(base.tensors["videomae.encoder.layer.0.attention.attention.query.bias"])
        XCTAssertNil(base.tensors["videomae.encoder.layer.0.attention.attention.key.bias"], "VideoMAE's key has no bias")
        let t = try XCTUnwrap(base.arch.transformer)
        XCTAssertEqual([t.hiddenSize, t.layers, t.heads, t.intermediateSize, t.patchSize, t.tubeletSize], [24, 2, 2, 48, 8, 2])
        XCTAssertEqual([base.arch.numFrames, base.arch.trainCrop, base.arch.numClasses], [4, 32, 5])
        XCTAssertEqual(t.layerNormEps, 1e-12, "config.json's layer_norm_eps (transformers' default)")
        XCTAssertEqual(t.fcNormEps, 1e-5, "fc_norm is nn.LayerNorm(hidden): 1e-5 whatever the config says")
        XCTAssertTrue(t.meanPooling)
        XCTAssertTrue(base.notes.contains { $0.hasPrefix("architecture from config.json: videomae, width 24, 2 layers, 2 heads") }, "\(base.notes)")
        for variant in ["tiny_videomae_sharded", "tiny_videomae_bin", "tiny_videomae_oldnames", "tiny_videomae_newnames"] {
            let r = try convertFolder(variant)
            assertSameTensors(base, r, variant)
            XCTAssertEqual(r.arch, base.arch, variant)
        }
        // transformers 5's own names (query.bias / value.bias) need no renaming.
        XCTAssertEqual(try convertFolder("tiny_videomae_newnames").counts.renamed, 0)
    }

    func testOriginalVideoMAELayoutSplitsQKVIntoTheSameTensorsWithTheOriginalEps() throws {
        let folder = try convertFolder("tiny_videomae")
        let original = try convertFile("tiny_videomae_orig.pth")
        XCTAssertEqual(original.naming, .videomaeOriginal)
        assertSameTensors(folder, original, "tiny_videomae_orig.pth")
        let q = try XCTUnwrap(original.report.first { $0.name == "videomae.encoder.layer.1.attention.attention.value.weight" })
        XCTAssertEqual(q.action, "split from blocks.1.attn.qkv.weight (rows of value)")
        // The shapes cannot show the original code's eps: 1e-6 in the blocks and in fc_norm, said in the notes.
        let t = try XCTUnwrap(original.arch.transformer)
        XCTAssertEqual(t.layerNormEps, 1e-6)
        XCTAssertEqual(t.fcNormEps, 1e-6)
        XCTAssertTrue(original.notes.contains { $0.contains("layer_norm_eps 1e-06, fc_norm eps 1e-06 (the original code's)") }, "\(original.notes)")
        // Nor the heads (hidden / 64, at least 1): the tiny model's 2 heads need the architecture given.
        XCTAssertEqual(t.heads, 1)
        XCTAssertTrue(original.notes.contains { $0.contains("1 attention heads assumed") }, "\(original.notes)")
        var exact = ConvertOptions()
        exact.arch = folder.arch
        XCTAssertEqual(try convertFile("tiny_videomae_orig.pth", options: exact).arch, folder.arch)

        let cls = try convertFolder("tiny_videomae_cls")
        XCTAssertFalse(try XCTUnwrap(cls.arch.transformer).meanPooling)
        XCTAssertEqual(cls.arch.transformer?.layerNormEps, 1e-6, "this folder's config.json says 1e-6")
        XCTAssertNotNil(cls.tensors["videomae.layernorm.weight"])
        XCTAssertNil(cls.tensors["fc_norm.weight"])
        let clsOriginal = try convertFile("tiny_videomae_cls_orig.pth")
        assertSameTensors(cls, clsOriginal, "tiny_videomae_cls_orig.pth ({\"module\": ...}, norm.*)")
        XCTAssertFalse(try XCTUnwrap(clsOriginal.arch.transformer).meanPooling, "no fc_norm in the file: first-token pooling")
    }

    func testOriginalTimeSformerLayoutConvertsToTheFolderTensors() throws {
        let folder = try convertFolder("tiny_timesformer")
        XCTAssertEqual(folder.arch.model, .timesformer)
        XCTAssertEqual(folder.tensors.count, 49)
        XCTAssertEqual(folder.arch.transformer?.layerNormEps, 1e-6)
        XCTAssertEqual(folder.arch.transformer?.attention, .dividedSpaceTime)
        let checkpoint = try CheckpointReader.read(path: Self.path("tiny_timesformer_orig.pyth"))
        XCTAssertEqual(checkpoint.containerKey, "model_state")
        let original = try convertTensors(checkpoint, options: ConvertOptions())
        XCTAssertEqual(original.naming, .timesformerOriginal)
        assertSameTensors(folder, original, "tiny_timesformer_orig.pyth")
        // Frames and crop from the time and position tables; eps 1e-6 either way.
        XCTAssertEqual([original.arch.numFrames, original.arch.trainCrop], [4, 32])
        XCTAssertEqual(original.arch.transformer?.layerNormEps, 1e-6)
        XCTAssertNotNil(original.report.first { $0.name == "timesformer.encoder.layer.0.temporal_dense.weight" && $0.action.contains("temporal_fc.weight") })
    }

    // MARK: config.json against the tensors (SECURITY 37)

    /// Guards the strict check with the config's architecture: an edited hidden_size is named with both shapes
    /// and the config it came from.
    func testConfigDisagreeingWithTheTensorsIsAnErrorNamingBoth() throws {
        assertThrows(try convertFolder("tiny_videomae") { Self.edited($0, [("hidden_size", .int(32))]) },
                     ["do not fit the model (videomae, width 32, 2 layers",
                      "videomae.embeddings.patch_embeddings.projection.weight: file has [24,3,2,8,8], model expects [32,3,2,8,8]",
                      "hint: config.json describes videomae, width 32"])
        assertThrows(try convertFolder("tiny_videomae") { Self.edited($0, [("num_hidden_layers", .int(3))]) },
                     ["(videomae, width 24, 3 layers", "videomae.encoder.layer.2.attention.attention.query.weight: missing from file, model expects [24,24]",
                      "config.json describes"])
        assertThrows(try convertFolder("tiny_videomae") { Self.edited($0, [("num_hidden_layers", .int(1))]) },
                     ["videomae.encoder.layer.1.attention.attention.query.weight: file has [24,24], model has no such tensor", "config.json describes"])
        assertThrows(try convertFolder("tiny_timesformer") { Self.edited($0, [("intermediate_size", .int(64))]) },
                     ["timesformer.encoder.layer.0.intermediate.dense.weight: file has [48,24], model expects [64,24]", "config.json describes"])
        // Frames and size decide TimeSformer's learned tables.
        assertThrows(try convertFolder("tiny_timesformer") { Self.edited($0, [("num_frames", .int(8))]) },
                     ["timesformer.embeddings.time_embeddings: file has [1,4,24], model expects [1,8,24]"])
        // Mean pooling said off: fc_norm is unused and videomae.layernorm missing.
        assertThrows(try convertFolder("tiny_videomae") { Self.edited($0, [("use_mean_pooling", .bool(false))]) },
                     ["videomae.layernorm.weight: missing from file", "fc_norm.weight: file has [24], model has no such tensor"])
        // More labels than the classifier has rows: the hint says where the count came from and what to do.
        let labels: JSONValue = .object((0 ..< 7).map { ("\($0)", .string("L\($0)")) })
        assertThrows(try convertFolder("tiny_videomae") { Self.edited($0, [("id2label", labels)]) },
                     ["classifier.weight: file has [5,24], model expects [7,24]",
                      "config.json describes 7 labels; the file's classifier does not fit 7 classes: pass --num-classes"])
        // The family itself.
        assertThrows(try convertFolder("tiny_videomae") { Self.edited($0, [("model_type", .string("timesformer"))]) },
                     ["config.json describes timesformer, but the tensors are videomae's"])
    }

    func testConfigIsReadAsDataWithItsLimits() throws {
        assertThrows(try convertFolder("tiny_videomae") { Self.edited($0, [("model_type", .string("bert"))]) },
                     [#"config.json model_type is "bert"; sfnet reads "videomae" and "timesformer" folders"#])
        assertThrows(try convertFolder("tiny_videomae") { Self.edited($0, [("model_type", nil)]) }, ["config.json model_type is missing"])
        assertThrows(try convertFolder("tiny_videomae") { Self.edited($0, [("hidden_size", .double(24.5))]) },
                     ["config.json hidden_size must be an integer, is 24.5"])
        assertThrows(try convertFolder("tiny_videomae") { Self.edited($0, [("hidden_size", .string("24"))]) },
                     [#"config.json hidden_size must be an integer, is "24""#])
        assertThrows(try convertFolder("tiny_videomae") { Self.edited($0, [("num_hidden_layers", .double(1e300))]) },
                     ["config.json num_hidden_layers must be an integer"])
        assertThrows(try convertFolder("tiny_videomae") { Self.edited($0, [("layer_norm_eps", .string("tiny"))]) },
                     ["config.json layer_norm_eps must be a number"])
        assertThrows(try convertFolder("tiny_videomae") { Self.edited($0, [("hidden_act", .string("relu"))]) },
                     [#"config.json hidden_act "relu" is not a GELU sfnet runs"#])
        assertThrows(try convertFolder("tiny_videomae") { Self.edited($0, [("num_channels", .int(1))]) },
                     ["config.json num_channels must be 3, is 1"])
        assertThrows(try convertFolder("tiny_videomae") { Self.edited($0, [("use_mean_pooling", .string("yes"))]) },
                     ["config.json use_mean_pooling must be true or false"])
        assertThrows(try convertFolder("tiny_timesformer") { Self.edited($0, [("attention_type", .string("joint_space_time"))]) },
                     [#"attention_type "joint_space_time": sfnet runs divided_space_time TimeSformers only"#])
        assertThrows(try convertFolder("tiny_videomae") { Self.edited($0, [("id2label", nil), ("num_labels", nil)]) },
                     ["config.json has neither id2label nor num_labels"])
        assertThrows(try convertFolder("tiny_videomae") { Self.edited($0, [("num_attention_heads", .int(5))]) },
                     ["num_attention_heads must be in 1...256 and divide hidden_size 24, is 5"])
        // num_labels stands in for id2label; gelu_new is GELU's tanh form.
        let r = try convertFolder("tiny_videomae", config: { Self.edited($0, [("id2label", nil), ("num_labels", .int(5)), ("hidden_act", .string("gelu_new"))]) })
        XCTAssertEqual(r.arch.numClasses, 5)
        XCTAssertEqual(r.arch.transformer?.hiddenAct, "gelu_tanh")
    }

    /// auto_map / trust_remote_code are noted and nothing else changes: the same tensors and architecture, the
    /// folder's .py files never read (only config.json and the weights are).
    func testCustomCodeIsNotedAndNeverFollowed() throws {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("sfnet-tf-\(UUID().uuidString)")
        addTeardownBlock { try? FileManager.default.removeItem(at: scratch) }
        try FileManager.default.copyItem(atPath: Self.path("tiny_videomae"), toPath: scratch.path)
        let canary = "/tmp/sfnet-canary-tfconvert-\(getpid())"
        try "open(\(JSONValue.quote(canary)), 'w').close()\n".write(toFile: scratch.path + "/modeling_evil.py", atomically: false, encoding: .utf8)
        let contents = try HuggingFaceFolder.read(folder: scratch.path)
        XCTAssertEqual(contents.files, ["config.json", "model.safetensors"])
        var o = ConvertOptions()
        o.hfConfig = Self.edited(contents.config, [("auto_map", .object([("AutoModelForVideoClassification", .string("modeling_evil.EvilModel"))])),
                                                   ("trust_remote_code", .bool(true))])
        let r = try convertTensors(contents.checkpoint, options: o)
        XCTAssertTrue(r.notes.contains("config.json names custom code (auto_map): not run or followed; the network is sfnet's own videomae"), "\(r.notes)")
        let plain = try convertFolder("tiny_videomae")
        assertSameTensors(plain, r, "auto_map")
        XCTAssertEqual(plain.arch, r.arch)
        XCTAssertFalse(plain.notes.contains { $0.contains("custom code") })
        XCTAssertFalse(FileManager.default.fileExists(atPath: canary))
    }

    // MARK: A fresh classifier

    func testNumClassesGivesAFreshClassifierAndKeepsEverythingElse() throws {
        var o = ConvertOptions(numClasses: 3, seed: 7)
        let r = try convertFolder("tiny_videomae", options: o)
        let plain = try convertFolder("tiny_videomae")
        XCTAssertEqual(r.arch.numClasses, 3)
        XCTAssertEqual(r.tensors["classifier.weight"]?.shape, [3, 24])
        XCTAssertEqual(r.tensors["classifier.bias"]?.floats(), [0, 0, 0])
        let w = try XCTUnwrap(r.tensors["classifier.weight"]?.floats())
        XCTAssertTrue(w.allSatisfy { abs($0) <= 0.04 } && Set(w).count == w.count, "N(0, 0.02) truncated at 2 std: \(w)")
        XCTAssertEqual(r.counts.initialized, 2)
        XCTAssertTrue(r.report.contains { $0.name == "classifier.weight" && $0.action.hasSuffix("(--num-classes 3)") })
        XCTAssertTrue(r.dropped.contains { $0.name == "classifier.weight" && $0.reason.contains("replaced by a fresh classifier (--num-classes 3); file has [5,24]") })
        for (name, t) in plain.tensors.ordered where !name.hasPrefix("classifier.") {
            XCTAssertEqual(r.tensors[name]?.floats(), t.floats(), name)
        }
        // Seeded: the same seed, the same head; another seed, another.
        XCTAssertEqual(try convertFolder("tiny_videomae", options: o).tensors["classifier.weight"]?.floats(), w)
        o.seed = 8
        XCTAssertNotEqual(try convertFolder("tiny_videomae", options: o).tensors["classifier.weight"]?.floats(), w)
        // A config whose labels disagree with the classifier converts once the head is replaced.
        let labels: JSONValue = .object((0 ..< 9).map { ("\($0)", .string("L\($0)")) })
        let nine = try convertFolder("tiny_timesformer", config: { Self.edited($0, [("id2label", labels)]) }, options: ConvertOptions(numClasses: 9))
        XCTAssertEqual(nine.tensors["classifier.weight"]?.shape, [9, 24])
        XCTAssertThrowsError(try convertFolder("tiny_videomae", options: ConvertOptions(numClasses: 0)))
    }

    // MARK: Full-size presets without full-size files

    /// The published sizes are recognised from their tensors' shapes (Hugging Face names) and from their config.json
    /// (transformers' defaults, as the Hub configs of MCG-NJU/videomae-* and facebook/timesformer-base-* give them).
    func testFullSizePresetsAreRecognisedFromShapesAndConfigs() throws {
        for name in ["videomae-s", "videomae-b", "timesformer-b"] {
            let preset = try ArchConfig.requirePreset(name)
            var shapes: [String: [Int]] = [:]
            for p in TransformerLayout(arch: preset).parameters { shapes[p.name] = p.shape }
            let fromShapes = try TransformerConvert.architecture(shapes: shapes, family: preset.model, naming: .huggingface)
            XCTAssertEqual(fromShapes.arch.preset, name, "\(fromShapes.notes)")
            XCTAssertTrue(fromShapes.notes.contains("matches preset \(name)"), "\(fromShapes.notes)")
            // Under the original repositories' names the eps are the original code's: not transformers' preset.
            if preset.model == .videomae {
                let original = try TransformerConvert.architecture(shapes: shapes, family: .videomae, naming: .videomaeOriginal)
                XCTAssertNil(original.arch.preset)
                XCTAssertEqual(original.arch.transformer?.layerNormEps, 1e-6)
            }
        }
        func config(_ pairs: [(String, JSONValue)]) throws -> ArchConfig {
            try TransformerConvert.architecture(fromHFConfig: .object(pairs + [("num_labels", .int(400))])).0
        }
        XCTAssertEqual(try config([("model_type", .string("videomae"))]).preset, "videomae-b")
        XCTAssertEqual(try config([("model_type", .string("videomae")), ("hidden_size", .int(384)), ("num_attention_heads", .int(6)),
                                   ("intermediate_size", .int(1536))]).preset, "videomae-s")
        XCTAssertEqual(try config([("model_type", .string("timesformer"))]).preset, "timesformer-b")
        // One field off a preset is a custom architecture, not the preset.
        XCTAssertNil(try config([("model_type", .string("videomae")), ("layer_norm_eps", .double(1e-6))]).preset)
        XCTAssertNil(try config([("model_type", .string("timesformer")), ("num_frames", .int(16))]).preset)
    }

    func testNamingDetectionTellsTheTransformerLayoutsApart() throws {
        XCTAssertEqual(TransformerConvert.detectNaming(["videomae.embeddings.patch_embeddings.projection.weight"]), .huggingface)
        XCTAssertEqual(TransformerConvert.detectNaming(["timesformer.layernorm.weight"]), .huggingface)
        XCTAssertEqual(TransformerConvert.detectNaming(["patch_embed.proj.weight", "blocks.0.attn.qkv.weight"]), .videomaeOriginal)
        XCTAssertEqual(TransformerConvert.detectNaming(["model.time_embed", "model.blocks.0.attn.qkv.weight"]), .timesformerOriginal)
        XCTAssertEqual(TransformerConvert.detectNaming(["blocks.0.temporal_attn.qkv.weight"]), .timesformerOriginal)
        XCTAssertNil(TransformerConvert.detectNaming(["s1.pathway0_stem.conv.weight", "head.projection.weight"]))
        // Old and new names of the VideoMAE attention biases both map to query.bias / value.bias.
        XCTAssertEqual(Naming.huggingface.canonicalName("videomae.encoder.layer.3.attention.attention.q_bias").name,
                       "videomae.encoder.layer.3.attention.attention.query.bias")
        XCTAssertEqual(Naming.huggingface.canonicalName("videomae.encoder.layer.3.attention.attention.value.bias").name,
                       "videomae.encoder.layer.3.attention.attention.value.bias")
    }
    /// A layer-scale VideoMAE (the original code's init_values > 0) scales each block's branches by gamma_1 / gamma_2,
    /// which the Hugging Face network has no place for: refused by name, never dropped silently.
    func testLayerScaleVideoMAEIsRefused() throws {
        var ck = try CheckpointReader.read(path: Self.path("tiny_videomae_orig.pth"))
        XCTAssertNoThrow(try convertTensors(ck, options: ConvertOptions()))
        let values = [Float](repeating: 0.1, count: 24)
        let buffer = OwnedBuffer(count: values.count * 4)
        values.withUnsafeBytes { buffer.pointer.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        ck.tensors.set("blocks.0.gamma_1", Formats.Tensor(dtype: .f32, shape: [24], data: buffer.bytes))
        assertThrows(try convertTensors(ck, options: ConvertOptions()), ["blocks.0.gamma_1", "layer-scale"])
    }
}
