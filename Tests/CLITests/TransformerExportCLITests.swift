// `sfnet export` of VideoMAE and TimeSformer weights through the real binary (issue 16, part 4): the
// tiny folders made by transformers 5.25 converted and exported to a Hugging Face folder (config.json
// byte for byte what save_pretrained wrote, the same on-disk tensors), to the original repositories'
// layouts (the original-layout fixtures' keys, order and bytes) and back, bit for bit; class names;
// the refusals, which write nothing; the folder's atomicity under kill -9. transformers' and torch's
// own loading of these exports is scripts/interop_transformers.py (`make interop`), onnxruntime's
// scripts/interop_onnx.py.

import Foundation
import XCTest
@testable import Formats

final class TransformerExportCLITests: XCTestCase {
    /// (Hugging Face folder fixture, original-layout fixture, its container, export target, export container)
    static let cases = [
        ("tiny_videomae", "tiny_videomae_orig.pth", "model", "videomae-original", "model"),
        ("tiny_videomae_cls", "tiny_videomae_cls_orig.pth", "module", "videomae-original", "model"),
        ("tiny_timesformer", "tiny_timesformer_orig.pyth", "model_state", "timesformer-original", "model_state"),
    ]

    func tempDir() throws -> URL {
        let dir = try CLI.tempDir()
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        return dir
    }

    @discardableResult
    func ok(_ args: [String], environment: [String: String] = [:], file: StaticString = #filePath, line: UInt = #line) throws -> RunResult {
        let r = try CLI.run(args, environment: environment)
        XCTAssertEqual(r.status, 0, "sfnet \(args.joined(separator: " ")): \(r.stderr)", file: file, line: line)
        return r
    }

    /// The refusal's exit status 1 and message.
    func refused(_ args: [String], _ message: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let r = try CLI.run(args)
        XCTAssertEqual(r.status, 1, "sfnet \(args.joined(separator: " ")): \(r.stdout) \(r.stderr)", file: file, line: line)
        XCTAssertTrue(r.stderr.contains(message), "expected '\(message)' in: \(r.stderr)", file: file, line: line)
    }

    func convert(_ fixture: String, to path: String, _ extra: [String] = []) throws {
        try ok(["convert", CLI.fixture("transformers/" + fixture), "-o", path, "--force"] + extra)
    }

    func assertSameTensors(_ a: Checkpoint, _ b: Checkpoint, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.tensors.names.sorted(), b.tensors.names.sorted(), what, file: file, line: line)
        for name in a.tensors.names { if let t = b.tensors[name] { assertSameTensor(a.tensors[name]!, t, "\(what): \(name)", file: file, line: line) } }
    }

    func testHuggingFaceFolderIsWhatSavePretrainedWroteAndConvertsBackBitExact() throws {
        let dir = try tempDir()
        for (folder, _, _, _, _) in Self.cases {
            let native = dir.appendingPathComponent(folder + ".safetensors").path, out = dir.appendingPathComponent(folder + "_hf").path
            try convert(folder, to: native)
            let r = try ok(["export", native, "--to", "huggingface", "-o", out])
            XCTAssertTrue(r.stdout.contains("(huggingface, \(folder.contains("timesformer") ? 49 : 36) tensors"), r.stdout)
            XCTAssertTrue(r.stdout.contains("id2label LABEL_0 ... LABEL_4"), r.stdout)
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: out).sorted(), ["config.json", "model.safetensors"])
            // config.json: byte for byte what transformers 5.25's save_pretrained wrote for the fixture.
            let written = try Data(contentsOf: URL(fileURLWithPath: out + "/config.json"))
            let fixture = try Data(contentsOf: URL(fileURLWithPath: CLI.fixture("transformers/\(folder)/config.json")))
            XCTAssertEqual(String(decoding: written, as: UTF8.self), String(decoding: fixture, as: UTF8.self), folder)
            // model.safetensors: the fixture's on-disk names (q_bias / v_bias) and bytes, metadata {"format": "pt"}.
            let ours = try CheckpointReader.read(path: out + "/model.safetensors")
            let theirs = try CheckpointReader.read(path: CLI.fixture("transformers/\(folder)/model.safetensors"))
            assertSameTensors(ours, theirs, folder)
            XCTAssertEqual(ours.metadata.map(\.key), theirs.metadata.map(\.key))
            XCTAssertEqual(ours.metadataValue("format"), "pt")
            XCTAssertEqual(ours.tensors.names, ours.tensors.names.sorted(), "tensors in name order, as safetensors writes them")
            if folder.hasPrefix("tiny_videomae") {
                XCTAssertEqual(ours.tensors.names.filter { $0.hasSuffix("q_bias") || $0.hasSuffix("v_bias") }.count, 4)
                XCTAssertFalse(ours.tensors.names.contains { $0.hasSuffix("query.bias") })
            }
            // Back: the same native tensors and architecture.
            let back = dir.appendingPathComponent(folder + "_back.safetensors").path
            try ok(["convert", out, "-o", back])
            let a = try CheckpointReader.read(path: native), b = try CheckpointReader.read(path: back)
            assertSameTensors(a, b, folder + " round trip")
            XCTAssertEqual(a.metadataValue("sfnet.arch"), b.metadataValue("sfnet.arch"), folder)
        }
    }

    func testOriginalLayoutsMatchTheOriginalFixturesAndConvertBackBitExact() throws {
        let dir = try tempDir()
        for (folder, original, fixtureContainer, target, container) in Self.cases {
            let native = dir.appendingPathComponent(folder + ".safetensors").path
            try convert(folder, to: native)
            let out = dir.appendingPathComponent(folder + (target == "videomae-original" ? ".pth" : ".pyth")).path
            let r = try ok(["export", native, "--to", target, "-o", out])
            XCTAssertTrue(r.stdout.contains("note: build the model with "), r.stdout)
            // Keys, their order and bytes of the original-layout fixture (made by the generator with torch.save).
            let ours = try CheckpointReader.read(path: out), theirs = try CheckpointReader.read(path: CLI.fixture("transformers/" + original))
            XCTAssertEqual(ours.format, .torchZip)
            XCTAssertEqual(ours.containerKey, container, folder)
            XCTAssertEqual(theirs.containerKey, fixtureContainer, folder)
            XCTAssertEqual(ours.tensors.names, theirs.tensors.names, "\(folder): names and order")
            assertSameTensors(ours, theirs, folder)
            if target == "videomae-original" {
                XCTAssertTrue(ours.tensors.names.contains("blocks.1.attn.qkv.weight"))
                XCTAssertEqual(ours.tensors["blocks.1.attn.qkv.weight"]?.shape, [72, 24])
            } else {
                XCTAssertTrue(ours.tensors.names.allSatisfy { $0.hasPrefix("model.") })
            }
            // Back with the architecture the tensors cannot show (heads, clip): the same native file.
            let arch = dir.appendingPathComponent(folder + ".arch.json")
            try XCTUnwrap(try CheckpointReader.read(path: native).metadataValue("sfnet.arch")).write(to: arch, atomically: true, encoding: .utf8)
            let back = dir.appendingPathComponent(folder + "_back.safetensors").path
            try ok(["convert", out, "-o", back, "--arch-json", arch.path])
            let a = try CheckpointReader.read(path: native), b = try CheckpointReader.read(path: back)
            assertSameTensors(a, b, folder + " round trip")
            XCTAssertEqual(a.metadataValue("sfnet.arch"), b.metadataValue("sfnet.arch"), folder)
        }
        // The original VideoMAE layout's eps (1e-6 everywhere) differs from transformers' default: said, not hidden.
        let r = try ok(["export", dir.appendingPathComponent("tiny_videomae.safetensors").path, "--to", "videomae-original",
                        "-o", dir.appendingPathComponent("again.pth").path])
        XCTAssertTrue(r.stdout.contains("the original code computes every LayerNorm with eps 1e-6; these weights were run with layer_norm_eps 1e-12"), r.stdout)
    }

    /// A native file whose metadata gets `extra` (what fine-tuning writes: sfnet.classes).
    func nativeWithMetadata(_ source: String, _ extra: [(String, String)], to path: String) throws {
        let ck = try CheckpointReader.read(path: source)
        let items = ck.tensors.names.map { SafetensorsWriter.Item(name: $0, tensor: ck.tensors[$0]!) }
        try SafetensorsWriter.write(items, metadata: ck.metadata.map { ($0.key, $0.value) } + extra, to: path, overwrite: true)
    }

    func testClassNamesBecomeId2LabelAndBadListsAreRefused() throws {
        let dir = try tempDir()
        let base = dir.appendingPathComponent("base.safetensors").path
        try convert("tiny_timesformer", to: base)
        let named = dir.appendingPathComponent("named.safetensors").path
        let classes = ["walking", "eating", "Äsen \"grazing\"", "flying", "sleeping"]
        try nativeWithMetadata(base, [("sfnet.classes", JSONValue.array(classes.map { .string($0) }).serialized)], to: named)
        let out = dir.appendingPathComponent("named_hf").path
        let r = try ok(["export", named, "--to", "huggingface", "-o", out])
        XCTAssertFalse(r.stdout.contains("LABEL_0"), r.stdout)
        let text = try String(contentsOfFile: out + "/config.json", encoding: .utf8)
        // json.dumps(sort_keys=True, indent=2): id2label in head order, label2id by code point, ASCII escapes.
        XCTAssertTrue(text.contains("""
              "id2label": {
                "0": "walking",
                "1": "eating",
                "2": "\\u00c4sen \\"grazing\\"",
                "3": "flying",
                "4": "sleeping"
              },
            """), text)
        XCTAssertTrue(text.contains("""
              "label2id": {
                "eating": 1,
                "flying": 3,
                "sleeping": 4,
                "walking": 0,
                "\\u00c4sen \\"grazing\\"": 2
              },
            """), text)
        let config = try JSONParser.parse(text)
        XCTAssertEqual(config["id2label"]?["2"]?.stringValue, "Äsen \"grazing\"")
        // The folder converts back (config.json read strictly) to the same tensors.
        try ok(["convert", out, "-o", dir.appendingPathComponent("back.safetensors").path])

        let duplicate = dir.appendingPathComponent("dup.safetensors").path
        try nativeWithMetadata(base, [("sfnet.classes", #"["a","b","a","c","d"]"#)], to: duplicate)
        try refused(["export", duplicate, "--to", "huggingface", "-o", dir.appendingPathComponent("dup_hf").path], "names 'a' twice")
        let short = dir.appendingPathComponent("short.safetensors").path
        try nativeWithMetadata(base, [("sfnet.classes", #"["a","b"]"#)], to: short)
        try refused(["export", short, "--to", "huggingface", "-o", dir.appendingPathComponent("short_hf").path], "names 2 classes, the classifier has 5")
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("dup_hf").path))
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("short_hf").path))
    }

    func testRefusalsWriteNothing() throws {
        let dir = try tempDir()
        let videomae = dir.appendingPathComponent("vm.safetensors").path, cnn = dir.appendingPathComponent("sf.safetensors").path
        try convert("tiny_videomae", to: videomae)
        try ok(["convert", CLI.fixture("torch/tiny_pyslowfast.pyth"), "-o", cnn])
        let out = dir.appendingPathComponent("out").path
        // Families against targets.
        try refused(["export", cnn, "--to", "huggingface", "-o", out], "huggingface is a layout of video transformers (VideoMAE, TimeSformer); these weights are slowfast")
        try refused(["export", cnn, "--to", "videomae-original", "-o", out], "hint: export slowfast weights with --to pyslowfast, pytorchvideo, mmaction2 or onnx")
        try refused(["export", videomae, "--to", "timesformer-original", "-o", out], "hint: export them with --to videomae-original or --to huggingface")
        try refused(["export", videomae, "--to", "pyslowfast", "-o", out], "hint: export video transformers with --to huggingface, videomae-original, timesformer-original or onnx")
        // What the original code cannot compute.
        let arch = dir.appendingPathComponent("tanh.json")
        var json = try XCTUnwrap(try CheckpointReader.read(path: videomae).metadataValue("sfnet.arch"))
        json = json.replacingOccurrences(of: #""hidden_act":"gelu""#, with: #""hidden_act":"gelu_tanh""#)
        try json.write(to: arch, atomically: true, encoding: .utf8)
        let tanh = dir.appendingPathComponent("tanh.safetensors").path
        try convert("tiny_videomae", to: tanh, ["--arch-json", arch.path])
        try refused(["export", tanh, "--to", "videomae-original", "-o", out], "the original repository's blocks use nn.GELU (exact, erf)")
        // ONNX: no BatchNormalization to fold; LayerNormalization needs opset 17.
        try refused(["export", videomae, "--to", "onnx", "-o", out, "--fold-bn"], "--fold-bn: videomae has no BatchNormalization")
        try refused(["export", videomae, "--to", "onnx", "-o", out, "--opset", "16"], "needs opset 17 or later (LayerNormalization)")
        XCTAssertEqual(try CLI.run(["export", videomae, "--to", "huggingface", "-o", out, "--cfg", "x.yaml"]).status, 2, "usage error")
        XCTAssertFalse(FileManager.default.fileExists(atPath: out), "nothing written")

        // Outputs: the input, a file where the folder goes, a folder holding the input, a missing parent.
        try refused(["export", videomae, "--to", "huggingface", "-o", videomae, "--force"], "output is the input file")
        let file = dir.appendingPathComponent("file").path
        try Data("x".utf8).write(to: URL(fileURLWithPath: file))
        try refused(["export", videomae, "--to", "huggingface", "-o", file, "--force"], "exists and is not a folder")
        try refused(["export", videomae, "--to", "huggingface", "-o", dir.path, "--force"], "is inside the output folder")
        try refused(["export", videomae, "--to", "videomae-original", "-o", dir.appendingPathComponent("no/such.pth").path], "the output directory does not exist")
        XCTAssertEqual(try String(contentsOfFile: file, encoding: .utf8), "x")

        // An existing folder: refused without --force; replaced whole with it; never one holding a subfolder.
        try ok(["export", videomae, "--to", "huggingface", "-o", out])
        try Data("stale".utf8).write(to: URL(fileURLWithPath: out + "/stale.txt"))
        try refused(["export", videomae, "--to", "huggingface", "-o", out], "output folder already exists; use --force to replace it")
        XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/stale.txt"), "untouched without --force")
        try ok(["export", videomae, "--to", "huggingface", "-o", out, "--force"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: out).sorted(), ["config.json", "model.safetensors"])
        try FileManager.default.createDirectory(atPath: out + "/keep", withIntermediateDirectories: false)
        try refused(["export", videomae, "--to", "huggingface", "-o", out, "--force"], "output folder holds 'keep', which is not a regular file")
        XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/keep"))
        // Nothing but the outputs and inputs is left in the folder (no temporaries).
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.contains(".sfnet-") }, [])
    }

    /// kill -9 in the middle of model.safetensors: the output path holds the old folder or none, the
    /// temporary folder is recognisable, and the next run removes it.
    func testKill9DuringFolderExportLeavesTheOldFolderAndNoPartialOne() throws {
        let dir = try tempDir()
        let native = dir.appendingPathComponent("ts.safetensors").path, out = dir.appendingPathComponent("ts_hf").path
        try convert("tiny_timesformer", to: native)
        // 40 KB into the atomic outputs: config.json is complete, model.safetensors (90 KB) is not.
        let killed = try CLI.run(["export", native, "--to", "huggingface", "-o", out], environment: ["SFNET_FAULT_KILL_AT_BYTE": "40000"])
        XCTAssertTrue(killed.signaled, "the run should have been killed: \(killed.stderr)")
        XCTAssertFalse(FileManager.default.fileExists(atPath: out), "no partial folder at the output path")
        let left = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasPrefix(".") }
        XCTAssertEqual(left.count, 1, "\(left)")
        XCTAssertTrue(left.allSatisfy { $0.hasPrefix(".ts_hf.sfnet-tmp-") }, "\(left)")

        try ok(["export", native, "--to", "huggingface", "-o", out])
        let before = try Data(contentsOf: URL(fileURLWithPath: out + "/model.safetensors"))
        let again = try CLI.run(["export", native, "--to", "huggingface", "-o", out, "--force"], environment: ["SFNET_FAULT_KILL_AT_BYTE": "40000"])
        XCTAssertTrue(again.signaled)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: out + "/model.safetensors")), before, "the old folder is intact")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: out).sorted(), ["config.json", "model.safetensors"])
        try ok(["export", native, "--to", "huggingface", "-o", out, "--force"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted(), ["ts.safetensors", "ts_hf"],
                       "the killed runs' temporaries are removed by the next run")
    }
}
