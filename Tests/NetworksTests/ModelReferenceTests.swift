// The network against real PyTorch: fixtures/reference/*_ref.safetensors hold
// inputs, logits and every stage activation computed by torch 2.15 from the
// checkpoint named in `sfnet.weights`, with the architecture in `sfnet.arch`.
// Pass: relative L2 <= 1e-5 on the logits and every activation, same top-1.
// fixtures/full/slowfast_r50_8x8_ref.safetensors (git-ignored, `generate.py --full`)
// is checked too when present and SFNET_FULL_REFERENCE=1.

import Families
import Convert
import Formats
import XCTest
@testable import Networks

final class ModelReferenceTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("fixtures")

    /// ||a - b|| / ||b|| in double.
    static func relativeL2(_ a: [Float], _ b: [Float]) -> Double {
        var diff = 0.0, norm = 0.0
        for (x, y) in zip(a, b) {
            diff += (Double(x) - Double(y)) * (Double(x) - Double(y))
            norm += Double(y) * Double(y)
        }
        return (diff / max(norm, .leastNormalMagnitude)).squareRoot()
    }

    static func floatTensor(_ t: Formats.Tensor) -> FloatTensor { FloatTensor(shape: t.shape, values: t.floats()) }

    /// Loads the reference and its weights, runs the model, compares. Returns the worst relative L2.
    @discardableResult
    private func check(_ relativePath: String, file: StaticString = #filePath, line: UInt = #line) throws -> Double {
        let path = Self.fixtures.appendingPathComponent(relativePath).path
        let ref = try CheckpointReader.read(path: path)
        let arch = try XCTUnwrap(ref.metadataValue("sfnet.arch"), "no sfnet.arch in \(relativePath)")
        let weightsFile = try XCTUnwrap(ref.metadataValue("sfnet.weights"), "no sfnet.weights in \(relativePath)")
        let config = try ArchConfig.fromJSON(arch)
        let weights = try CheckpointReader.read(path: Self.fixtures.appendingPathComponent(weightsFile).path)
        let model = try EvalNetwork(config: config, weights: weights.tensors)
        let names = config.pathways == 2 ? ["input.slow", "input.fast"] : ["input.x"]
        let inputs = try names.map { Self.floatTensor(try XCTUnwrap(ref.tensors[$0], "\(relativePath) has no \($0)")) }
        let out = try model.forward(inputs, capture: true)

        let expectedLogits = try XCTUnwrap(ref.tensors["output.logits"])
        XCTAssertEqual(out.logits.shape, expectedLogits.shape, relativePath, file: file, line: line)
        var worst = Self.relativeL2(out.logits.values, expectedLogits.floats())
        XCTAssertLessThanOrEqual(worst, 1e-5, "\(relativePath): logits", file: file, line: line)
        let k = config.numClasses
        for n in 0..<out.logits.shape[0] {
            let mine = Array(out.logits.values[(n * k)..<((n + 1) * k)]), theirs = Array(expectedLogits.floats()[(n * k)..<((n + 1) * k)])
            XCTAssertEqual(mine.firstIndex(of: mine.max()!), theirs.firstIndex(of: theirs.max()!),
                           "\(relativePath): top-1 of sample \(n)", file: file, line: line)
        }
        let captured = Dictionary(uniqueKeysWithValues: out.activations.map { ($0.name, $0.value) })
        let expectedNames = ref.tensors.names.filter { $0.hasPrefix("activation.") }
        XCTAssertFalse(expectedNames.isEmpty, "\(relativePath) holds no activations", file: file, line: line)
        for name in expectedNames {
            let key = String(name.dropFirst("activation.".count))
            guard let mine = captured[key] else {
                XCTFail("\(relativePath): the model captured no \(key) (has \(captured.keys.sorted()))", file: file, line: line)
                continue
            }
            let theirs = ref.tensors[name]!
            XCTAssertEqual(mine.shape, theirs.shape, "\(relativePath): \(key)", file: file, line: line)
            let error = Self.relativeL2(mine.values, theirs.floats())
            worst = max(worst, error)
            XCTAssertLessThanOrEqual(error, 1e-5, "\(relativePath): \(key) relative L2", file: file, line: line)
        }
        if ProcessInfo.processInfo.environment["SFNET_PRINT_ERRORS"] == "1" {
            print(String(format: "%@: worst relative L2 %.3g (logits %.3g)", relativePath, worst,
                         Self.relativeL2(out.logits.values, expectedLogits.floats())))
        }
        return worst
    }

    func testTinySlowFast8x8MatchesPyTorch() throws {
        try check("reference/tiny_slowfast_8x8_ref.safetensors")
    }

    func testTinySlowFast4x16MatchesPyTorch() throws {
        try check("reference/tiny_slowfast_4x16_ref.safetensors")
    }

    func testTinySlowOnlyMatchesPyTorch() throws {
        try check("reference/tiny_slow_only_ref.safetensors")
    }

    func testTinyResNet2DOnImagesMatchesPyTorch() throws {
        try check("reference/tiny_resnet2d_ref.safetensors")
    }

    /// X3D made by pytorchvideo (fixtures/x3d/generate_x3d.py): channel-wise convolutions, SE, Swish, lin_5.
    func testTinyX3DMatchesPytorchvideo() throws {
        try check("x3d/tiny_x3d_ref.safetensors")
    }

    func testFullSlowFastR50MatchesPyTorchWhenGenerated() throws {
        let path = "full/slowfast_r50_8x8_ref.safetensors"
        guard FileManager.default.fileExists(atPath: Self.fixtures.appendingPathComponent(path).path),
              ProcessInfo.processInfo.environment["SFNET_FULL_REFERENCE"] == "1" else {
            throw XCTSkip("set SFNET_FULL_REFERENCE=1 after `generate.py --full` to check the R50 reference")
        }
        try check(path)
    }
}
