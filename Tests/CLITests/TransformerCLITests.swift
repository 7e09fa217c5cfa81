// VideoMAE and TimeSformer through the binary: every Hugging Face folder of fixtures/transformers converts and
// passes `sfnet verify` against transformers' own outputs; the original repositories' files convert to the same
// tensors (with the architecture given, which their tensors cannot fully show); a reference with one logit
// moved fails; `sfnet inspect` reads a folder; the convert help lists the namings and the folder input.

import Formats
import Foundation
import XCTest

final class TransformerCLITests: XCTestCase {
    static func fixture(_ name: String) -> String { CLI.fixture("transformers/" + name) }

    var dir: URL!

    override func setUpWithError() throws {
        dir = try CLI.tempDir()
        let d = dir!
        addTeardownBlock { try? FileManager.default.removeItem(at: d) }
    }

    /// `sfnet convert INPUT -o <dir>/<out>`; the output's path.
    @discardableResult
    func convert(_ input: String, _ out: String, _ extra: [String] = [], file: StaticString = #filePath, line: UInt = #line) throws -> (path: String, run: RunResult) {
        let path = dir.appendingPathComponent(out).path
        let r = try CLI.run(["convert", input, "-o", path] + extra)
        XCTAssertEqual(r.status, 0, "convert \(input): \(r.stderr)", file: file, line: line)
        return (path, r)
    }

    func verify(_ weights: String, _ reference: String, file: StaticString = #filePath, line: UInt = #line) throws -> RunResult {
        try? FileManager.default.removeItem(atPath: weights + ".verified.json")
        return try CLI.run(["verify", weights, "--reference", reference])
    }

    func assertPasses(_ weights: String, _ reference: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let v = try verify(weights, reference)
        XCTAssertEqual(v.status, 0, v.stdout + v.stderr, file: file, line: line)
        for entry in ["activation.embeddings", "activation.layer.0", "activation.layer.1", "activation.pooled", "output.logits"] {
            XCTAssertTrue(v.stdout.contains(entry), "\(entry) not compared: \(v.stdout)", file: file, line: line)
        }
        XCTAssertTrue(v.stdout.contains("PASSED"), v.stdout, file: file, line: line)
        XCTAssertTrue(FileManager.default.fileExists(atPath: weights + ".verified.json"), file: file, line: line)
    }

    func assertSameTensors(_ a: String, _ b: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let x = try CheckpointReader.read(path: a), y = try CheckpointReader.read(path: b)
        XCTAssertEqual(x.tensors.names, y.tensors.names, "\(a) vs \(b)", file: file, line: line)
        for (name, t) in x.tensors.ordered {
            guard let u = y.tensors[name] else { continue }
            assertSameTensor(t, u, name, file: file, line: line)
        }
    }

    // MARK: Folders

    func testEveryVideoMAEFolderConvertsToTheSameWeightsAndPassesVerify() throws {
        let reference = Self.fixture("tiny_videomae_ref.safetensors")
        let (base, first) = try convert(Self.fixture("tiny_videomae"), "videomae.safetensors")
        XCTAssertTrue(first.stdout.contains("(safetensors, huggingface naming)") && first.stdout.contains("(videomae, 5 classes)"), first.stdout)
        XCTAssertTrue(first.stdout.contains("note: Hugging Face folder: config.json, model.safetensors"), first.stdout)
        XCTAssertTrue(first.stdout.contains("note: architecture from config.json: videomae, width 24, 2 layers, 2 heads, 4x32², 5 classes"), first.stdout)
        try assertPasses(base, reference)
        for variant in ["tiny_videomae_sharded", "tiny_videomae_bin", "tiny_videomae_oldnames", "tiny_videomae_newnames"] {
            let (out, _) = try convert(Self.fixture(variant), variant + ".safetensors")
            try assertSameTensors(base, out)
            try assertPasses(out, reference)
        }
    }

    func testClassTokenPoolingAndTimeSformerFoldersPassVerify() throws {
        let (cls, _) = try convert(Self.fixture("tiny_videomae_cls"), "cls.safetensors")
        try assertPasses(cls, Self.fixture("tiny_videomae_cls_ref.safetensors"))
        let (ts, r) = try convert(Self.fixture("tiny_timesformer"), "ts.safetensors")
        XCTAssertTrue(r.stdout.contains("(timesformer, 5 classes)"), r.stdout)
        try assertPasses(ts, Self.fixture("tiny_timesformer_ref.safetensors"))
    }

    /// The provenance of a folder: its files in reading order, their total size, and the SHA-256 of their
    /// `sha256sum` listing (so the digest changes when any file does).
    func testFolderProvenanceListsItsFilesAndDigestsTheirListing() throws {
        let folder = Self.fixture("tiny_videomae_sharded")
        let (out, _) = try convert(folder, "sharded.safetensors")
        let source = try JSONParser.parse(try XCTUnwrap(CheckpointReader.read(path: out).metadataValue("sfnet.source")))
        let files = ["config.json", "model.safetensors.index.json", "model-00002-of-00003.safetensors",
                     "model-00001-of-00003.safetensors", "model-00003-of-00003.safetensors"]
        XCTAssertEqual(source["files"], .array(files.map { .string($0) }))
        XCTAssertEqual(source["file"]?.stringValue, "tiny_videomae_sharded")
        let sizes = try files.map { try XCTUnwrap(FileManager.default.attributesOfItem(atPath: folder + "/" + $0)[.size] as? Int) }
        XCTAssertEqual(source["bytes"]?.intValue, sizes.reduce(0, +))
        let listing = try files.map { "\(try SHA256.hex(file: folder + "/" + $0))  \($0)\n" }.joined()
        XCTAssertEqual(source["sha256"]?.stringValue, Array(listing.utf8).withUnsafeBytes { SHA256.hex($0) })
    }

    /// Without -o, a folder's output sits beside it as FOLDER.safetensors (a trailing '/' included).
    func testFolderDefaultOutputIsBesideTheFolder() throws {
        let copy = dir.appendingPathComponent("my_videomae")
        try FileManager.default.copyItem(atPath: Self.fixture("tiny_videomae"), toPath: copy.path)
        let r = try CLI.run(["convert", copy.path + "/"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir.appendingPathComponent("my_videomae.safetensors").path), r.stdout)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: copy.path).sorted(), ["config.json", "model.safetensors"])
    }

    // MARK: Original layouts

    /// The original repositories' files hold the same tensors. Their shapes cannot show the heads (nor VideoMAE's
    /// clip), which convert says; with the folder's architecture (--arch-json, the sfnet.arch a folder conversion
    /// wrote) they give the same weights and pass the same references.
    func testOriginalLayoutsConvertToTheSameWeightsAndVerifyWithTheArchitectureGiven() throws {
        for (original, folder, reference) in [("tiny_videomae_orig.pth", "tiny_videomae", "tiny_videomae_ref.safetensors"),
                                              ("tiny_videomae_cls_orig.pth", "tiny_videomae_cls", "tiny_videomae_cls_ref.safetensors"),
                                              ("tiny_timesformer_orig.pyth", "tiny_timesformer", "tiny_timesformer_ref.safetensors")] {
            let (fromFolder, _) = try convert(Self.fixture(folder), folder + ".safetensors")
            let (guessed, g) = try convert(Self.fixture(original), original + ".guessed.safetensors")
            XCTAssertTrue(g.stdout.contains(original.hasSuffix(".pyth") ? "timesformer-original naming" : "videomae-original naming"), g.stdout)
            XCTAssertTrue(g.stdout.contains("1 attention heads assumed (hidden 24 / 64"), g.stdout)
            try assertSameTensors(fromFolder, guessed)

            let arch = try XCTUnwrap(CheckpointReader.read(path: fromFolder).metadataValue("sfnet.arch"))
            let archFile = dir.appendingPathComponent(folder + ".arch.json")
            try arch.write(to: archFile, atomically: true, encoding: .utf8)
            let (exact, _) = try convert(Self.fixture(original), original + ".safetensors", ["--arch-json", archFile.path])
            try assertSameTensors(fromFolder, exact)
            try assertPasses(exact, Self.fixture(reference))
        }
    }

    // MARK: A reference that must fail

    /// The committed reference with one logit moved by 1e-3 of the logits' norm (far above float32's noise, far
    /// below a change of class): verify exits 1, says FAILED on output.logits, and writes no record.
    func testAReferenceWithOneLogitChangedFails() throws {
        let (weights, _) = try convert(Self.fixture("tiny_videomae"), "videomae.safetensors")
        let ref = Self.fixture("tiny_videomae_ref.safetensors")
        let original = try CheckpointReader.read(path: ref)
        let logits = try XCTUnwrap(original.tensors["output.logits"]).floats()
        let norm = logits.reduce(0) { $0 + $1 * $1 }.squareRoot()
        let items = original.tensors.ordered.map { name, t -> SafetensorsWriter.Item in
            guard name == "output.logits" else { return SafetensorsWriter.Item(name: name, tensor: t) }
            var moved = t.floats()
            moved[3] += 1e-3 * norm
            let buffer = OwnedBuffer(count: moved.count * 4)
            moved.withUnsafeBytes { buffer.pointer.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            return SafetensorsWriter.Item(name: name, tensor: Formats.Tensor(dtype: .f32, shape: t.shape, data: buffer.bytes))
        }
        let bad = dir.appendingPathComponent("bad_ref.safetensors").path
        try SafetensorsWriter.write(items, metadata: original.metadata.map { ($0.key, $0.value) }, to: bad, overwrite: false)
        try assertPasses(weights, ref)
        let f = try verify(weights, bad)
        XCTAssertEqual(f.status, 1, f.stdout + f.stderr)
        XCTAssertTrue(f.stdout.contains("FAILED"), f.stdout)
        let row = try XCTUnwrap(f.stdout.split(separator: "\n").first { $0.contains("output.logits") })
        XCTAssertFalse(row.hasSuffix("ok"), String(row))
        // The activations still match: only the moved entry fails.
        let pooled = try XCTUnwrap(f.stdout.split(separator: "\n").first { $0.contains("activation.pooled") })
        XCTAssertTrue(pooled.hasSuffix("ok"), String(pooled))
        XCTAssertFalse(FileManager.default.fileExists(atPath: weights + ".verified.json"))
    }

    // MARK: inspect

    func testInspectReadsAFolderAndATransformerFile() throws {
        let r = try CLI.run(["inspect", Self.fixture("tiny_videomae_sharded")])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("folder:     Hugging Face model folder: config.json, model.safetensors.index.json, "
                                        + "model-00002-of-00003.safetensors"), r.stdout)
        XCTAssertTrue(r.stdout.contains("naming:     huggingface"), r.stdout)
        XCTAssertTrue(r.stdout.contains("arch:       custom — videomae, width 24, 2 layers, 2 heads, 4x32², 5 classes"), r.stdout)
        XCTAssertTrue(r.stdout.contains("videomae.encoder.layer.1.attention.attention.q_bias"), "the folder's own names: \(r.stdout)")

        let j = try CLI.run(["inspect", Self.fixture("tiny_timesformer"), "--json"])
        XCTAssertEqual(j.status, 0, j.stderr)
        let json = try JSONParser.parse(j.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
        XCTAssertEqual(json["files"], .array([.string("config.json"), .string("model.safetensors")]))
        XCTAssertEqual(json["naming"]?.stringValue, "huggingface")
        XCTAssertEqual(json["arch"]?["model"]?.stringValue, "timesformer")
        guard case .array(let tensors)? = json["tensors"] else { return XCTFail("no tensors: \(j.stdout.prefix(400))") }
        XCTAssertEqual(tensors.count, 49)

        // An original-layout file: its naming, and the architecture its shapes give.
        let o = try CLI.run(["inspect", Self.fixture("tiny_timesformer_orig.pyth")])
        XCTAssertEqual(o.status, 0, o.stderr)
        XCTAssertTrue(o.stdout.contains("naming:     timesformer-original"), o.stdout)
        XCTAssertTrue(o.stdout.contains("arch:       custom — timesformer, width 24, 2 layers, 1 heads, 4x32²"), o.stdout)

        // A converted file: the transformer's architecture, not SlowFast's fields.
        let (native, _) = try convert(Self.fixture("tiny_videomae"), "videomae.safetensors")
        let n = try CLI.run(["inspect", native])
        XCTAssertTrue(n.stdout.contains("naming:     huggingface") && n.stdout.contains("— videomae, width 24, 2 layers, 2 heads"), n.stdout)

        // A hostile folder is refused by inspect as by convert.
        let h = try CLI.run(["inspect", CLI.fixture("hostile/files/c33_hf_shard_dotdot")])
        XCTAssertEqual(h.status, 1)
        XCTAssertTrue(h.stderr.contains("must be a plain file name inside the model folder"), h.stderr)
    }

    func testConvertHelpListsTheTransformerNamingsAndTheFolderInput() throws {
        let r = try CLI.run(["convert", "--help"])
        XCTAssertEqual(r.status, 0)
        let help = r.stdout.replacingOccurrences(of: "\n", with: " ").replacingOccurrences(of: #"\s+"#, with: " ", options: .regularExpression)
        for phrase in ["huggingface, videomae-original, timesformer-original", "q_bias / v_bias", "query.bias / value.bias",
                       "INPUT may be a Hugging Face model folder", "model.safetensors.index.json", "pytorch_model.bin",
                       "auto_map and trust_remote_code are noted, never run or followed", "layer_norm_eps", "1e-12", "1e-6",
                       "sfnet convert videomae-base-finetuned-kinetics/"] {
            XCTAssertTrue(help.contains(phrase), "'\(phrase)' not in the help: \(help)")
        }
    }
}
