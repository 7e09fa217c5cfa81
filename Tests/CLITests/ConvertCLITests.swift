// `sfnet convert` end to end on the files real PyTorch wrote: every output tensor
// equals, byte for byte, what the safetensors package wrote for it.

import Foundation
import XCTest
@testable import Formats

final class ConvertCLITests: XCTestCase {
    func testEveryModelFixtureConvertsToTheExpectedTensors() throws {
        let dir = try CLI.tempDir()
        var converted = 0
        for (i, c) in try CLI.manifest().enumerated() where c["kind"]?.stringValue == "model" {
            let input = c["input"]!.stringValue!
            var args: [String] = []
            if case .array(let a)? = c["convert_args"] { args = a.compactMap(\.stringValue) }
            let out = dir.appendingPathComponent("out\(i).safetensors").path
            let r = try CLI.run(["convert", CLI.fixture(input), "-o", out] + args)
            XCTAssertEqual(r.status, 0, "\(input) \(args): \(r.stderr)")
            guard r.status == 0 else { continue }
            XCTAssertTrue(r.stdout.contains("converted"), r.stdout)
            let got = try CheckpointReader.read(path: out)
            let expected = try CheckpointReader.read(path: CLI.fixture(c["expected"]!.stringValue!))
            XCTAssertEqual(got.tensors.names.sorted(), expected.tensors.names.sorted(), "\(input): tensor set")
            for (n, t) in expected.tensors.ordered {
                guard let g = got.tensors[n] else { XCTFail("\(input): missing \(n)"); continue }
                assertSameTensor(g, t, "\(input) \(args): \(n)")
            }
            XCTAssertEqual(got.metadataValue("sfnet.format"), "1")
            XCTAssertEqual(got.metadataValue("sfnet.naming"), "pyslowfast")
            let source = try JSONParser.parse(got.metadataValue("sfnet.source")!)
            XCTAssertEqual(source["sha256"]?.stringValue, c["input_sha256"]?.stringValue, "\(input): provenance sha256")
            XCTAssertEqual(source["naming"]?.stringValue, c["naming"]?.stringValue, "\(input): detected naming")
            let arch = try JSONParser.parse(got.metadataValue("sfnet.arch")!)
            XCTAssertEqual(arch["width_per_group"]?.intValue, 4)
            XCTAssertEqual(arch["num_classes"]?.intValue, 5)
            XCTAssertNotNil(try JSONParser.parse(got.metadataValue("sfnet.report")!)["tensors"])
            converted += 1
        }
        XCTAssertGreaterThanOrEqual(converted, 14)
    }

    func testDefaultOutputNameAndOverwriteProtection() throws {
        let dir = try CLI.tempDir()
        let input = dir.appendingPathComponent("model.pyth").path
        try FileManager.default.copyItem(atPath: CLI.fixture("torch/tiny_pyslowfast.pyth"), toPath: input)
        let out = dir.appendingPathComponent("model.safetensors").path
        XCTAssertEqual(try CLI.run(["convert", input]).status, 0)
        XCTAssertTrue(FileManager.default.fileExists(atPath: out))
        let before = try Data(contentsOf: URL(fileURLWithPath: out))
        let again = try CLI.run(["convert", input, "--dtype", "f16"])
        XCTAssertEqual(again.status, 1)
        XCTAssertTrue(again.stderr.contains("already exists"), again.stderr)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: out)), before, "existing output untouched")
        XCTAssertEqual(try CLI.run(["convert", input, "--dtype", "f16", "--force"]).status, 0)
        XCTAssertEqual(try CheckpointReader.read(path: out).tensors["head.projection.weight"]?.dtype, .f16)
        // Nothing but the input and the output in the directory: no temporaries left.
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted(), ["model.pyth", "model.safetensors"])
    }

    func testNumClassesReplacesTheHeadAndRecordsIt() throws {
        let dir = try CLI.tempDir()
        let out = dir.appendingPathComponent("h.safetensors").path
        let r = try CLI.run(["convert", CLI.fixture("torch/tiny_pytorchvideo.pyth"), "-o", out, "--num-classes", "9"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let ck = try CheckpointReader.read(path: out)
        let w = ck.tensors["head.projection.weight"]!, b = ck.tensors["head.projection.bias"]!
        XCTAssertEqual(w.shape, [9, 160]) // slow 128 + fast 32 pooled features
        XCTAssertTrue(b.floats().allSatisfy { $0 == 0 })
        let values = w.floats()
        let std = (values.map { $0 * $0 }.reduce(0, +) / Float(values.count)).squareRoot()
        XCTAssertEqual(std, 0.01, accuracy: 0.002)
        XCTAssertEqual(try JSONParser.parse(ck.metadataValue("sfnet.arch")!)["num_classes"]?.intValue, 9)
        XCTAssertTrue(ck.metadataValue("sfnet.report")!.contains("initialized fresh"))
    }

    func testMismatchedArchitectureNamesKeyAndBothShapes() throws {
        let dir = try CLI.tempDir()
        let out = dir.appendingPathComponent("x.safetensors").path
        let r = try CLI.run(["convert", CLI.fixture("torch/tiny_pyslowfast.pyth"), "-o", out, "--arch", "slowfast-r50-8x8"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("s1.pathway0_stem.conv.weight"), r.stderr)
        XCTAssertTrue(r.stderr.contains("[4,3,1,7,7]") && r.stderr.contains("[64,3,1,7,7]"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
        let partial = try CLI.run(["convert", CLI.fixture("torch/tiny_pyslowfast.pyth"), "-o", out, "--arch", "slowfast-r50-8x8", "--allow-partial"])
        XCTAssertEqual(partial.status, 0, partial.stderr)
        XCTAssertTrue(try CheckpointReader.read(path: out).metadataValue("sfnet.report")!.contains("initialized"))
    }

    func testUsageErrorsExitWith2() throws {
        for args in [["convert"], ["convert", "x.pth", "--dtype", "f8"], ["convert", "x.pth", "--num-classes", "0"],
                     ["convert", "x.pth", "--arch", "resnet9000"], ["inspect"], ["frobnicate"]] {
            let r = try CLI.run(args)
            XCTAssertEqual(r.status, 2, "\(args): \(r.stderr)")
        }
        XCTAssertEqual(try CLI.run(["--help"]).status, 0)
        XCTAssertEqual(try CLI.run(["convert", "--help"]).status, 0)
    }

    func testTorchScriptAndMissingFilesExitWith1AndWriteNothing() throws {
        let dir = try CLI.tempDir()
        let out = dir.appendingPathComponent("ts.safetensors").path
        let r = try CLI.run(["convert", CLI.fixture("torch/torchscript_tiny.pt"), "-o", out])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("TorchScript archives are not supported"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
        let missing = try CLI.run(["inspect", dir.appendingPathComponent("nope.pth").path])
        XCTAssertEqual(missing.status, 1)
        XCTAssertTrue(missing.stderr.contains("no such file"), missing.stderr)
    }
}
