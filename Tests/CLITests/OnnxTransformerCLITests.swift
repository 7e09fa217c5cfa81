// VideoMAE and TimeSformer ONNX graphs through the binary: torch.onnx.export's graphs of the tiny models convert
// (the format found by content, the family and architecture by the graph) and pass `sfnet verify` against
// transformers' references; a graph that computes something else is refused with exit 1, its reason on stderr,
// and no output file.

import Formats
import Foundation
@testable import ONNX
import XCTest

final class OnnxTransformerCLITests: XCTestCase {
    static func fixture(_ name: String) -> String { CLI.fixture("transformers/" + name) }

    func testTorchOnnxGraphsConvertAndPassVerify() throws {
        let dir = try CLI.tempDir()
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        for (onnx, reference, family) in [("tiny_videomae.onnx", "tiny_videomae_ref.safetensors", "videomae"),
                                          ("tiny_timesformer_dynamic.onnx", "tiny_timesformer_ref.safetensors", "timesformer"),
                                          ("tiny_videomae_cls_nofold.onnx", "tiny_videomae_cls_ref.safetensors", "videomae")] {
            let out = dir.appendingPathComponent(onnx + ".safetensors").path
            let c = try CLI.run(["convert", Self.fixture(onnx), "-o", out])
            XCTAssertEqual(c.status, 0, c.stdout + c.stderr)
            XCTAssertTrue(c.stdout.contains("onnx.family=\(family)") && c.stdout.contains("architecture from the graph: \(family), width 24, 2 layers, 2 heads, 4x32²"),
                          c.stdout)
            let v = try CLI.run(["verify", out, "--reference", Self.fixture(reference)])
            XCTAssertEqual(v.status, 0, v.stdout + v.stderr)
            XCTAssertTrue(v.stdout.contains("output.logits") && v.stdout.contains("activation.layer.1") && v.stdout.contains("PASSED"), v.stdout)
        }
    }

    func testAGraphWithALearnedPositionTableIsRefusedAndWritesNothing() throws {
        let dir = try CLI.tempDir()
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let data = try Data(contentsOf: URL(fileURLWithPath: Self.fixture("tiny_videomae.onnx")))
        var m = try data.withUnsafeBytes { try OnnxModel.parse($0) }
        let k = try XCTUnwrap(m.nodes.firstIndex { $0.opType == "Constant" && $0.tensorValue?.dims == [1, 32, 24] })
        m.nodes[k].tensorValue = .floats("", dims: [1, 32, 24], (0 ..< 32 * 24).map { Float($0 % 7) * 0.1 })
        let bad = dir.appendingPathComponent("learned_pos.onnx").path, out = dir.appendingPathComponent("out.safetensors").path
        try Data(m.serialized()).write(to: URL(fileURLWithPath: bad))
        let c = try CLI.run(["convert", bad, "-o", out])
        XCTAssertEqual(c.status, 1, c.stdout + c.stderr)
        XCTAssertTrue(c.stderr.contains("learned_pos.onnx") && c.stderr.contains("not VideoMAE's fixed sinusoid table"), c.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
    }
}
