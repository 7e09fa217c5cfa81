// `sfnet data synth --task source` and `sfnet pretrain` through the real binary (issue 14 item 4): the
// pretrained start the demo stands in for K400 with is native weights that say exactly what they are.

import Foundation
import XCTest
@testable import Formats

final class PretrainCLITests: XCTestCase {
    func testPretrainWritesNativeWeightsWhoseProvenanceSaysWhatTheyAre() throws {
        let dir = try CLI.tempDir()
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let data = dir.appendingPathComponent("source")
        let synth = try CLI.run(["data", "synth", "-o", data.path, "--task", "source", "--train-per-class", "2", "--val-per-class", "1",
                                 "--test-per-class", "0", "--size", "32", "--seconds", "1", "--seed", "11"])
        XCTAssertEqual(synth.status, 0, synth.stderr)
        XCTAssertTrue(synth.stdout.contains("synthetic.json"), synth.stdout)
        let out = dir.appendingPathComponent("pretrained.safetensors").path
        let args = ["pretrain", "--train", data.appendingPathComponent("train.csv").path, "--val", data.appendingPathComponent("val.csv").path,
                    "--arch", FinetuneCLITests.arch, "-o", out, "--epochs", "1", "--batch", "8", "--crop", "32", "--jitter", "32", "36",
                    "--sampling-rate", "2", "--seed", "11"]
        let r = try CLI.run(args)
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("pretrained on a synthetic source task, standing in for K400"), r.stdout)

        let ck = try CheckpointReader.read(path: out)
        XCTAssertEqual(ck.metadataValue("sfnet.format"), "1")
        XCTAssertNotNil(ck.metadataValue("sfnet.arch"))
        XCTAssertEqual(ck.metadataValue("sfnet.classes"),
                       "[\"drifting\",\"creeping\",\"darting\",\"orbiting\",\"swinging\",\"shaking\",\"flashing\",\"growing\"]")
        let source = try JSONParser.parse(try XCTUnwrap(ck.metadataValue("sfnet.source")))
        XCTAssertEqual(source["description"]?.stringValue, "pretrained on a synthetic source task, standing in for K400")
        XCTAssertEqual(source["source_task"]?["task"]?.stringValue, "source")
        XCTAssertEqual(source["source_task"]?["seed"]?.stringValue, "11")
        XCTAssertEqual(source["source_task"]?["train_per_class"]?.intValue, 2)
        XCTAssertEqual(source["seed"]?.stringValue, "11")
        XCTAssertEqual(source["epochs"]?.intValue, 1)
        XCTAssertEqual(source["epoch"]?.intValue, 1)
        XCTAssertEqual(source["recipe"]?["crop"]?.intValue, 32)
        XCTAssertNotNil(number(source["source_val_map"]))
        XCTAssertEqual(source["train_sha256"]?.stringValue, try SHA256.hex(file: data.appendingPathComponent("train.csv").path))
        // Every tensor the network has, none of the optimizer's.
        XCTAssertFalse(ck.tensors.ordered.contains { $0.name.hasPrefix("optimizer.") })
        XCTAssertNotNil(ck.tensors.ordered.first { $0.name == "head.projection.weight" })

        // An existing output is kept: refused without a flag, reused for the same request, retrained for another.
        let again = try CLI.run(args)
        XCTAssertEqual(again.status, 1, again.stdout + again.stderr)
        XCTAssertTrue(again.stderr.contains("exists"), again.stderr)
        let reused = try CLI.run(args + ["--reuse"])
        XCTAssertEqual(reused.status, 0, reused.stderr)
        XCTAssertTrue(reused.stdout.contains("reused"), reused.stdout)
        XCTAssertEqual(try CheckpointReader.read(path: out).metadataValue("sfnet.source"), ck.metadataValue("sfnet.source"))
        let other = try CLI.run(Array(args.dropLast(2)) + ["--seed", "12", "--reuse"])
        XCTAssertEqual(other.status, 0, other.stderr)
        XCTAssertFalse(other.stdout.contains("reused"), other.stdout)
        XCTAssertEqual(try JSONParser.parse(try XCTUnwrap(try CheckpointReader.read(path: out).metadataValue("sfnet.source")))["seed"]?.stringValue, "12")

        // The pretrained start fine-tunes on the target task: the head is replaced for its classes.
        let target = dir.appendingPathComponent("target")
        XCTAssertEqual(try CLI.run(["data", "synth", "-o", target.path, "--train-per-class", "2", "--val-per-class", "1", "--test-per-class", "0",
                                    "--size", "32", "--seconds", "1", "--seed", "3"]).status, 0)
        let ft = try CLI.run(["finetune", "--weights", out, "--skip-verify", "--train", target.appendingPathComponent("train.csv").path,
                              "--out", dir.appendingPathComponent("ft").path, "--epochs", "1", "--crop", "32", "--jitter", "32", "36",
                              "--sampling-rate", "2"])
        XCTAssertEqual(ft.status, 0, ft.stdout + ft.stderr)
        XCTAssertTrue(ft.stdout.contains("head replaced: 8 -> 4 classes"), ft.stdout)
    }
}
