// Head-only training on cached features computes what the full train step computes: for X3D (pool -> lin_5 ->
// ReLU -> dropout -> projection) the cache holds lin_5's output after its ReLU, and a projection step on it gives
// the loss and gradients that the whole network's forward and backward give with everything but the projection
// frozen (BN statistics fixed, dropout off).

import Families
import Foundation
import Formats
import Networks
import Train
import XCTest
@testable import Convert
@testable import Finetune

final class HeadFeatureCacheTests: XCTestCase {
    static let x3d = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("fixtures/x3d")

    func relL2(_ a: [Float], _ b: [Float]) -> Double {
        let num = zip(a, b).reduce(0.0) { $0 + pow(Double($1.0) - Double($1.1), 2) }
        let den = b.reduce(0.0) { $0 + Double($1) * Double($1) }
        return (num / max(den, 1e-300)).squareRoot()
    }

    func testX3DProjectionStepOnCachedLin5FeaturesMatchesTheFullTrainStep() throws {
        // pytorchvideo's tiny X3D (lin_5 of 32 on conv_5's 216 channels), its 4x32² clip, 5 classes, dropout off.
        let ref = try CheckpointReader.read(path: Self.x3d.appendingPathComponent("tiny_x3d_pytorchvideo_ref.safetensors").path)
        var arch = try ArchConfig.fromJSON(try XCTUnwrap(ref.metadataValue("sfnet.arch")))
        arch.dropout = 0
        let converted = try convertTensors(try CheckpointReader.read(path: Self.x3d.appendingPathComponent("tiny_x3d_pytorchvideo.pyth").path),
                                           options: ConvertOptions(arch: arch))
        let graph = arch.graph()
        XCTAssertNotNil(graph.head.hidden)
        let frozen = graph.parameters.filter { $0.role.isLearnable && !$0.name.hasPrefix(graph.head.projection + ".") }.map(\.name)
        let options = TrainOptions(frozen: frozen, freezeBatchNormStatistics: true, dropout: 0, seed: 1)
        let x = try XCTUnwrap(ref.tensors["input.x"])
        let input = FloatTensor(shape: x.shape, values: x.floats())
        let (n, k) = (x.shape[0], arch.numClasses)
        let targets = (0 ..< n * k).map { Float(($0 * 7 + 3) % 5 == 0 ? 1 : 0) }

        // The full step: forward through every layer, backward to the projection.
        let full = try TrainableNetwork(config: arch, weights: converted.tensors, options: options)
        XCTAssertEqual(full.store.trainableNames, [graph.head.projection + ".weight", graph.head.projection + ".bias"])
        full.zeroGradients()
        let logits = try full.forward([input])
        let l = Array(UnsafeBufferPointer(start: logits.pointer, count: logits.count))
        let result = try Loss.bceWithLogits(logits: l, targets: targets, batch: n, classes: k)
        try full.backward(FloatTensor(shape: [n, k], values: result.dLogits))

        // The cached step: the eval network's projection inputs (lin_5 + ReLU on the pooled features), then the head step.
        let eval = try EvalNetwork(config: arch, weights: converted.tensors)
        let out = try eval.forward([input], capture: true)
        let pool = try XCTUnwrap(out.activations.first { $0.name == "head.pool" }?.value)
        let features = eval.projectionInputs(pool)
        XCTAssertEqual(features.shape, [n, arch.x3d!.dimC5])
        let rows = (0 ..< n).map { Array(UnsafeBufferPointer(start: features.pointer + $0 * features.shape[1], count: features.shape[1])) }
        let cached = try TrainableNetwork(config: arch, weights: converted.tensors, options: options)
        var rng = TrainRNG(seed: 1)
        let loss = try FeatureCache.headStep(rows, targets: targets, store: cached.store, dropout: 0, loss: .bce, rng: &rng)

        // Not bit-exact: eval folds BN into the convolutions, the train step applies it (float32 rounding differs at ~1e-6).
        XCTAssertEqual(Double(loss), Double(result.loss), accuracy: 1e-5 * Double(abs(result.loss)))
        for name in [graph.head.projection + ".weight", graph.head.projection + ".bias"] {
            let g = try XCTUnwrap(full.store.gradient(name)), c = try XCTUnwrap(cached.store.gradient(name))
            let (a, b) = (Array(UnsafeBufferPointer(start: c.pointer, count: c.count)), Array(UnsafeBufferPointer(start: g.pointer, count: g.count)))
            XCTAssertGreaterThan(b.map { abs($0) }.max() ?? 0, 0, name)
            let rel = relL2(a, b)
            XCTAssertLessThan(rel, 1e-5, "\(name): cached vs full relative L2 \(rel)")
        }
        // The pooled features (what SlowFast caches) are not what X3D's projection reads.
        XCTAssertNotEqual(pool.shape[1], features.shape[1])
    }
}
