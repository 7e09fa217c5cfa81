// Strict weight loading: every canonical tensor with its exact shape, nothing
// unused, num_batches_tracked optional, any float dtype; native files carry
// their architecture in `sfnet.arch`.

import Families
import Convert
import Formats
import XCTest
@testable import Networks

final class ModelLoadingTests: XCTestCase {
    private let config = TinyConfigs.slowFast

    private func loadError(_ map: TensorMap, config: ArchConfig? = nil) -> String? {
        do {
            _ = try EvalNetwork(config: config ?? self.config, weights: map)
            return nil
        } catch {
            return "\(error)"
        }
    }

    func testMissingKeyIsNamedWithItsShape() {
        var map = EvalNetwork.randomWeights(config: config, seed: 1)
        map.remove("s3.pathway1_res2.branch2.b.weight")
        let message = loadError(map)
        XCTAssertNotNil(message)
        XCTAssertTrue(message?.contains("s3.pathway1_res2.branch2.b.weight: missing, model expects [2,2,1,3,3]") ?? false, message ?? "")
    }

    func testWrongShapeNamesKeyAndBothShapes() {
        var map = EvalNetwork.randomWeights(config: config, seed: 1)
        // The classic slip: forgetting the fused fast channels on the slow pathway's input.
        let bad = Tensor(dtype: .f32, shape: [4, 4, 1, 1, 1], data: OwnedBuffer(count: 4 * 4 * 4).bytes)
        map.set("s2.pathway0_res0.branch2.a.weight", bad)
        let message = loadError(map) ?? ""
        XCTAssertTrue(message.contains("1 tensor does not fit the model"), message)
        XCTAssertTrue(message.contains("s2.pathway0_res0.branch2.a.weight: file has [4,4,1,1,1], model expects [4,6,1,1,1]"), message)
    }

    func testFusionKernelMismatchHintsAtTheOtherVariant() {
        var other = config
        other.fusionKernel = 5
        let map = EvalNetwork.randomWeights(config: other, seed: 1)
        let message = loadError(map) ?? ""
        XCTAssertTrue(message.contains("s1_fuse.conv_f2s.weight: file has [2,1,5,1,1], model expects [2,1,7,1,1]"), message)
        XCTAssertTrue(message.contains("4x16 weights with an 8x8 config"), message)
    }

    func testUnusedKeyIsAnError() {
        var map = EvalNetwork.randomWeights(config: config, seed: 1)
        map.set("head.extra.weight", Tensor(dtype: .f32, shape: [3], data: OwnedBuffer(count: 12).bytes))
        let message = loadError(map) ?? ""
        XCTAssertTrue(message.contains("head.extra.weight: file has [3], model has no such tensor"), message)
    }

    func testFusionBatchNormAgainstPlainFusionConfigIsExplained() {
        var plain = config
        plain.fusionNorm = false
        let message = loadError(EvalNetwork.randomWeights(config: config, seed: 1), config: plain) ?? ""
        XCTAssertTrue(message.contains("s1_fuse.bn.weight: file has [2], model has no such tensor"), message)
        XCTAssertTrue(message.contains("use fusion_norm true"), message)
    }

    func testBatchCountersAreOptionalAndAnyFloatDTypeLoads() throws {
        let map = EvalNetwork.randomWeights(config: config, seed: 3)
        var stripped = TensorMap()
        var half = TensorMap()
        for (name, t) in map.ordered where !name.hasSuffix("num_batches_tracked") {
            stripped.set(name, t)
            half.set(name, DTypeCast.cast(t, to: name.contains("branch2") ? .bf16 : .f16))
        }
        let reference = try EvalNetwork(config: config, weights: map)
        let noCounters = try EvalNetwork(config: config, weights: stripped)
        let lowPrecision = try EvalNetwork(config: config, weights: half)
        var rng = SeededGenerator(seed: 4)
        let inputs = [randomTensor([1, 3, 2, 32, 32], &rng), randomTensor([1, 3, 8, 32, 32], &rng)]
        let a = try reference.forward(inputs), b = try noCounters.forward(inputs), c = try lowPrecision.forward(inputs)
        XCTAssertEqual(a.logits.values, b.logits.values)
        // Rounded weights change the values a little, not the shape or the validity.
        XCTAssertEqual(c.logits.shape, [1, 5])
        XCTAssertTrue(c.logits.values.allSatisfy(\.isFinite))
    }

    func testIntegerWeightIsRejected() {
        var map = EvalNetwork.randomWeights(config: config, seed: 1)
        map.set("head.projection.bias", Tensor(dtype: .i32, shape: [5], data: OwnedBuffer(count: 20).bytes))
        let message = loadError(map) ?? ""
        XCTAssertTrue(message.contains("head.projection.bias: file has i32 [5], model expects a floating-point tensor [5]"), message)
    }

    func testLoadReadsArchitectureFromNativeFile() throws {
        let map = EvalNetwork.randomWeights(config: config, seed: 5)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sfnet-model-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("tiny.safetensors").path
        let items = map.ordered.map { SafetensorsWriter.Item(name: $0.name, tensor: $0.tensor) }
        try SafetensorsWriter.write(items, metadata: [("sfnet.format", "1"), ("sfnet.arch", try config.jsonString())],
                                    to: path, overwrite: false)
        let loaded = try EvalNetwork.load(path: path)
        XCTAssertEqual(loaded.config, config)
        let direct = try EvalNetwork(config: config, weights: map)
        var rng = SeededGenerator(seed: 6)
        let inputs = [randomTensor([1, 3, 2, 32, 32], &rng), randomTensor([1, 3, 8, 32, 32], &rng)]
        XCTAssertEqual(try loaded.forward(inputs).logits.values, try direct.forward(inputs).logits.values)

        let bare = dir.appendingPathComponent("bare.safetensors").path
        try SafetensorsWriter.write(items, metadata: [], to: bare, overwrite: false)
        XCTAssertThrowsError(try EvalNetwork.load(path: bare)) { error in
            XCTAssertTrue("\(error)".contains("sfnet.arch"), "\(error)")
        }
    }
}
