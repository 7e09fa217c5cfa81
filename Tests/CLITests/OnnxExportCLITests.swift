// `sfnet export --to onnx` through the real binary: options, output, usage errors.

import Foundation
import ONNX
import XCTest

final class OnnxExportCLITests: XCTestCase {
    func testExportToONNXWithOptions() throws {
        let dir = try CLI.tempDir()
        let native = dir.appendingPathComponent("w.safetensors").path
        XCTAssertEqual(try CLI.run(["convert", CLI.fixture("torch/tiny_pyslowfast.pyth"), "-o", native]).status, 0)
        let out = dir.appendingPathComponent("m.onnx").path
        let r = try CLI.run(["export", native, "--to", "onnx", "-o", out])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("opset 17"), r.stdout)
        XCTAssertTrue(r.stdout.contains("slow (N, 3, 8, 224, 224), fast (N, 3, 32, 224, 224)"), r.stdout)
        let m = try OnnxModel.read(path: out)
        XCTAssertEqual(m.opset, 17)
        XCTAssertTrue(m.nodes.contains { $0.opType == "BatchNormalization" })

        // Existing output refused (exit 1), replaced with --force and the ONNX options.
        XCTAssertEqual(try CLI.run(["export", native, "--to", "onnx", "-o", out]).status, 1)
        let f = try CLI.run(["export", native, "--to", "onnx", "-o", out, "--force", "--fold-bn", "--opset", "18", "--batch", "4"])
        XCTAssertEqual(f.status, 0, f.stderr)
        let folded = try OnnxModel.read(path: out)
        XCTAssertEqual(folded.opset, 18)
        XCTAssertFalse(folded.nodes.contains { $0.opType == "BatchNormalization" })
        XCTAssertEqual(folded.inputs[0].dims.first, .value(4))

        // Usage errors (exit 2): bad opset, bad batch, ONNX options on a PyTorch target.
        let other = dir.appendingPathComponent("x.onnx").path
        XCTAssertEqual(try CLI.run(["export", native, "--to", "onnx", "-o", other, "--opset", "9"]).status, 2)
        XCTAssertEqual(try CLI.run(["export", native, "--to", "onnx", "-o", other, "--batch", "zero"]).status, 2)
        XCTAssertEqual(try CLI.run(["export", native, "--to", "pytorchvideo", "-o", other, "--fold-bn"]).status, 2)
        XCTAssertFalse(FileManager.default.fileExists(atPath: other))
    }
}
